#!/usr/bin/env bash
# One-command set-up: .venv with the package (runtime + train, dev, distributed, ros extras), the
# ROS4HRI message types built into it (scripts/build_ros_msgs.sh), and the
# verified face_landmarker.task in the user cache. torch==2.13.0 goes first: it is the CPU
# build, and a bare `torch` requirement would otherwise pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[train,serve,dev,distributed,ros]"
bash scripts/build_ros_msgs.sh .venv  # hri_msgs for the ros2 node (cmake/gcc from apt if missing)
.venv/bin/emotion-estimator models fetch
