"""Model-file resolution: cache hits, checksum mismatches, fallbacks and offline errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from emotion_estimator import assets

PAYLOAD = b"not really a landmarker but it has the right checksum"
FAKE = assets.Asset(
    filename="fake.task", sha256=hashlib.sha256(PAYLOAD).hexdigest(), size=len(PAYLOAD),
    url="https://example.invalid/fake.task", wheel="fake==1.0", wheel_member="fake/fake.task",
)


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(assets.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.delenv(assets.ENV_LANDMARKER, raising=False)
    return tmp_path / "cache"


def fetchers(calls: list[str], url_payload: bytes | None, wheel_payload: bytes | None):
    def make(name: str, payload: bytes | None):
        def fetch(asset: assets.Asset, dest: Path) -> None:
            calls.append(name)
            if payload is None:
                raise OSError(f"{name} unreachable")
            dest.write_bytes(payload)
        return fetch
    return lambda: [("url", make("url", url_payload)), ("wheel", make("wheel", wheel_payload))]


def test_fetch_uses_first_source_and_caches(cache, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(assets, "_fetchers", fetchers(calls, PAYLOAD, PAYLOAD))
    path = assets.fetch(FAKE)
    assert path == cache / "fake.task" and path.read_bytes() == PAYLOAD
    assert assets.fetch(FAKE) == path  # cache hit: no second download
    assert calls == ["url"]


def test_falls_back_to_wheel_when_url_unreachable(cache, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(assets, "_fetchers", fetchers(calls, None, PAYLOAD))
    assert assets.fetch(FAKE).read_bytes() == PAYLOAD
    assert calls == ["url", "wheel"]


def test_checksum_mismatch_is_rejected_and_leaves_no_file(cache, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(assets, "_fetchers", fetchers(calls, b"tampered", b"also tampered"))
    with pytest.raises(assets.AssetError, match="checksum mismatch"):
        assets.fetch(FAKE)
    assert not (cache / "fake.task").exists()
    assert not list(cache.glob("*.part"))  # temp files cleaned up


def test_corrupt_cached_file_is_replaced(cache, monkeypatch):
    cache.mkdir(parents=True)
    (cache / "fake.task").write_bytes(b"x" * len(PAYLOAD))  # right size, wrong bytes
    calls: list[str] = []
    monkeypatch.setattr(assets, "_fetchers", fetchers(calls, PAYLOAD, None))
    assert assets.fetch(FAKE).read_bytes() == PAYLOAD
    assert calls == ["url"]


def test_offline_error_says_how_to_supply_the_file(cache, monkeypatch):
    monkeypatch.setattr(assets, "_fetchers", fetchers([], None, None))
    with pytest.raises(assets.AssetError) as err:
        assets.fetch(FAKE)
    message = str(err.value)
    assert assets.ENV_LANDMARKER in message and str(cache) in message
    assert "\n" not in message


def test_explicit_path_must_exist_and_match(cache, tmp_path, monkeypatch):
    bad = tmp_path / "face_landmarker.task"
    bad.write_bytes(b"junk")
    with pytest.raises(assets.AssetError, match="does not match"):
        assets.landmarker_path(bad)
    monkeypatch.setenv(assets.ENV_LANDMARKER, str(tmp_path / "missing.task"))
    with pytest.raises(assets.AssetError, match="not found"):
        assets.landmarker_path()


def test_no_download_when_asked_not_to(cache, monkeypatch):
    monkeypatch.setattr(assets, "_fetchers", lambda: pytest.fail("must not download"))
    with pytest.raises(assets.AssetError, match="models fetch"):
        assets.landmarker_path(download=False)


def test_real_landmarker_is_verified(landmarker_model):
    assert landmarker_model.stat().st_size == assets.FACE_LANDMARKER.size
    assert assets.sha256_of(landmarker_model) == assets.FACE_LANDMARKER.sha256
