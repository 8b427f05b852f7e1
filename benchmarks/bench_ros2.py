"""The ros2 node's targets, measured with real processes on this machine (loopback DDS).

Parts (``--parts``, default all):

- ``step``: the per-frame step in-process on the frames of ``single_face.mp4`` (MediaPipe
  detection alone, and the whole ``EmotionEstimator.process``): the reference for latency.
- ``latency``: a 30 fps ``CompressedImage`` publisher, the node, a listener: image stamp ->
  expression message received, p50/p95; frames dropped (newest wins) from ``/diagnostics``.
  Target: p95 <= the MediaPipe time per frame + 10 ms.
- ``throughput``: the publisher floods (``--flood-fps``): the node's processed fps against
  ``analyze``'s on a bag of the same JPEG frames. Target: ROS transport costs <= 10 %.
- ``soak``: ``--minutes`` at 30 fps: node RSS over time, every expression / ROI face id listed
  in ``tracked`` at the same stamp, every ``tracked`` stamp a published image's.

Writes ``results/ros2.{md,json}``. The node runs as ``python -m emotion_estimator ros2``; peers
are ``tests/ros2_peers.py``. Run on a quiet machine for figures to compare; say when it was not.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from benchlib import MEDIA, REPO, RESULTS, command_line, guarded, machine

PEERS = str(REPO / "tests" / "ros2_peers.py")
VIDEO = MEDIA / "single_face.mp4"


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.update(ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
             ROS_DOMAIN_ID=str(150 + os.getpid() % 50), PYTHONUNBUFFERED="1")
    e.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)
    return e


def pct(values, q: float) -> float:
    return round(float(np.percentile(np.asarray(values, float), q)), 2) if len(values) else -1.0


def step_times() -> dict:
    """MediaPipe alone and the whole per-frame step, ms per frame, in this process."""
    from emotion_estimator.estimator import EmotionEstimator
    from emotion_estimator.video import VideoSource

    frames = [(f.image, f.timestamp_s) for f in VideoSource(VIDEO)]
    est = EmotionEstimator()
    detect, whole = [], []
    with est.landmarker("video") as lm:  # alternating, so both see the same machine load
        for i, (image, _) in enumerate(frames * 3):  # three passes, stamps increasing
            t0 = time.perf_counter()
            lm.detect(image, i / 30.0)
            t1 = time.perf_counter()
            est.process(image, i / 30.0)
            t2 = time.perf_counter()
            detect.append((t1 - t0) * 1000)
            whole.append((t2 - t1) * 1000)
    est.reset()
    return {"mediapipe_ms_p50": pct(detect, 50), "mediapipe_ms_p95": pct(detect, 95),
            "step_ms_p50": pct(whole, 50), "step_ms_p95": pct(whole, 95)}


def analyze_fps(bag: Path) -> float:
    """``analyze`` on a bag of the JPEG frames the publisher sends: its own fps figure."""
    out = subprocess.run([sys.executable, "-m", "emotion_estimator", "analyze", str(bag),
                          "-o", os.devnull, "--no-progress"], capture_output=True, text=True)
    line = next((ln for ln in out.stderr.splitlines() if " fps" in ln), "")
    return float(line.rsplit(",", 1)[-1].split()[0]) if line else -1.0


class Session:
    """Node + listener; ``publish`` runs the camera publisher to the end."""

    def __init__(self, tmp: Path, e: dict[str, str]) -> None:
        self.tmp, self.env = tmp, e
        self.record = tmp / "record.json"
        self.err = open(tmp / "node.err", "w+")  # noqa: SIM115
        self.node = subprocess.Popen([sys.executable, "-m", "emotion_estimator", "ros2",
                                      "--topic", "/camera/image_raw"], env=e,
                                     stdout=subprocess.DEVNULL, stderr=self.err)
        self.listener = subprocess.Popen([sys.executable, PEERS, "listen", "--seconds",
                                          "100000", "--out", str(self.record)], env=e,
                                         stdout=subprocess.PIPE, text=True)
        self.listener.stdout.readline()
        while "publishing REP-155" not in (tmp / "node.err").read_text():
            if self.node.poll() is not None:
                raise RuntimeError((tmp / "node.err").read_text())
            time.sleep(0.1)

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.node.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return -1.0

    def publish(self, *args: str, sample_rss: bool = False) -> tuple[dict, list]:
        out = open(self.tmp / "publisher.out", "w+")  # noqa: SIM115 - not a pipe: it can fill
        proc = subprocess.Popen([sys.executable, PEERS, "publish", str(VIDEO), "--kind",
                                 "compressed", *args], env=self.env, stdout=out, text=True)
        rss, start = [], time.monotonic()
        while proc.poll() is None:
            if sample_rss:
                rss.append((round(time.monotonic() - start, 1), round(self.rss_mb(), 1)))
            time.sleep(10 if sample_rss else 0.2)
        out.seek(0)
        return json.loads(out.read().strip().splitlines()[-1]), rss

    def finish(self) -> dict:
        time.sleep(1.5)
        self.node.send_signal(signal.SIGINT)
        code = self.node.wait(timeout=30)
        time.sleep(0.5)
        self.listener.send_signal(signal.SIGINT)
        self.listener.wait(timeout=60)
        record = json.loads(self.record.read_text())
        record["node_exit"] = code
        return record


def diagnostics(record: dict) -> dict:
    values = [next(iter(d.values())) for d in record["diagnostics"] if d]
    return values[-1] if values else {}


def latency(tmp: Path, seconds: float) -> dict:
    s = Session(tmp, env())
    repeat = max(1, round(seconds * 30 / 72))
    sent, _ = s.publish("--fps", "30", "--repeat", str(repeat))
    rec = s.finish()
    lat = [(m["t"] - m["stamp"]) / 1e6 for m in rec["expression"]]
    d = diagnostics(rec)
    return {"frames_sent": sent["sent"], "expressions": len(rec["expression"]),
            "latency_ms_p50": pct(lat, 50), "latency_ms_p95": pct(lat, 95),
            "latency_ms_max": round(max(lat), 2) if lat else -1.0,
            "frames_processed": int(d.get("frames_processed", 0)),
            "frames_dropped": int(d.get("frames_dropped", 0)),
            "frames_lost_in_transport": int(d.get("frames_lost_in_transport", 0)),
            "node_exit": rec["node_exit"]}


def node_fps(tmp: Path, flood_fps: float, repeat: int) -> float:
    """The node's processed fps while the publisher sends faster than it can follow."""
    s = Session(tmp, env())
    s.publish("--fps", str(flood_fps), "--repeat", str(repeat))
    rec = s.finish()
    stamps = sorted(t["stamp"] for t in rec["tracked"])[:-1]  # the last: retired on exit
    span = (stamps[-1] - stamps[0]) / 1e9 if len(stamps) > 1 else 0.0
    return round((len(stamps) - 1) / span, 2) if span > 0 else -1.0


def throughput(tmp: Path, flood_fps: float, seconds: float, rounds: int = 2) -> dict:
    """Node (flooded) and ``analyze`` (a bag of the same JPEG frames), alternately; the best
    of ``rounds`` each (the machine's other load only ever slows a run down)."""
    sys.path.insert(0, str(REPO / "tests"))
    from ros2_peers import camera_bag

    repeat = max(1, round(seconds * 30 / 72))
    bag = tmp / "frames"
    frames = camera_bag(str(VIDEO), str(bag), "mcap", "jpeg", repeat=repeat)
    node, direct = [], []
    for i in range(rounds):
        d = tmp / f"round{i}"
        d.mkdir()
        direct.append(analyze_fps(bag))
        node.append(node_fps(d, flood_fps, max(1, round(seconds * flood_fps / 72))))
    return {"flood_fps": flood_fps, "frames": frames, "node_fps_runs": node,
            "analyze_fps_runs": direct, "node_fps": max(node), "analyze_fps": max(direct),
            "cost": round(1 - max(node) / max(direct), 4)}


def soak(tmp: Path, minutes: float) -> dict:
    s = Session(tmp, env())
    repeat = max(1, round(minutes * 60 * 30 / 72))
    sent, rss = s.publish("--fps", "30", "--repeat", str(repeat), sample_rss=True)
    rec = s.finish()
    stamps = set(sent["stamps"])
    tracked = {t["stamp"]: set(t["ids"]) for t in rec["tracked"]}
    faces = rec["expression"] + rec["roi"]
    not_tracked = sum(1 for m in faces if m["face"] not in tracked.get(m["stamp"], set()))
    foreign = sum(1 for t in rec["tracked"] if t["stamp"] not in stamps and t["ids"])
    d = diagnostics(rec)
    after_1min = [r for t, r in rss if t >= 60]
    return {"minutes": minutes, "frames_sent": sent["sent"],
            "frames_processed": int(d.get("frames_processed", 0)),
            "frames_dropped": int(d.get("frames_dropped", 0)),
            "tracked_messages": len(rec["tracked"]),
            "face_messages": len(faces), "face_ids": sorted({m["face"] for m in faces}),
            "face_messages_not_in_tracked": not_tracked,
            "tracked_with_unknown_stamp": foreign,
            "rss_mb": rss, "rss_growth_mb_after_1min":
                round(after_1min[-1] - after_1min[0], 1) if len(after_1min) > 1 else None,
            "node_exit": rec["node_exit"]}


def report(data: dict) -> str:
    lines = ["# ros2 node: latency, throughput, soak", "", f"Command: `{data['command']}`",
             "", f"Machine: {data['machine']}", ""]
    if "step" in data:
        st = data["step"]
        lines += ["| per-frame step (in-process) | p50 ms | p95 ms |", "|---|---|---|",
                  f"| MediaPipe detection | {st['mediapipe_ms_p50']} | {st['mediapipe_ms_p95']} |",
                  f"| whole step (`EmotionEstimator.process`) | {st['step_ms_p50']} | "
                  f"{st['step_ms_p95']} |", ""]
    if "latency" in data:
        la = data["latency"]
        lines += [f"Latency, image stamp -> expression received (30 fps publisher, "
                  f"{la['frames_sent']} frames): p50 {la['latency_ms_p50']} ms, p95 "
                  f"{la['latency_ms_p95']} ms, max {la['latency_ms_max']} ms; processed "
                  f"{la['frames_processed']}, dropped (newest wins) {la['frames_dropped']}, "
                  f"lost in transport {la['frames_lost_in_transport']}.", ""]
        if "step" in data:
            target = data["step"]["mediapipe_ms_p50"] + 10
            lines += [f"Target p95 <= MediaPipe p50 + 10 ms = {target:.1f} ms: "
                      f"{'met' if la['latency_ms_p95'] <= target else 'NOT met'}.", ""]
    if "throughput" in data:
        th = data["throughput"]
        lines += [f"Throughput on the same {th['frames']} JPEG frames, best of "
                  f"{len(th['node_fps_runs'])} alternating runs: the node with the publisher "
                  f"flooding at {th['flood_fps']} fps {th['node_fps']} fps (runs: "
                  f"{th['node_fps_runs']}); `analyze` on a bag of them {th['analyze_fps']} fps "
                  f"(runs: {th['analyze_fps_runs']}). ROS transport costs {th['cost']:.1%} "
                  f"(target <= 10%: {'met' if th['cost'] <= 0.10 else 'NOT met'}).", ""]
    if "soak" in data:
        so = data["soak"]
        lines += [f"Soak, {so['minutes']} min at 30 fps: {so['frames_sent']} frames sent, "
                  f"{so['frames_processed']} processed, {so['frames_dropped']} dropped; face "
                  f"messages not listed in `tracked` at their stamp: "
                  f"{so['face_messages_not_in_tracked']} of {so['face_messages']}; `tracked` "
                  f"messages with a stamp no image had: {so['tracked_with_unknown_stamp']}; "
                  f"node RSS growth after the first minute: {so['rss_growth_mb_after_1min']} MB "
                  f"(samples: {so['rss_mb']}).", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", default="step,latency,throughput,soak")
    p.add_argument("--seconds", type=float, default=20.0, help="latency/throughput run length")
    p.add_argument("--flood-fps", type=float, default=60.0)
    p.add_argument("--minutes", type=float, default=10.0, help="soak length")
    p.add_argument("--machine", default="", help="what else the machine was doing")
    p.add_argument("--out", default=str(RESULTS / "ros2"))
    args = p.parse_args()
    parts = set(args.parts.split(","))
    data: dict = {"command": command_line(),
                  "machine": f"{machine()}; {args.machine or 'other load not stated'}"}
    with tempfile.TemporaryDirectory() as tmp:
        if "step" in parts:
            data["step"] = step_times()
            print(json.dumps({"step": data["step"]}), flush=True)
        for name, fn in (("latency", lambda d: latency(d, args.seconds)),
                         ("throughput", lambda d: throughput(d, args.flood_fps, args.seconds)),
                         ("soak", lambda d: soak(d, args.minutes))):
            if name in parts:
                d = Path(tmp) / name
                d.mkdir()
                data[name] = fn(d)
                print(json.dumps({name: {k: v for k, v in data[name].items()
                                         if k != "rss_mb"}}), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps(data, indent=1))
    Path(f"{args.out}.md").write_text(report(data) + "\n")
    print(report(data))


if __name__ == "__main__":
    guarded(main)
