#!/usr/bin/env bash
# Turn a finished training run into the shipped model files and measure them:
#   scripts/ship-weights.sh compact runs/compact_x2 [checkpoint-name]
# writes edge_sr/weights/dcscn_<preset>_x<scale>.{safetensors,onnx,int8.onnx} and
# docs/quality/<preset>_x<scale>.json (edge-sr eval of all three on $EDGE_SR_DATA/val).
set -euo pipefail
preset=${1:?preset}; run=${2:?run folder}; ckpt=${3:-last.safetensors}
here=$(cd "$(dirname "$0")/.." && pwd); cd "$here"
bin=.venv/bin/edge-sr
: "${EDGE_SR_DATA:?set EDGE_SR_DATA to the folder with train/ and val/}"
scale=$(.venv/bin/python -c "from edge_sr.checkpoint import load_checkpoint as l; print(l('$run/$ckpt')[0].scale)")
w=edge_sr/weights/dcscn_${preset}_x${scale}
cp "$run/$ckpt" "$w.safetensors.tmp" && mv "$w.safetensors.tmp" "$w.safetensors"
# INT8 is calibrated from the plain residual export; the shipped FP32 file is the rewritten (--fast) one
plain=$(mktemp -d)/plain.onnx
$bin export --model "$w.safetensors" --residual -o "$plain"
$bin export --model "$w.safetensors" --residual --fast -o "$w.onnx"
$bin calibrate --onnx "$plain" --images "$EDGE_SR_DATA/train/yang91" -o "$w.int8.onnx" --bench 320x240,640x480
mkdir -p docs/quality
$bin eval --data "$EDGE_SR_DATA/val" --scale "$scale" --model "$w.safetensors" --model "$w.onnx" --model "$w.int8.onnx" \
  --json "docs/quality/${preset}_x${scale}.json"
