"""`serve` as a robot sees it: latency, the cost of clients, a soak, newest-frame drops.

The server runs in its own process (the real ``emotion-estimator serve`` for the 30 fps
phases), clients are WebSocket connections on 127.0.0.1 from this process.

1. Latency, capture -> WebSocket message received (the message's ``capture_time`` against
   the client's clock; one machine), p50 / p95 / max, on a 30 fps ``--realtime --loop``
   replay of single_face.mp4, with 1 and with 8 reading clients (``--seconds`` each).
2. Cost of 8 clients: frames analysed per second and server CPU ms per frame with 1 and 8
   clients on a source faster than the analysis (the clip at ``--fast-speed`` x its rate).
3. Soak: 8 clients, one of them never reading, ``--soak-seconds``: server RSS growth after a
   warm-up, messages lost by the reading clients (a gap in frame numbers that the source's
   drop count does not explain), ``/healthz`` response time.
4. Newest-frame drops when the analysis is slower than the source (from phase 2).

    python benchmarks/bench_serve.py [--seconds 60] [--soak-seconds 600] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
from benchlib import (
    MEDIA,
    RESULTS,
    command_line,
    guarded,
    markdown_table,
    rss_mb,
    silent_client,
    write_atomic,
)

CLIP = MEDIA / "single_face.mp4"


# --- the server process ------------------------------------------------------------------
def serve_fast(speed: float) -> None:
    """Child mode: the app over the clip replayed at ``speed`` x (same code as the CLI)."""
    from emotion_estimator import EmotionEstimator
    from emotion_estimator.cli import quiet_native_logs
    from emotion_estimator.commands.serve import make_server
    from emotion_estimator.live import ReplaySource
    from emotion_estimator.serve import ServeConfig, create_app

    quiet_native_logs()
    config = ServeConfig()
    app = create_app(EmotionEstimator(), ReplaySource(CLIP, loop=True, speed=speed), config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    print(f"serving on http://127.0.0.1:{sock.getsockname()[1]}/", file=sys.stderr, flush=True)
    make_server(app, config).run(sockets=[sock])


class Server:
    """A server subprocess: its address, CPU seconds and RSS from /proc."""

    def __init__(self, speed: float = 1.0) -> None:
        if speed == 1.0:
            cmd = [sys.executable, "-m", "emotion_estimator", "serve", "--source", str(CLIP),
                   "--realtime", "--loop", "--port", "0"]
        else:
            cmd = [sys.executable, __file__, "--serve-fast", str(speed)]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()
        match = re.search(r"http://(127\.0\.0\.1:\d+)/", line)
        if not match:
            self.proc.kill()
            raise RuntimeError(f"server did not start: {line.strip()}")
        self.address = match.group(1)
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()
        time.sleep(2.0)  # landmarker up, first frames through

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        return rss_mb(self.proc.pid)

    def metric(self, name: str) -> float:
        text = urllib.request.urlopen(f"http://{self.address}/metrics", timeout=10).read()
        match = re.search(rf"^{re.escape(name)} (\S+)$", text.decode(), re.M)
        return float(match.group(1)) if match else 0.0

    def healthz_ms(self) -> float:
        start = time.perf_counter()
        urllib.request.urlopen(f"http://{self.address}/healthz", timeout=10).read()
        return (time.perf_counter() - start) * 1000

    def stop(self) -> int:
        self.proc.terminate()
        return self.proc.wait(timeout=30)


# --- clients ------------------------------------------------------------------------------
class Reader(threading.Thread):
    """A reading client: latency per frame message, and messages it lost."""

    def __init__(self, address: str, until: float) -> None:
        super().__init__(daemon=True)
        self.address, self.until = address, until
        self.latency_ms: list[float] = []
        self.frames = 0
        self.lost = 0
        self.error: str | None = None

    def run(self) -> None:
        from websockets.sync.client import connect

        last = None
        try:
            with connect(f"ws://{self.address}/v1/stream", open_timeout=20,
                         max_queue=None) as ws:
                while time.time() < self.until:
                    msg = json.loads(ws.recv(timeout=10))
                    now = time.time()
                    if msg["type"] != "frame":
                        continue
                    self.latency_ms.append((now - msg["capture_time"]) * 1000)
                    self.frames += 1
                    if last is not None:
                        gap = msg["frame"] - last["frame"] - 1
                        self.lost += max(0, gap - (msg["dropped_frames"]
                                                   - last["dropped_frames"]))
                    last = msg
        except Exception as exc:  # noqa: BLE001 - reported
            self.error = f"{type(exc).__name__}: {exc}"


def stats(values: list[float]) -> dict:
    a = np.asarray(values) if values else np.zeros(1)
    return {"n": len(values), "p50": round(float(np.percentile(a, 50)), 1),
            "p95": round(float(np.percentile(a, 95)), 1), "max": round(float(a.max()), 1)}


def run_clients(server: Server, n: int, seconds: float) -> dict:
    """``n`` readers for ``seconds``: latency, server fps, CPU ms per frame, drops."""
    until = time.time() + seconds
    readers = [Reader(server.address, until) for _ in range(n)]
    frames0, dropped0 = server.metric("emotion_frames_total"), server.metric(
        "emotion_dropped_frames_total")
    cpu0, t0 = server.cpu_s(), time.monotonic()
    for r in readers:
        r.start()
    for r in readers:
        r.join(seconds + 30)
    elapsed = time.monotonic() - t0
    frames = server.metric("emotion_frames_total") - frames0
    dropped = server.metric("emotion_dropped_frames_total") - dropped0
    cpu = server.cpu_s() - cpu0
    return {"clients": n, "seconds": round(elapsed, 1),
            "latency_ms": stats([v for r in readers for v in r.latency_ms]),
            "fps": round(frames / elapsed, 1), "frames": int(frames),
            "dropped_frames": int(dropped),
            "dropped_share": round(dropped / max(frames + dropped, 1), 3),
            "cpu_ms_per_frame": round(1000 * cpu / max(frames, 1), 2),
            "lost_messages": sum(r.lost for r in readers),
            "errors": [r.error for r in readers if r.error]}


def soak(seconds: float, warmup: float = 20.0) -> dict:
    server = Server()
    silent = silent_client(server.address)
    until = time.time() + seconds
    readers = [Reader(server.address, until) for _ in range(7)]
    for r in readers:
        r.start()
    rss, health = [], []
    start = time.monotonic()
    clients: list[tuple[float, int]] = []  # (time, connected stream clients)
    while time.time() < until - 1.5:
        health.append(server.healthz_ms())
        rss.append((time.monotonic() - start, server.rss_mb()))
        clients.append((rss[-1][0], int(server.metric('emotion_clients{endpoint="stream"}'))))
        time.sleep(1.0)
    for r in readers:
        r.join(30)
    after_warmup = [m for t, m in rss if t >= min(warmup, seconds / 3)]
    result = {"seconds": round(time.monotonic() - start, 1), "clients": 8, "silent_clients": 1,
              "rss_mb_start": round(after_warmup[0], 1), "rss_mb_end": round(rss[-1][1], 1),
              "rss_mb_max": round(max(m for _, m in rss), 1),
              "rss_growth_mb": round(rss[-1][1] - after_warmup[0], 1),
              "frames_per_reader": [r.frames for r in readers],
              "lost_messages": sum(r.lost for r in readers),
              "healthz_ms": stats(health),
              "stream_clients": {"max": max(n for _, n in clients), "end": clients[-1][1],
                                 "below_8_from_s": next((round(t, 1) for t, n in clients
                                                         if n < 8 and t > 5), None)},
              "messages_dropped_for_slow_clients": int(
                  server.metric("emotion_messages_dropped_total")),
              "errors": [r.error for r in readers if r.error]}
    silent.close()
    result["exit_code"] = server.stop()
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0, help="latency phases (60)")
    p.add_argument("--fast-seconds", type=float, default=20.0, help="throughput phases (20)")
    p.add_argument("--fast-speed", type=float, default=8.0,
                   help="source speed for the throughput phases (8x = 240 fps)")
    p.add_argument("--soak-seconds", type=float, default=600.0, help="soak (600)")
    p.add_argument("--quick", action="store_true", help="10 s phases, 30 s soak (a smoke run)")
    p.add_argument("--soak-only", action="store_true", help="only the soak; print its JSON")
    p.add_argument("--serve-fast", type=float, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_fast:
        serve_fast(args.serve_fast)
        return
    if not CLIP.is_file():
        raise FileNotFoundError(f"{CLIP} is absent")
    if args.quick:
        args.seconds, args.fast_seconds, args.soak_seconds = 10.0, 10.0, 30.0
    if args.soak_only:
        print(json.dumps(soak(args.soak_seconds), indent=2))
        return
    load_before = os.getloadavg()
    out: dict = {"command": command_line(), "cpus": os.cpu_count(),
                 "load_before": [round(v, 2) for v in load_before]}

    server = Server()
    out["realtime"] = [run_clients(server, n, args.seconds) for n in (1, 8)]
    out["realtime_exit_code"] = server.stop()
    fast = Server(args.fast_speed)
    out["fast"] = [run_clients(fast, n, args.fast_seconds) for n in (1, 8)]
    out["fast"].append(run_clients(fast, 1, args.fast_seconds))  # 1 again: drift check
    out["fast_speed"] = args.fast_speed
    fast.stop()
    out["soak"] = soak(args.soak_seconds)
    out["load_after"] = [round(v, 2) for v in os.getloadavg()]
    report(out)


def report(out: dict) -> None:
    rt, fast, soak_ = out["realtime"], out["fast"], out["soak"]
    one = (fast[0]["fps"] + fast[2]["fps"]) / 2
    cost = 1 - fast[1]["fps"] / one if one else 0.0
    rows = [[f"30 fps replay, {r['clients']} client(s), {r['seconds']} s",
             r["latency_ms"]["p50"], r["latency_ms"]["p95"], r["latency_ms"]["max"], r["fps"],
             r["cpu_ms_per_frame"], r["dropped_frames"], r["lost_messages"]] for r in rt]
    rows += [[f"{out['fast_speed']:g}x replay (source faster than analysis), "
              f"{r['clients']} client(s)", r["latency_ms"]["p50"], r["latency_ms"]["p95"],
              r["latency_ms"]["max"], r["fps"], r["cpu_ms_per_frame"],
              f"{r['dropped_frames']} ({r['dropped_share']:.0%})", r["lost_messages"]]
             for r in fast]
    text = "\n".join([
        "# serve: latency, clients, soak, drops", "",
        f"`{out['command']}` — {out['cpus']} CPUs, load average before "
        f"{out['load_before']}, after {out['load_after']} (a shared machine).", "",
        markdown_table(["phase", "p50 ms", "p95 ms", "max ms", "fps", "CPU ms/frame",
                        "dropped frames", "lost msgs"],
                       [[str(c) for c in row] for row in rows], align="lrrrrrrr"), "",
        f"Throughput cost of 8 clients (fast source): {cost:.1%} of frames per second "
        f"(1 client {one:.1f} fps, mean of the runs before and after; 8 clients "
        f"{fast[1]['fps']:.1f} fps).", "",
        f"Soak: {soak_['seconds']:.0f} s, 8 clients (1 never reading): RSS "
        f"{soak_['rss_mb_start']} -> {soak_['rss_mb_end']} MB (growth "
        f"{soak_['rss_growth_mb']} MB, max {soak_['rss_mb_max']}), lost messages "
        f"{soak_['lost_messages']}, frames per reading client {soak_['frames_per_reader']}, "
        f"/healthz p50 {soak_['healthz_ms']['p50']} ms / max {soak_['healthz_ms']['max']} ms, "
        f"messages dropped for the slow client {soak_['messages_dropped_for_slow_clients']}, "
        f"stream clients connected {soak_['stream_clients']} (the never-reading one is "
        "closed by the WebSocket keep-alive once it stops answering pings), "
        f"exit code after SIGTERM {soak_['exit_code']}.", ""])
    write_atomic(RESULTS / "serve.md", text)
    write_atomic(RESULTS / "serve.json", json.dumps(out, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    guarded(main)
