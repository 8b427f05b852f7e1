"""Shared helpers of the benchmarks: FER2013 rows, 7 -> 3 folding, metrics, tables, I/O.

Imported from both environments (the product venv and the peer's ``.venv-fer``), so only
numpy and pandas at module level.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FER2013_CSV = REPO.parent / "shared" / "data" / "fer2013" / "fer2013.csv.gz"
MEDIA = REPO.parent / "shared" / "media"
RUNS = REPO / "runs" / "bench"
RESULTS = REPO / "benchmarks" / "results"

CLASSES3: tuple[str, ...] = ("happy", "sad", "unknown")
FER7: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
SPLITS = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}

# The paper's test figures (Attrah, Table 5) and the public reproduction, for the tables.
PAPER = {"accuracy": 0.7199, "macro_f1": 0.6298}
REPRODUCTION = {"accuracy": 0.748, "macro_f1": 0.66}


def fail(message: str, code: int = 2) -> NoReturn:
    """One line on stderr and exit (2: bad input or missing setup, 1: a run failed)."""
    print(f"{Path(sys.argv[0]).name}: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def guarded(main):
    """Run ``main()`` so that errors end in one line, never a traceback: the project's
    ``InputError`` and missing files exit 2, anything else 1."""
    try:
        return main()
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except Exception as exc:  # noqa: BLE001 - one line for the user, as the CLI promises
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        user = type(exc).__name__ in ("InputError", "FileNotFoundError")
        fail(text if user else f"{type(exc).__name__}: {text}", 2 if user else 1)


def command_line() -> str:
    """This process's command as one would type it from the repository root."""
    script = Path(sys.argv[0]).resolve()
    with_repo = script.is_relative_to(REPO)
    shown = f"python {script.relative_to(REPO)}" if with_repo else Path(sys.argv[0]).name
    return " ".join([shown, *sys.argv[1:]])


def last_line(text: str) -> str:
    """The last non-empty line of a child's stderr (the exception, for a Python traceback)."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "(no output)"


def fold7(labels7: np.ndarray) -> np.ndarray:
    """FER2013 codes 0..6 -> indices into :data:`CLASSES3` (3 happy, 4 sad, the rest unknown)."""
    labels7 = np.asarray(labels7)
    if labels7.size and (labels7.min() < 0 or labels7.max() > 6):
        raise ValueError("FER2013 labels must be in 0..6")
    return np.where(labels7 == 3, 0, np.where(labels7 == 4, 1, 2)).astype(np.int64)


def fold_proba(p7: np.ndarray) -> np.ndarray:
    """(n, 7) probabilities in FER2013 order -> (n, 3): happy, sad, sum of the other five."""
    p7 = np.asarray(p7, dtype=np.float64)
    if p7.ndim != 2 or p7.shape[1] != 7:
        raise ValueError(f"expected (n, 7) probabilities, got {p7.shape}")
    other = p7[:, [0, 1, 2, 5, 6]].sum(axis=1)
    return np.stack([p7[:, 3], p7[:, 4], other], axis=1)


def load_fer2013(path: Path = FER2013_CSV, usage: str | None = "PrivateTest"):
    """FER2013 rows as a DataFrame ``image_id, emotion, usage`` plus a (n, 48, 48) uint8 array.

    ``image_id`` is the 0-based row number of the CSV (the data set's stable id).
    """
    import pandas as pd

    frame = pd.read_csv(path)
    frame.insert(0, "image_id", np.arange(len(frame)))
    if usage is not None:
        frame = frame[frame["Usage"] == usage]
    pixels = np.stack([np.asarray(s.split(), dtype=np.uint8) for s in frame["pixels"]])
    meta = frame[["image_id", "emotion", "Usage"]].rename(columns={"Usage": "usage"})
    return meta.reset_index(drop=True), pixels.reshape(-1, 48, 48)


def metrics(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int = 3) -> dict:
    """Accuracy, macro F1, per-class F1 and recall, the confusion matrix (rows = truth) and,
    for 3 classes in :data:`CLASSES3` order, the sad->happy and happy->sad rates (share of
    true sad called happy, and the reverse)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError("y_true and y_pred must be non-empty and of equal length")
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    tp = np.diag(cm).astype(np.float64)
    precision = np.divide(tp, cm.sum(0), out=np.zeros_like(tp), where=cm.sum(0) > 0)
    recall = np.divide(tp, cm.sum(1), out=np.zeros_like(tp), where=cm.sum(1) > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    out = {
        "n": int(y_true.size),
        "accuracy": float(tp.sum() / cm.sum()),
        "macro_f1": float(f1.mean()),
        "f1": [float(v) for v in f1],
        "recall": [float(v) for v in recall],
        "confusion": cm.tolist(),
    }
    if n_classes == 3:
        happy, sad = CLASSES3.index("happy"), CLASSES3.index("sad")
        rows = np.maximum(cm.sum(1), 1)
        out["sad_to_happy"] = float(cm[sad, happy] / rows[sad])
        out["happy_to_sad"] = float(cm[happy, sad] / rows[happy])
    return out


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]],
                   align: str | None = None) -> str:
    """A GitHub Markdown table; floats get 4 decimals, ``None`` prints as an en dash.

    ``align`` is one character per column: ``l`` or ``r`` (default: text left, numbers right).
    """
    def cell(v: object) -> str:
        if v is None:
            return "–"
        if isinstance(v, float):
            return f"{v:.4f}"
        return str(v).replace("|", "\\|")

    if any(len(r) != len(header) for r in rows):
        raise ValueError("every row needs one cell per header column")
    if align is None:
        first = rows[0] if rows else [""] * len(header)
        align = "".join("r" if isinstance(v, int | float) else "l" for v in first)
    rule = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(map(str, header)) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write a file through a temporary sibling and ``os.replace`` (never half-written).

    A standalone twin of ``emotion_estimator.atomic.atomic_path``: ``peers/fer_runner.py``
    imports this module inside the peer's venv, where emotion_estimator is not installed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: object) -> None:
    """Atomic, indented JSON."""
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux ru_maxrss is KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def silent_client(address: str, token: str | None = None, rcvbuf: int = 4096) -> Any:
    """A raw WebSocket client of ``/v1/stream`` that completes the handshake and never reads
    again (a small receive buffer, so the server's send side fills fast); returns the socket,
    the 101 response still unread."""
    import base64
    import socket

    host, port = address.split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    sock.sendall((f"GET /v1/stream HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  f"Sec-WebSocket-Version: 13\r\n{auth}\r\n").encode())
    return sock


def rss_mb(pid: int | str = "self") -> float:
    """Current resident set size of a process (default: this one), in MiB; Linux only
    (``/proc/PID/status``), else the peak of this process."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_mb()


def cpu_count() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def machine() -> str:
    """What every report names: the CPU model, the cores this process may use (of all), the
    system and the load average now (ratios travel between machines, absolute figures not)."""
    import platform

    cpu = platform.processor() or "CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpu}, {cpu_count()} of {os.cpu_count()} cores usable, {platform.system()}, "
            f"load average {load:.1f}")


def cpu_seconds() -> float:
    """User + system CPU time of this process so far, all threads (robust to a busy machine)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def latency_stats(seconds: Sequence[float]) -> dict:
    """Median, p10, p90 and mean of per-call times, in milliseconds."""
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    return {"calls": int(ms.size), "median_ms": float(np.median(ms)),
            "p10_ms": float(np.percentile(ms, 10)), "p90_ms": float(np.percentile(ms, 90)),
            "mean_ms": float(ms.mean())}


def save_png(fig, path: Path, dpi: int = 110) -> None:
    """Save a matplotlib figure atomically as PNG and close it."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    write_atomic(path, buf.getvalue())


def installed_mb(root: str, aliases: dict[str, str] | None = None) -> dict:
    """Disk size of an installed distribution and its transitive runtime dependencies (no
    extras; those not installed are skipped; ``aliases`` maps a required name to the installed
    one, e.g. tensorflow -> tensorflow-cpu): ``{"total_mb", "packages", "largest"}``."""
    import importlib.metadata as md

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: dict[str, float] = {}
    todo = [root]
    while todo:
        name = canonicalize_name(todo.pop())
        name = (aliases or {}).get(name, name)
        if name in seen:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        files = [dist.locate_file(f) for f in dist.files or ()]
        seen[name] = sum(Path(f).stat().st_size for f in files if Path(f).is_file()) / 2**20
        for spec in dist.requires or ():
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return {"total_mb": round(sum(seen.values()), 1), "packages": len(seen),
            "largest": sorted(((k, round(v, 1)) for k, v in seen.items()),
                              key=lambda kv: -kv[1])[:5]}
