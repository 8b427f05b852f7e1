#!/usr/bin/env bash
# One-command set-up: .venv with the package (runtime + train, dev, distributed extras) and the
# verified face_landmarker.task in the user cache. torch==2.13.0 goes first: it is the CPU
# build, and a bare `torch` requirement would otherwise pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[train,serve,dev,distributed]"
.venv/bin/emotion-estimator models fetch
