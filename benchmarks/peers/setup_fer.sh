#!/usr/bin/env bash
# Build the peer's own venv with `fer` 25.10.3 and CPU TensorFlow, apart from the product venv
# so emotion-estimator's runtime dependencies do not grow. Idempotent; offline after install
# (fer ships its models in the wheel).
#   benchmarks/peers/setup_fer.sh [PYTHON]        venv: $FER_VENV or benchmarks/.venv-fer
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
venv="${FER_VENV:-$here/.venv-fer}"
py="${1:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
fi
if ! "$venv/bin/python" -c "import fer.fer" 2>/dev/null; then
  # fer's dependencies minus facenet-pytorch (only for its optional MTCNN detector; it would
  # pull torch with CUDA, ~6 GB). fer imports pkg_resources, removed in setuptools 81.
  nice -n 5 "$venv/bin/pip" install --no-deps "fer==25.10.3"
  nice -n 5 "$venv/bin/pip" install "setuptools<81" tensorflow-cpu opencv-contrib-python \
    matplotlib pandas requests "tqdm>=4.62.1" "moviepy>=1.0.3,<2.0" "ffmpeg-python>=0.2.0" Pillow
fi
"$venv/bin/python" - <<'PY'
import importlib.metadata as md
import fer.fer  # noqa: F401  (fails here, not later, if the environment is broken)
for p in ("fer", "tensorflow-cpu", "tensorflow", "keras", "opencv-contrib-python", "numpy"):
    try:
        print(f"{p}=={md.version(p)}")
    except md.PackageNotFoundError:
        pass
PY
