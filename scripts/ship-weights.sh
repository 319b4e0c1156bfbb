#!/usr/bin/env bash
# Turn a finished training run into the shipped model files and measure them:
#   scripts/ship-weights.sh PRESET RUN [checkpoint-name]      e.g. scripts/ship-weights.sh compact runs/compact_x3
# writes edge_sr/weights/dcscn_<preset>_x<scale>.{safetensors,onnx,int8.onnx,cpu-int8.onnx} and
# docs/quality/<preset>_x<scale>.json (edge-sr eval of all four on $EDGE_SR_DATA/val). Any preset, any scale.
#
#   .onnx           FP32, the fast graph (deploy/fast_graph.py): the runtime's FP32 model
#   .int8.onnx      symmetric signed INT8 Q/DQ from the plain residual export: TensorRT, and ONNX Runtime S8S8 (ARM)
#   .cpu-int8.onnx  INT8 for ONNX Runtime on CPUs (calibration.quantize.CPU_INT8: uint8 activations, fast graph)
#
# Both INT8 files are first calibrated (PTQ); then quantization-aware fine-tuning (edge-sr train --qat, QAT_STEPS
# steps, default 600; QAT_STEPS=0 skips it) makes them again from the checkpoint, and each QAT file replaces the PTQ
# one when it scores higher on Set5 + Set14. Env: QAT_STEPS, QAT_BATCH (16), QAT_PATCH (48), QAT_LR (2e-5).
set -euo pipefail
preset=${1:?preset}; run=${2:?run folder}; ckpt=${3:-last.safetensors}
here=$(cd "$(dirname "$0")/.." && pwd); cd "$here"
bin=.venv/bin/edge-sr
: "${EDGE_SR_DATA:?set EDGE_SR_DATA to the folder with train/ and val/}"
qat_steps=${QAT_STEPS:-600}
scale=$(.venv/bin/python -c "from edge_sr.checkpoint import load_checkpoint as l; print(l('$run/$ckpt')[0].scale)")
w=edge_sr/weights/dcscn_${preset}_x${scale}
cp "$run/$ckpt" "$w.safetensors.tmp" && mv "$w.safetensors.tmp" "$w.safetensors"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# TensorRT's INT8 is calibrated from the plain residual export; the shipped FP32 file is the rewritten (--fast) one,
# and the CPU INT8 file is calibrated from it
plain=$tmp/plain.onnx
$bin export --model "$w.safetensors" --residual -o "$plain"
$bin export --model "$w.safetensors" --residual --fast -o "$w.onnx"
$bin calibrate --onnx "$plain" --images "$EDGE_SR_DATA/train/yang91" -o "$w.int8.onnx" --bench 320x240,640x480
$bin calibrate --onnx "$w.onnx" --target cpu --images "$EDGE_SR_DATA/train/yang91" -o "$w.cpu-int8.onnx" \
  --bench 320x240,640x480
if [ "$qat_steps" -gt 0 ]; then
  $bin train --qat all --init "$w.safetensors" --out "$tmp/qat" --data "$EDGE_SR_DATA/train" \
    --val "$EDGE_SR_DATA/val/set5" --max-steps "$qat_steps" --batch "${QAT_BATCH:-16}" --patch "${QAT_PATCH:-48}" \
    --lr "${QAT_LR:-2e-5}" --no-progress
  for kind in int8.onnx cpu-int8.onnx; do
    q=$tmp/qat/dcscn_${preset}_x${scale}.$kind
    cp "$w.$kind" "$tmp/ptq.$kind"; cp "$q" "$tmp/qat.$kind"   # distinct names: eval labels models by file name
    $bin eval --data "$EDGE_SR_DATA/val" --scale "$scale" --no-ssim --model "$tmp/ptq.$kind" --model "$tmp/qat.$kind" \
      --json "$tmp/$kind.json"
    better=$(.venv/bin/python - "$tmp/$kind.json" "ptq.$kind" "qat.$kind" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
score = lambda name: sum(s["psnr"] for s in next(v for k, v in r.items() if k.endswith(name)).values())
print(1 if score(sys.argv[3]) > score(sys.argv[2]) else 0)
EOF
)
    if [ "$better" = 1 ]; then cp "$q" "$w.$kind.tmp" && mv "$w.$kind.tmp" "$w.$kind"; echo "shipped the QAT $kind"
    else echo "kept the PTQ $kind (QAT did not score higher)"; fi
  done
fi
mkdir -p docs/quality
$bin eval --data "$EDGE_SR_DATA/val" --scale "$scale" --model "$w.safetensors" --model "$w.onnx" --model "$w.int8.onnx" \
  --model "$w.cpu-int8.onnx" --json "docs/quality/${preset}_x${scale}.json"
