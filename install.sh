#!/usr/bin/env bash
# edge-sr set-up: one command on a fresh machine.
#   ./install.sh                 runtime (x86-64, Jetson or Raspberry Pi detected automatically)
#   ./install.sh --test          + what the tests need (torch==2.13.0 CPU on x86-64, onnx, pytest, matplotlib)
#   ./install.sh --train         + training/export (torch, onnx)
#   ./install.sh --bench         + plotting for edge-sr bench (matplotlib)
#   ./install.sh --gui           OpenCV with GUI (windows: edge-sr stream --display) instead of the headless one, where a desktop exists
#   ./install.sh --prefix DIR    virtual environment in DIR (default: .venv in the repo)
#   ./install.sh --platform P    force x86_64 | jetson | pi | aarch64 (default: detected)
#   ./install.sh --print-platform  print the detected platform and exit
# Idempotent: a second run with the same options and an unchanged pyproject.toml does nothing.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
prefix="$here/.venv"
want_train=0 want_test=0 want_bench=0 want_gui=0 platform="" force=0 print_platform=0 print_extras=0
python=${PYTHON:-python3}

die() { echo "install.sh: error: $*" >&2; exit 1; }
say() { echo "install.sh: $*" >&2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || die "--prefix needs a folder"; prefix=$2; shift ;;
    --prefix=*) prefix=${1#--prefix=} ;;
    --train) want_train=1 ;;
    --test) want_test=1 ;;
    --bench) want_bench=1 ;;
    --gui) want_gui=1 ;;
    --print-extras) print_extras=1 ;;
    --all) want_train=1 want_test=1 want_bench=1 ;;
    --platform) [ $# -ge 2 ] || die "--platform needs a value"; platform=$2; shift ;;
    --platform=*) platform=${1#--platform=} ;;
    --force) force=1 ;;
    --print-platform) print_platform=1 ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done

# ---- platform detection (paths overridable for tests and emulation) -------------------------
tegra_release=${EDGE_SR_TEGRA_RELEASE:-/etc/nv_tegra_release}
dt_model=${EDGE_SR_DT_MODEL:-/proc/device-tree/model}
if [ -z "$platform" ]; then
  arch=$(uname -m)
  if [ -f "$tegra_release" ]; then platform=jetson
  elif [ -r "$dt_model" ] && tr -d '\0' < "$dt_model" | grep -q "Raspberry Pi"; then platform=pi
  elif [ "$arch" = x86_64 ]; then platform=x86_64
  elif [ "$arch" = aarch64 ] || [ "$arch" = arm64 ]; then platform=aarch64
  else die "unsupported machine $arch (edge-sr supports x86-64, Jetson, Raspberry Pi and other aarch64)"
  fi
fi
case "$platform" in x86_64|jetson|pi|aarch64) ;; *) die "unknown --platform $platform";; esac
if [ $print_platform = 1 ]; then echo "$platform"; exit 0; fi
say "platform: $platform"

command -v "$python" >/dev/null || die "$python not found: install Python 3.8+ (apt install python3 python3-venv)"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 8))' || die "Python 3.8+ needed, found $("$python" -V 2>&1)"

# ---- what to install ---------------------------------------------------------------------------
extras=""
venv_flags=""
case "$platform" in
  jetson|pi) venv_flags="--system-site-packages" ;;  # TensorRT / picamera2 / GStreamer OpenCV come from apt
esac
# OpenCV: on Jetson keep the system build (GStreamer for CSI cameras); a pip wheel would shadow it
# --gui: a GUI OpenCV (opencv-contrib-python) in place of the headless one, only where a desktop exists
has_desktop() {
  [ -n "${EDGE_SR_DESKTOP+x}" ] && { [ "$EDGE_SR_DESKTOP" = 1 ]; return; }
  [ -n "${DISPLAY:-}" ] || [ -n "${WAYLAND_DISPLAY:-}" ] || [ -n "${XDG_CURRENT_DESKTOP:-}" ] \
    || ls /usr/share/xsessions/*.desktop /usr/share/wayland-sessions/*.desktop >/dev/null 2>&1
}
gui=0
if [ $want_gui = 1 ]; then
  if has_desktop; then gui=1
  else say "--gui: no desktop here (no DISPLAY/WAYLAND_DISPLAY, no X or Wayland session): keeping the headless OpenCV; watch with --http instead"
  fi
fi
if [ "$platform" = jetson ] && "$python" -c 'import cv2' 2>/dev/null; then
  say "using the system OpenCV (it has GStreamer for CSI cameras); not installing a pip OpenCV"
  [ $gui = 1 ] && say "--gui: JetPack's OpenCV is built with GTK: windows work with it as it is"
  gui=0
elif [ $gui = 1 ]; then
  extras="gui"
else
  extras="cv"
fi
# ONNX Runtime: keep a system/JetPack build (e.g. onnxruntime-gpu) when there is one
if [ "$platform" = jetson ] && "$python" -c 'import onnxruntime' 2>/dev/null; then
  say "using the installed onnxruntime"
else
  extras="$extras,ort"
fi
extras="$extras,http"  # the stream's HTTP output: prometheus_client, h11
extras="$extras,video"  # video files: PyAV (H.264 with sound; its wheel brings its own FFmpeg)
[ $want_train = 1 ] && extras="$extras,train"
[ $want_test = 1 ] && extras="$extras,test,train,bench"
[ $want_bench = 1 ] && extras="$extras,bench"
extras=$(echo "$extras" | tr ',' '\n' | grep -v '^$' | sort -u | paste -sd, -)
if [ $print_extras = 1 ]; then echo "$extras"; exit 0; fi
if { [ $want_train = 1 ] || [ $want_test = 1 ]; } && [ "$platform" != x86_64 ]; then
  say "note: torch on $platform comes from PyPI's aarch64 wheel (CPU); on a Jetson use NVIDIA's torch wheel instead if you train there"
fi

# ---- idempotence: skip when nothing changed ----------------------------------------------------------
stamp="$prefix/.edge-sr-install"
sig="$platform|$extras|$venv_flags|$(cat "$here/pyproject.toml" | cksum)"
if [ $force = 0 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sig" ] && "$prefix/bin/edge-sr" --version >/dev/null 2>&1; then
  say "already installed in $prefix (nothing changed; --force reinstalls)"
else
  if [ ! -x "$prefix/bin/python" ]; then
    say "creating virtual environment $prefix $venv_flags"
    "$python" -m venv $venv_flags "$prefix" || die "could not create a venv (Debian/Ubuntu/Raspberry Pi OS: sudo apt install python3-venv)"
  fi
  pip=("$prefix/bin/python" -m pip)
  "${pip[@]}" install --quiet --upgrade "pip>=23" >/dev/null 2>&1 || say "warning: could not upgrade pip, continuing"
  spec="$here"
  [ -n "$extras" ] && spec="$here[$extras]"
  say "installing edge-sr [$extras]"
  # torch is pinned to 2.13.0 in the train extra (the CPU wheel on x86-64); nothing else may pull another
  log="$prefix/install.log"
  if ! "${pip[@]}" install -e "$spec" > "$log" 2>&1; then
    tail -n 25 "$log" >&2
    die "pip install failed (last lines above; whole log: $log)"
  fi
  # opencv-contrib-python and its -headless twin install the same cv2 folder: keep exactly one
  case ",$extras," in
    *,gui,*) drop=opencv-contrib-python-headless keep="opencv-contrib-python>=4.5" ;;
    *,cv,*) drop=opencv-contrib-python keep="opencv-contrib-python-headless>=4.5" ;;
    *) drop="" keep="" ;;
  esac
  if [ -n "$drop" ] && "${pip[@]}" show "$drop" >/dev/null 2>&1; then
    say "replacing $drop with ${keep%%>*}"
    "${pip[@]}" uninstall -y "$drop" >> "$log" 2>&1 || die "could not remove $drop (log: $log)"
    "${pip[@]}" install --force-reinstall --no-deps "$keep" >> "$log" 2>&1 || die "could not install $keep (log: $log)"
  fi
  echo "$sig" > "$stamp"
fi
if [ $gui = 1 ]; then
  "$prefix/bin/python" -c 'import re, sys, cv2; m = re.search(r"GUI:\s*(\S+)", cv2.getBuildInformation()); sys.exit(not (m and m.group(1).upper() not in ("NONE", "NO")))' \
    && say "OpenCV with GUI support: edge-sr stream --display works" \
    || say "warning: this OpenCV still has no GUI support (see $prefix/install.log)"
fi

# ---- what the device still needs from apt ---------------------------------------------------------
py="$prefix/bin/python"
if [ "$platform" = jetson ]; then
  "$py" -c 'import tensorrt' 2>/dev/null && say "TensorRT: $("$py" -c 'import tensorrt; print(tensorrt.__version__)')" \
    || say "TensorRT not importable: it comes with JetPack (sudo apt install python3-libnvinfer); edge-sr build-engine needs it"
  if ! "$py" -c 'import pycuda.driver' 2>/dev/null && ! "$py" -c 'import cuda.bindings.runtime' 2>/dev/null \
     && ! "$py" -c 'import cuda.cudart' 2>/dev/null; then
    l4t=$(sed -n 's/^# R\([0-9]*\).*/\1/p' "$tegra_release" 2>/dev/null)
    case "$l4t" in
      36) say "no CUDA binding: the TensorRT backend needs one; on JetPack 6: $prefix/bin/pip install \"cuda-python>=12,<13\" (13.x needs a CUDA 13 driver)" ;;
      34|35) say "no CUDA binding: the TensorRT backend needs one; on JetPack 5: PATH=/usr/local/cuda/bin:\$PATH $prefix/bin/pip install pycuda (built on the device), or a cuda-python 11.x the driver accepts" ;;
      *) say "no CUDA binding: the TensorRT backend needs pycuda (built on the device) or cuda-python matching the driver's CUDA major version" ;;
    esac
  fi
fi
if [ "$platform" = pi ]; then
  "$py" -c 'import picamera2' 2>/dev/null && say "picamera2: found" \
    || say "picamera2 not found: for a Raspberry Pi camera run 'sudo apt install python3-picamera2' (USB cameras work without it)"
fi
tv=$("$py" -c 'import importlib.metadata as m; print(m.version("torch"))' 2>/dev/null) && say "torch $tv (training/export)"
say "done: $prefix/bin/edge-sr --help   (or: source $prefix/bin/activate)"
