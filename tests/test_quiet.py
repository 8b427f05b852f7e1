"""The library is quiet: no native (glog / TFLite) line on stderr unless ``verbose=True``."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
from emotion_estimator import EmotionEstimator
est = EmotionEstimator(verbose={verbose})
for _ in range(2):
    df = est.analyze_video(sys.argv[1])
print(len(df), int(df["face_detected"].sum()))
"""


def run_api(clip: str, verbose: bool) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT.format(verbose=verbose), clip],
                          capture_output=True, text=True, timeout=120, check=False)


def test_api_writes_nothing_to_stderr_unless_verbose(media, landmarker_model):
    quiet = run_api(str(media / "single_face.mp4"), verbose=False)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.split() == ["72", "72"]  # it did the work
    assert quiet.stderr == ""
    loud = run_api(str(media / "single_face.mp4"), verbose=True)
    assert loud.returncode == 0 and loud.stdout == quiet.stdout
    assert "TensorFlow Lite" in loud.stderr or "W0000" in loud.stderr


def test_a_failing_start_keeps_its_messages():
    """What the native code says before an error is written back, not swallowed."""
    import os

    from emotion_estimator.blendshapes import quiet_native

    read, write = os.pipe()
    saved = os.dup(2)
    os.dup2(write, 2)
    try:
        try:
            with quiet_native():
                os.write(2, b"W0000 00:00:1.0 x.cc:1] native detail\nplain line\n")
                raise RuntimeError("start failed")
        except RuntimeError:
            pass
        with quiet_native():
            os.write(2, b"I0000 00:00:1.0 y.cc:2] startup chatter\nkept line\n")
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(write)
    with os.fdopen(read) as fh:
        text = fh.read()
    assert text == "W0000 00:00:1.0 x.cc:1] native detail\nplain line\nkept line\n"
