#!/usr/bin/env bash
# Does `edge-sr upscale` make a video that a browser plays? Makes a 10 s 320x240 25 FPS clip with a
# sine tone (PyAV), upscales it with the CLI, prints what ffprobe sees, then plays it in headless
# Chromium (scripts/video_in_browser.py): duration 10 s, sound decoded, 1 s of real playback, and
# the end reached after a seek. Exit 0 when all holds.
#   scripts/check-video-browser.sh [--model compact] [--seconds 10] [--fps 25] [--keep DIR]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py=${PYTHON:-$here/.venv/bin/python}
model=compact seconds=10 fps=25 keep=""
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model=$2; shift ;;
    --seconds) seconds=$2; shift ;;
    --fps) fps=$2; shift ;;
    --keep) keep=$2; shift ;;
    -h|--help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "check-video-browser: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
command -v ffprobe >/dev/null || { echo "check-video-browser: ffprobe missing (apt install ffmpeg)" >&2; exit 2; }
work=${keep:-$(mktemp -d)}
mkdir -p "$work"
[ -n "$keep" ] || trap 'rm -rf "$work"' EXIT
"$py" -c "import sys; from edge_sr.video import make_test_clip; make_test_clip(sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), 320, 240)" \
  "$work/clip.mp4" "$seconds" "$fps"
echo "input:  $(ffprobe -v error -show_entries stream=codec_name,width,height:format=duration -of compact=nk=0 "$work/clip.mp4" | paste -sd' ')"
start=$(date +%s)
"$py" -m edge_sr upscale "$work/clip.mp4" -o "$work/out.mp4" --model "$model"
echo "upscaled in $(( $(date +%s) - start )) s"
echo "output: $(ffprobe -v error -show_entries stream=codec_name,pix_fmt,width,height,color_space:format=duration -of compact=nk=0 "$work/out.mp4" | paste -sd' ')"
"$py" "$here/scripts/video_in_browser.py" "$work/out.mp4" --expect-duration "$seconds" --expect-audio
