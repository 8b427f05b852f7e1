#!/usr/bin/env bash
# Build the vendored ROS4HRI message types (src/emotion_estimator/ros/msg/hri_msgs: Expression,
# IdsList, NormalizedRegionOfInterest2D) into the venv, with the rosidl tool chain that the PyPI `ros-*`
# wheels bring (the `[ros]` extra) and a C compiler + cmake (Debian's, installed as root when
# missing). Installs into the venv prefix, where the wheels' start-up hook finds the libraries.
# Skips when the installed build matches the sources. Usage: scripts/build_ros_msgs.sh [VENV]
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(cd "${1:-.venv}" && pwd)
py="$venv/bin/python"
src=src/emotion_estimator/ros/msg/hri_msgs
build=build/hri_msgs
stamp="$venv/share/hri_msgs/emotion_estimator.sha256"

if ! "$py" -c "import rosidl_cmake, ament_package, catkin_pkg" 2>/dev/null; then
    echo "build_ros_msgs: the [ros] extra is not installed in $venv; skipped" >&2
    exit 0
fi
digest=$(cat "$src"/package.xml "$src"/CMakeLists.txt "$src"/msg/*.msg | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ] \
        && _ROS_WHEELS_BOOTSTRAP_COMPLETE= "$py" -c "import hri_msgs.msg" 2>/dev/null; then
    exit 0
fi

missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v cc >/dev/null || missing+=(gcc)
command -v c++ >/dev/null || missing+=(g++)
command -v make >/dev/null || missing+=(make)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            "${missing[@]}"; } </dev/null >/dev/null
    else
        echo "build_ros_msgs: needs ${missing[*]} (e.g. apt-get install ${missing[*]})" >&2
        exit 1
    fi
fi

# The wheels' *_rosidl_generator_pyExport.cmake files name the wheel builder's Python and numpy
# include folders; point them at this venv's before cmake reads them.
py_include=$("$py" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
np_include=$("$py" -c "import numpy; print(numpy.get_include())")
find "$venv/share" -name '*__rosidl_generator_pyExport.cmake' -print0 | xargs -0 -r sed -i -E \
    "s#INTERFACE_INCLUDE_DIRECTORIES \"[^\"]*\"#INTERFACE_INCLUDE_DIRECTORIES \"$py_include;$np_include\"#"

rm -rf "$build" && mkdir -p build
export PATH="$venv/bin:$PATH" _ROS_WHEELS_BOOTSTRAP_COMPLETE=
export AMENT_PREFIX_PATH="$venv" CMAKE_PREFIX_PATH="$venv"
export LD_LIBRARY_PATH="$venv/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
cmake -S "$src" -B "$build" -DCMAKE_INSTALL_PREFIX="$venv" -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$py" -DPYTHON_EXECUTABLE="$py" \
    -DPython3_FIND_STRATEGY=LOCATION >"$build.log" 2>&1 \
    || { tail -30 "$build.log" >&2; exit 1; }
cmake --build "$build" -j "$(nproc)" >>"$build.log" 2>&1 || { tail -30 "$build.log" >&2; exit 1; }
cmake --install "$build" >>"$build.log" 2>&1 || { tail -30 "$build.log" >&2; exit 1; }
mkdir -p "$(dirname "$stamp")"
echo "$digest" >"$stamp"
"$py" -c "import hri_msgs.msg" || { echo "build_ros_msgs: hri_msgs built but not importable" >&2; exit 1; }
