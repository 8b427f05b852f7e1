#!/usr/bin/env bash
# Build the peer's own venv (benchmarks/.venv-fer, git-ignored) with `fer` and a CPU TensorFlow.
# Kept apart from the product venv so emotion-estimator's runtime dependencies do not grow.
# Usage: benchmarks/peers/setup_fer.sh [PYTHON]   (idempotent; re-running only checks the import)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
venv="$here/.venv-fer"
py="${1:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
fi
if ! "$venv/bin/python" -c "import fer" 2>/dev/null; then
  # fer imports pkg_resources (removed in setuptools 81); tensorflow-cpu avoids CUDA wheels.
  nice -n 5 "$venv/bin/pip" install "fer==25.10.3" "setuptools<81" "tensorflow-cpu" psutil
fi
"$venv/bin/python" - <<'PY'
import importlib.metadata as md
for p in ("fer", "tensorflow-cpu", "tensorflow", "keras", "opencv-python", "opencv-contrib-python", "numpy"):
    try:
        print(f"{p}=={md.version(p)}")
    except md.PackageNotFoundError:
        pass
PY
