#!/usr/bin/env bash
# Raspberry Pi proof without a Pi: run install.sh and the torch-free runtime in 64-bit Raspberry Pi OS
# user space (an arm64 Debian bookworm root filesystem, the base of Raspberry Pi OS) under
# qemu-user-static, with the real aarch64 wheels of ONNX Runtime and OpenCV from PyPI, and compare the
# outputs with the same commands on x86. Not part of CI: it needs root, network and ~10 minutes.
#
#   sudo scripts/check-pi-emulated.sh [--clean] [--fp32 M.onnx] [--int8 M.int8.onnx] [--cpu-int8 M.cpu-int8.onnx]
#
#   --clean         delete the cached root filesystem first (a full run from scratch)
#   --fp32 / --int8 / --cpu-int8  the ONNX models (default: the shipped edge_sr/weights/dcscn_compact_x2
#                   .onnx, .int8.onnx (symmetric int8 on conv inputs: TensorRT's) and .cpu-int8.onnx (uint8
#                   activations: U8S8, the Pi default); env EDGE_SR_PI_FP32 / EDGE_SR_PI_INT8 / EDGE_SR_PI_CPU_INT8)
#   --cache DIR     where the root filesystem and the work folder live (default /var/cache/edge-sr-pi;
#                   env EDGE_SR_PI_CACHE). Never inside the repo.
# Env: EDGE_SR_PI_MIRROR (Debian mirror), EDGE_SR_DATA (data folder holding val/set5; default ../shared/data).
#
# Steps: host tools (qemu-user-static, binfmt-support, debootstrap) -> arm64 bookworm rootfs (cached) ->
# prepare it (CA certificates, user pi; cached) -> the chroot looks like a Pi 5 -> copy the repo's tracked
# files to /home/pi/edge-sr -> ./install.sh as user pi (twice: the second must do nothing) -> no torch ->
# upscale (FP32 and both INT8 flavours) -> eval on two Set5 images -> stream --source demo to a file -> bench
# (tiny, emulated: it checks that the Pi writes the INT8 report, not its speed) -> the same commands on x86 -> compare. Each step prints its result and time; the first failure stops the check (exit 1)
# and shows the end of its log. Emulated inference is ~500x slower than native: inputs are tiny.
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
pidir="$repo/scripts/pi"
cache=${EDGE_SR_PI_CACHE:-/var/cache/edge-sr-pi}
fp32=${EDGE_SR_PI_FP32:-$repo/edge_sr/weights/dcscn_compact_x2.onnx}
int8=${EDGE_SR_PI_INT8:-$repo/edge_sr/weights/dcscn_compact_x2.int8.onnx}
cpuint8=${EDGE_SR_PI_CPU_INT8:-$repo/edge_sr/weights/dcscn_compact_x2.cpu-int8.onnx}
mirror=${EDGE_SR_PI_MIRROR:-http://deb.debian.org/debian}
data=${EDGE_SR_DATA:-$repo/../shared/data}
suite=bookworm
clean=0

die() { echo "check-pi-emulated: error: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --clean) clean=1 ;;
    --fp32) [ $# -ge 2 ] || die "--fp32 needs a file"; fp32=$2; shift ;;
    --int8) [ $# -ge 2 ] || die "--int8 needs a file"; int8=$2; shift ;;
    --cpu-int8) [ $# -ge 2 ] || die "--cpu-int8 needs a file"; cpuint8=$2; shift ;;
    --cache) [ $# -ge 2 ] || die "--cache needs a folder"; cache=$2; shift ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done

[ "$(id -u)" = 0 ] || die "needs root (apt-get, debootstrap, mounts, chroot): sudo $0"
[ "$(uname -m)" = x86_64 ] || die "this check runs on an x86-64 host (on a real Pi just run ./install.sh)"
for f in "$fp32" "$int8" "$cpuint8"; do
  [ -f "$f" ] || die "model not found: $f (ship it, or give --fp32/--int8/--cpu-int8, env EDGE_SR_PI_FP32/_INT8/_CPU_INT8)"
done
fp32=$(realpath "$fp32") int8=$(realpath "$int8") cpuint8=$(realpath "$cpuint8")
cache=$(realpath -m "$cache")
case "$cache/" in "$repo"/*) die "the cache must be outside the repo: $cache" ;; esac
[ -d "$data/val/set5" ] || die "no Set5 at $data/val/set5 (set EDGE_SR_DATA)"
x86_py="$repo/.venv/bin/python"
[ -x "$x86_py" ] || die "no x86 environment at $repo/.venv (run ./install.sh first): it gives the reference outputs"

rootfs="$cache/$suite-arm64"
work="$cache/work"       # wiped each run: the Pi owner's home and the x86 reference outputs
home="$work/home"        # /home/pi inside the chroot
logs="$work/logs"
x86="$work/x86"
piout="$home/out"        # = /home/pi/out inside
check_start=$(date +%s.%N)
n=0

# ---- step runner -----------------------------------------------------------------------------------------
# step NAME COMMAND...: run, log to $logs/NN-NAME.log, print result and time; stop at the first failure.
step() {
  local name=$1; shift
  n=$((n + 1))
  local log; log=$(printf '%s/%02d-%s.log' "$logs" "$n" "$name")
  local t0; t0=$(date +%s.%N)
  printf '[%2d] %-22s ... ' "$n" "$name"
  "$@" >"$log" 2>&1
  local rc=$?
  local dt; dt=$(since "$t0")
  if [ $rc = 0 ]; then
    printf 'ok    %7.1f s  %s\n' "$dt" "$(grep '^RESULT: ' "$log" | tail -1 | cut -c9-)"
    return 0
  fi
  printf 'FAIL  %7.1f s  (exit %s; log %s)\n' "$dt" "$rc" "$log"
  tail -n 25 "$log" | sed 's/^/      | /'
  printf 'check-pi-emulated: FAILED at step %s after %.0f s\n' "$name" "$(since "$check_start")"
  exit 1
}
result() { echo "RESULT: $*"; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

# run a command in the emulated Pi, as user pi (pi_run) or root (pi_root)
pi_run() { unshare --mount --propagation private "$pidir/chroot-run.sh" "$rootfs" "$home" -- "$@"; }
pi_root() { unshare --mount --propagation private "$pidir/chroot-run.sh" --root "$rootfs" "$home" -- "$@"; }

# ---- steps -------------------------------------------------------------------------------------------------
host_tools() {
  local missing=()
  for p in qemu-user-static binfmt-support debootstrap; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" || return 1
  fi
  [ -e /proc/sys/fs/binfmt_misc/status ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || return 1
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64 || return 1
  cat /proc/sys/fs/binfmt_misc/qemu-aarch64
  # F (fix binary): the kernel opens the interpreter now, so the chroot needs no copy of qemu
  grep -q '^flags: .*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 || { echo "qemu-aarch64 binfmt lacks the F flag"; return 1; }
  local v; v=$(qemu-aarch64-static --version | head -1)
  result "${missing[*]:+installed ${missing[*]}; }$v"
}

build_rootfs() {
  if [ -f "$rootfs/.edge-sr-rootfs" ]; then result "cached: $rootfs"; return 0; fi
  rm -rf "$rootfs.partial"
  mkdir -p "$cache"
  # python3-venv and python3-pip: a Raspberry Pi OS image has them; debootstrap's base does not
  debootstrap --arch=arm64 --include=python3,python3-venv,python3-pip,ca-certificates,sudo \
    "$suite" "$rootfs.partial" "$mirror" || return 1
  date -u +%FT%TZ > "$rootfs.partial/.edge-sr-rootfs"
  mv "$rootfs.partial" "$rootfs"
  result "built $rootfs ($(du -sh "$rootfs" | cut -f1))"
}

prepare_rootfs() {
  # the host's CA certificates (this network re-signs TLS), the user pi (uid 1000, sudo), hostname
  local sig; sig=$(cat /usr/local/share/ca-certificates/* 2>/dev/null | cksum)
  if [ -f "$rootfs/.edge-sr-prepared" ] && [ "$(cat "$rootfs/.edge-sr-prepared")" = "$sig" ]; then
    result "cached"; return 0
  fi
  mkdir -p "$home"
  rm -rf "$rootfs/usr/local/share/ca-certificates"
  mkdir -p "$rootfs/usr/local/share/ca-certificates"
  cp -r /usr/local/share/ca-certificates/. "$rootfs/usr/local/share/ca-certificates/" 2>/dev/null || true
  pi_root update-ca-certificates || return 1
  pi_root sh -c 'id pi >/dev/null 2>&1 || useradd -m -u 1000 -s /bin/bash -G sudo pi' || return 1
  echo 'pi ALL=(ALL) NOPASSWD: ALL' > "$rootfs/etc/sudoers.d/010_pi-nopasswd"
  chmod 440 "$rootfs/etc/sudoers.d/010_pi-nopasswd"
  echo raspberrypi > "$rootfs/etc/hostname"
  touch "$rootfs/etc/resolv.conf"
  pi_root apt-get clean || return 1
  echo "$sig" > "$rootfs/.edge-sr-prepared"
  result "CA certificates ($(ls /usr/local/share/ca-certificates | wc -l) from the host), user pi"
}

looks_like_pi() {
  pi_run sh -c 'set -e
    echo "uname -m: $(uname -m)"; echo "device-tree model: $(tr -d "\0" < /proc/device-tree/model)"
    grep -m1 "^Model" /proc/cpuinfo; grep -m1 "^CPU part" /proc/cpuinfo; python3 -V
    python3 -c "import platform, sys; print(platform.machine(), sys.version.split()[0])"
    test "$(uname -m)" = aarch64; tr -d "\0" < /proc/device-tree/model | grep -q "Raspberry Pi 5"
    test "$(python3 -c "import platform; print(platform.machine())")" = aarch64' || return 1
  result "aarch64, $(pi_run python3 -V 2>&1), /proc/device-tree/model = Raspberry Pi 5 Model B"
}

copy_repo() {
  # what a Pi owner's `git clone` holds: the tracked files (as in this working tree), plus the models
  rm -rf "$home/edge-sr" "$home/check"
  mkdir -p "$home/edge-sr" "$home/check/set5" "$piout" "$x86"
  (cd "$repo" && git ls-files -z --cached | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
    | tar --null -T - -cf -) | tar -xf - -C "$home/edge-sr" || return 1
  rm -rf "$home/edge-sr/.venv"
  # the models: at their shipped paths when they are the shipped ones, else beside the check inputs
  local untracked=""
  for m in "$fp32" "$int8" "$cpuint8"; do
    case "$m" in
      "$repo"/*) mkdir -p "$home/edge-sr/$(dirname "${m#$repo/}")"; cp "$m" "$home/edge-sr/${m#$repo/}"
        (cd "$repo" && git ls-files --error-unmatch "${m#$repo/}" >/dev/null 2>&1) || untracked="$untracked ${m#$repo/}" ;;
      *) cp "$m" "$home/check/" ;;
    esac
  done
  # inputs: a tiny 32x24 crop of a Set5 image (emulation is ~500x slower) and two Set5 images
  "$x86_py" - "$data/val/set5" "$home/check" <<'EOF' || return 1
import sys
from pathlib import Path
import cv2
set5, out = Path(sys.argv[1]), Path(sys.argv[2])
imgs = sorted(set5.glob("*.png"))
img = cv2.imread(str(imgs[1]))
cv2.imwrite(str(out / "tiny.png"), img[100:124, 100:132])
for p in imgs[:2]:
    (out / "set5" / p.name).write_bytes(p.read_bytes())
print("inputs:", out / "tiny.png", [p.name for p in imgs[:2]])
EOF
  cp "$pidir/infer_npy.py" "$home/check/"
  chown -R 1000:1000 "$home"
  result "$(cd "$home/edge-sr" && find . -type f | wc -l) files -> /home/pi/edge-sr${untracked:+ (warning: not in git, a clone lacks:$untracked)}"
}

# paths of the models inside the chroot
pi_model() { case "$1" in "$repo"/*) echo "/home/pi/edge-sr/${1#$repo/}" ;; *) echo "/home/pi/check/${1##*/}" ;; esac; }

# ./install.sh the way a Pi owner runs it; then check what it said and made
run_install() {
  local out; out=$(pi_run bash -c 'cd ~/edge-sr && ./install.sh' 2>&1); local rc=$?
  echo "$out"
  [ $rc = 0 ] || return 1
  echo "$out" | grep -q "platform: pi" || { echo "CHECK: install.sh did not detect the Pi"; return 1; }
  echo "$out" | grep -q "sudo apt install python3-picamera2" || { echo "CHECK: no picamera2 hint"; return 1; }
  grep -q "include-system-site-packages = true" "$home/edge-sr/.venv/pyvenv.cfg" \
    || { echo "CHECK: venv without system site packages"; return 1; }
  pi_run /home/pi/edge-sr/.venv/bin/edge-sr --version || return 1
  result "platform pi, venv --system-site-packages, picamera2 hint shown"
}

rerun_install() {
  local out; out=$(pi_run bash -c 'cd ~/edge-sr && ./install.sh' 2>&1); local rc=$?
  echo "$out"
  [ $rc = 0 ] || return 1
  echo "$out" | grep -q "already installed" || { echo "CHECK: the second run reinstalled"; return 1; }
  result "second run: nothing to do"
}

no_torch() {
  pi_run bash -c 'cd ~/edge-sr && .venv/bin/python -m pip list 2>/dev/null' | tee "$logs/pip-list.txt" || return 1
  if grep -Ei '^(torch|torchvision|nvidia-)' "$logs/pip-list.txt"; then echo "CHECK: torch installed on the Pi"; return 1; fi
  pi_run /home/pi/edge-sr/.venv/bin/python -c 'import torch' 2>/dev/null && { echo "CHECK: torch importable"; return 1; }
  local v; v=$(grep -Ei '^(onnxruntime|opencv[-a-z]*|numpy) ' "$logs/pip-list.txt" | awk '{printf "%s %s, ", $1, $2}')
  result "no torch; ${v%, }"
}

# the same command on the Pi (emulated) and on x86; outputs land in $piout and $x86 under the same names
pi_edge() { pi_run bash -c 'cd ~/out && exec ~/edge-sr/.venv/bin/edge-sr "$@"' edge-sr "$@"; }
x86_edge() { (cd "$x86" && "$repo/.venv/bin/edge-sr" "$@"); }

do_infer() {  # precision model
  local name=infer_$1.npy said
  said=$(pi_run bash -c 'cd ~/out && exec ~/edge-sr/.venv/bin/python ~/check/infer_npy.py "$@"' x \
    "$(pi_model "$2")" /home/pi/check/tiny.png "$name") || { echo "$said"; return 1; }
  echo "$said"
  (cd "$x86" && "$x86_py" "$pidir/infer_npy.py" "$2" "$home/check/tiny.png" "$name") || return 1
  result "${said#*: }, no torch imported"
}

do_upscale() {  # precision model
  pi_edge upscale /home/pi/check/tiny.png -o "upscale_$1.png" --model "$(pi_model "$2")" || return 1
  x86_edge upscale "$home/check/tiny.png" -o "upscale_$1.png" --model "$2" || return 1
  result "32x24 -> $("$x86_py" -c 'import cv2,sys; h,w=cv2.imread(sys.argv[1]).shape[:2]; print(f"{w}x{h}")' "$piout/upscale_$1.png")"
}

do_eval() {
  pi_edge eval --data /home/pi/check/set5 --scale 2 --model "$(pi_model "$fp32")" --model "$(pi_model "$int8")" \
    --model "$(pi_model "$cpuint8")" --json eval.json || return 1
  x86_edge eval --data "$home/check/set5" --scale 2 --model "$fp32" --model "$int8" --model "$cpuint8" \
    --json eval.json || return 1
  result "$("$x86_py" -c '
import json, sys
r = json.load(open(sys.argv[1]))["results"]
print(", ".join("%s %.3f dB" % (m.split("/")[-1], v[k]["psnr"]) for m, v in r.items() for k in v))' "$piout/eval.json")"
}

do_stream() {
  # FFV1 (lossless) so the comparison measures the upscaling, not JPEG; the demo scene itself differs
  # by a level here and there between x86 and ARM (numpy's sin/cos), so an image source is streamed too
  local common=(stream --fps 0 --log-interval 600 --video-codec FFV1)
  local demo=(--source demo --width 32 --height 24 --frames 4) image=(--loop --frames 2)
  pi_edge "${common[@]}" "${demo[@]}" --model "$(pi_model "$fp32")" --output stream_demo_fp32.avi || return 1
  pi_edge "${common[@]}" "${image[@]}" --source /home/pi/check/tiny.png --model "$(pi_model "$fp32")" \
    --output stream_image_fp32.avi || return 1
  x86_edge "${common[@]}" "${demo[@]}" --model "$fp32" --output stream_demo_fp32.avi || return 1
  x86_edge "${common[@]}" "${image[@]}" --source "$home/check/tiny.png" --model "$fp32" --output stream_image_fp32.avi || return 1
  result "demo scene 32x24 -> 64x48, 4 frames; tiny.png, 2 frames (FFV1 .avi)"
}

do_bench() {
  # the report a real Pi writes (edge-sr bench): every precision of the shipped models and the INT8 summary.
  # Emulated speed means nothing: tiny frames, one run; it checks that the report settles the INT8 choice.
  pi_edge bench --size 32x24 --seconds 0 --runs 1 --warmup 0 --threads 1 --no-plot -o bench_pi \
    --model "$(pi_model "$fp32")" --model "$(pi_model "$int8")" --model "$(pi_model "$cpuint8")" || return 1
  "$x86_py" "$pidir/check_bench.py" "$piout/bench_pi.json" || return 1
}

do_compare() {
  "$x86_py" "$pidir/compare.py" "$x86" "$piout" || return 1
  result "every output within tolerance of x86"
}

# ---- run -----------------------------------------------------------------------------------------------------
if [ $clean = 1 ]; then
  echo "removing the cached root filesystem $rootfs"
  rm -rf "$rootfs" "$rootfs.partial"
fi
rm -rf "$work"
mkdir -p "$logs" "$home" "$x86"
echo "edge-sr Raspberry Pi check (emulated arm64 $suite user space); cache $cache"
echo "models: $fp32, $int8, $cpuint8"
step host-tools         host_tools
step rootfs             build_rootfs
step prepare-rootfs     prepare_rootfs
step looks-like-pi      looks_like_pi
step copy-repo          copy_repo
step install.sh         run_install
step install.sh-again   rerun_install
step no-torch           no_torch
step infer-fp32         do_infer fp32 "$fp32"
step infer-int8         do_infer int8 "$int8"
step infer-cpu-int8     do_infer cpu-int8 "$cpuint8"
step upscale-fp32       do_upscale fp32 "$fp32"
step upscale-int8       do_upscale int8 "$int8"
step upscale-cpu-int8   do_upscale cpu-int8 "$cpuint8"
step eval-set5x2        do_eval
step stream-demo        do_stream
step bench-report       do_bench
step compare-x86        do_compare
sed 's/^/      /' "$logs/$(printf %02d $n)-compare-x86.log" | grep -v RESULT
printf 'check-pi-emulated: PASSED in %.0f s (logs and outputs in %s)\n' "$(since "$check_start")" "$work"
