"""Issue 17's targets against hostile input: refusal time, peak RSS per request, tracebacks.

The real ``emotion-estimator serve`` (no source, loopback) in its own process; each request's
peak RSS is that process's high-water mark (``VmHWM``, reset through ``/proc/PID/clear_refs``
before each request) above its resident size once warm (one real analysis done). Cases:

- ``/v1/analyze``: a real 875 KB PNG of 30000x30000 zeros, header bombs of every format read
  (a few hundred bytes declaring up to 10^10 pixels), three real bombs at once, tiny images,
  the largest admitted image (4096x4096 PNG), a real photo;
- ``/v1/frames``: a bomb, a tiny frame, garbage, then a real frame on one connection;
- foreign pages: a rebound ``Host``, a cross-site ``text/plain`` POST, a foreign WebSocket;
- the command line: ``analyze bomb.png`` and ``prepare --folder`` over two photos and an
  83-byte 40000x40000 PNG (wall time, peak RSS of the process tree, exit status, the last
  line it printed).

Targets: every case refused cleanly, a bomb in < 50 ms, < 300 MB per request above idle,
0 tracebacks in the server's log.

    python benchmarks/bench_hostile.py        # writes results/hostile.{md,json}
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from benchlib import MEDIA, REPO, RESULTS, command_line, guarded, markdown_table, write_json

sys.path.insert(0, str(REPO / "tests"))
from hostile import HEADER_BOMBS, encoded, png_bomb, png_header  # noqa: E402


def smooth_png(side: int) -> bytes:
    """A ``side`` x ``side`` colour gradient as PNG (small enough to upload: a few MB)."""
    import cv2
    import numpy as np

    ramp = np.linspace(0, 255, side, dtype=np.float32)
    image = np.dstack([np.add.outer(ramp, ramp) / 2, np.tile(ramp, (side, 1)),
                       np.tile(ramp[:, None], (1, side))]).astype(np.uint8)
    return cv2.imencode(".png", image)[1].tobytes()


def _status_kb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return float(line.split()[1])
    return 0.0


class Server:
    """``emotion-estimator serve --port 0`` with its stderr kept (for tracebacks)."""

    def __init__(self, log: Path) -> None:
        self.log = log.open("w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "emotion_estimator", "serve",
                                      "--port", "0"], stderr=self.log, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            match = re.search(r"http://(127\.0\.0\.1:\d+)/", log.read_text())
            if match:
                self.address = match.group(1)
                return
            time.sleep(0.1)
        self.proc.kill()
        raise RuntimeError(f"server did not start: {log.read_text()}")

    def reset_peak(self) -> None:
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")

    def rss_mb(self) -> float:
        return _status_kb(self.proc.pid, "VmRSS") / 1024

    def peak_mb(self) -> float:
        return _status_kb(self.proc.pid, "VmHWM") / 1024

    def stop(self) -> str:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        return Path(self.log.name).read_text()


def post(address: str, data: bytes, headers: dict | None = None) -> tuple[int, str, float]:
    req = urllib.request.Request(f"http://{address}/v1/analyze", data=data,
                                 headers=headers or {}, method="POST")
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            status, body = r.status, r.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    ms = (time.perf_counter() - start) * 1000
    text = body.decode(errors="replace")
    return status, (json.loads(text).get("error", "ok") if text.startswith("{") else text), ms


def measure(server: Server, idle: float, name: str, call) -> dict:  # noqa: ANN001
    server.reset_peak()
    status, answer, ms = call()
    row = {"case": name, "status": status, "ms": round(ms, 1),
           "peak_above_idle_mb": round(max(server.peak_mb() - idle, 0.0), 1),
           "answer": str(answer)[:90]}
    print(f"{name}: {status} in {ms:.0f} ms", file=sys.stderr, flush=True)
    return row


def frames_cases(server: Server, idle: float) -> list[dict]:
    from websockets.sync.client import connect

    out = []
    with connect(f"ws://{server.address}/v1/frames", open_timeout=20,
                 max_size=None) as ws:
        for name, data in (("frames: 30000x30000 PNG (875 KB)", BIG_BOMB),
                           ("frames: PNG 40000x40000 header", HEADER_BOMBS["png_40000"]()),
                           ("frames: tiny 5x5 BMP", encoded(".bmp", 5, 5)),
                           ("frames: garbage", b"\x89PNG not really"),
                           ("frames: real photo", (MEDIA / "single_face.jpg").read_bytes())):
            def call(data: bytes = data) -> tuple[int, str, float]:
                start = time.perf_counter()
                ws.send(data)
                msg = json.loads(ws.recv(timeout=120))
                ms = (time.perf_counter() - start) * 1000
                return (msg.get("status", 200), msg.get("error", msg["type"]), ms)

            out.append(measure(server, idle, name, call))
    return out


def concurrent_bombs(server: Server, idle: float) -> dict:
    def call() -> tuple[int, str, float]:
        results: list[tuple[int, str, float]] = []
        start = time.perf_counter()
        threads = [threading.Thread(target=lambda: results.append(post(server.address,
                                                                       BIG_BOMB)))
                   for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        statuses = sorted({r[0] for r in results})
        return (statuses[0] if len(statuses) == 1 else -1, results[0][1],
                (time.perf_counter() - start) * 1000)

    return measure(server, idle, "analyze: 3 x 30000x30000 PNG at once", call)


def policy_cases(server: Server, idle: float) -> list[dict]:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    port = server.address.split(":")[1]

    def rebound() -> tuple[int, str, float]:
        req = urllib.request.Request(f"http://{server.address}/v1/video.mjpg",
                                     headers={"Host": f"evil.example:{port}"})
        start = time.perf_counter()
        try:
            urllib.request.urlopen(req, timeout=10)
            return 200, "served", (time.perf_counter() - start) * 1000
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())["error"], (time.perf_counter() - start) * 1000

    def foreign_ws() -> tuple[int, str, float]:
        start = time.perf_counter()
        try:
            with connect(f"ws://{server.address}/v1/stream", origin="http://evil.example",
                         open_timeout=10):
                return 101, "accepted", (time.perf_counter() - start) * 1000
        except InvalidStatus as exc:
            return exc.response.status_code, "refused", (time.perf_counter() - start) * 1000

    face = (MEDIA / "single_face.jpg").read_bytes()
    return [measure(server, idle, "Host: evil.example on /v1/video.mjpg", rebound),
            measure(server, idle, "cross-site text/plain POST /v1/analyze",
                    lambda: post(server.address, face, {"Origin": "http://evil.example",
                                                        "Content-Type": "text/plain"})),
            measure(server, idle, "WebSocket /v1/stream from a foreign page", foreign_ws)]


def cli_case(name: str, args: list[str], cwd: Path) -> dict:
    """Exit status, wall time, last output line and peak RSS of a command (the largest ``VmHWM`` of
    the process and its children, polled: ``ru_maxrss`` would count this process's pages
    that the child had before its exec)."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "emotion_estimator", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.append(proc.stdout.read()), daemon=True)
    reader.start()
    peak = 0.0
    while proc.poll() is None:
        for pid in [proc.pid, *_children(proc.pid)]:
            with contextlib.suppress(OSError):
                peak = max(peak, _status_kb(pid, "VmHWM") / 1024)
        time.sleep(0.02)
    reader.join()
    ms = (time.perf_counter() - start) * 1000
    text = "".join(err)
    lines = [line for line in re.split(r"[\r\n]+", text) if line.strip() and "%|" not in line]
    return {"case": name, "status": proc.returncode, "ms": round(ms), "peak_rss_mb": round(peak),
            "tracebacks": text.count("Traceback"), "answer": (lines[-1] if lines else "")[-110:]}


def _children(pid: int) -> list[int]:
    try:
        found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    kids = [int(k) for k in found]
    return kids + [g for k in kids for g in _children(k)]


def rule_ms(data: bytes, reps: int = 200) -> float:
    """Median ms of the admission rule alone (in this process) refusing ``data``."""
    from emotion_estimator.admission import ImageRejected, decode

    times = []
    for _ in range(reps):
        start = time.perf_counter()
        with contextlib.suppress(ImageRejected):
            decode(data, 4096 * 4096)
        times.append((time.perf_counter() - start) * 1000)
    return sorted(times)[reps // 2]


def main() -> None:
    global BIG_BOMB
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.parse_args()
    if not (MEDIA / "single_face.jpg").is_file():
        raise SystemExit("needs ../shared/media")
    BIG_BOMB = png_bomb(30000)
    load_before = os.getloadavg()[0]
    rule = {"png_bomb_30000": round(rule_ms(BIG_BOMB), 3),
            **{name: round(rule_ms(make()), 3) for name, make in sorted(HEADER_BOMBS.items())}}
    work = Path(tempfile.mkdtemp(prefix="hostile-"))
    try:
        server = Server(work / "server.log")
        face = (MEDIA / "single_face.jpg").read_bytes()
        post(server.address, face)  # warm: the landmarker is up
        idle = server.rss_mb()
        rows = [measure(server, idle, "analyze: 30000x30000 PNG (875 KB)",
                        lambda: post(server.address, BIG_BOMB))]
        rows.append(concurrent_bombs(server, idle))
        for name in sorted(HEADER_BOMBS):
            data = HEADER_BOMBS[name]()
            rows.append(measure(server, idle, f"analyze: header bomb {name} ({len(data)} B)",
                                lambda data=data: post(server.address, data)))
        for ext in (".png", ".bmp", ".webp"):
            rows.append(measure(server, idle, f"analyze: tiny 5x5 {ext}",
                                lambda ext=ext: post(server.address, encoded(ext, 5, 5))))
        biggest = smooth_png(4096)
        rows.append(measure(server, idle, "analyze: largest admitted, a 4096x4096 PNG",
                            lambda: post(server.address, biggest)))
        rows.append(measure(server, idle, "analyze: real photo",
                            lambda: post(server.address, face)))
        rows += frames_cases(server, idle)
        rows += policy_cases(server, idle)
        log = server.stop()
        (work / "bomb.png").write_bytes(BIG_BOMB)
        folder = work / "photos"
        for label in ("happy", "sad"):
            (folder / label).mkdir(parents=True)
            shutil.copy(MEDIA / "single_face.jpg", folder / label / "face.jpg")
        (folder / "happy" / "header_bomb.png").write_bytes(png_header(40000, 40000))
        cli = [cli_case(f"analyze bomb.png (30000x30000, {len(BIG_BOMB) // 1000} KB)",
                        ["analyze", str(work / "bomb.png")], work),
               cli_case(f"prepare --folder (2 photos + a {len(png_header(40000, 40000))} B "
                        "40000x40000 PNG)",
                        ["prepare", "--folder", str(folder), "--out", str(work / "prep"),
                         "--workers", "1"], work)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load = [round(load_before, 1), round(os.getloadavg()[0], 1)]
    result = {"command": command_line(), "cpus": os.cpu_count(), "load_average": load,
              "rule_ms_median": rule, "idle_rss_mb": round(idle, 1),
              "server_tracebacks": log.count("Traceback"), "server_log_lines": len(
                  log.splitlines()), "requests": rows, "cli": cli}
    write_json(RESULTS / "hostile.json", result)
    table = markdown_table(["case", "status", "ms", "peak MB above idle", "answer"],
                           [[r["case"], r["status"], f"{r['ms']:.1f}",
                             f"{r['peak_above_idle_mb']:.1f}", r["answer"]] for r in rows])
    cli_table = markdown_table(["command", "exit", "ms", "peak RSS MB", "tracebacks", "last line"],
                               [[c["case"], c["status"], c["ms"], c["peak_rss_mb"],
                                 c["tracebacks"], c["answer"]] for c in cli])
    worst = max(rule.values())
    text = (f"# Hostile input (issue 17)\n\n`{command_line()}` on {os.cpu_count()} CPUs, load "
            f"average {load[0]} -> {load[1]}.\n\nThe admission rule alone refuses each bomb in "
            f"at most {worst:.3f} ms (median of 200, in process). Server idle RSS {idle:.0f} MB "
            f"(warm); tracebacks in the server log: {result['server_tracebacks']}. Times below "
            "are the client's, HTTP or WebSocket round trip included.\n\n"
            f"{table}\n\n{cli_table}\n")
    (RESULTS / "hostile.md").write_text(text)
    print(text)


BIG_BOMB = b""

if __name__ == "__main__":
    guarded(main)
