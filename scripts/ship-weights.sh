#!/usr/bin/env bash
# Turn a finished training run into the shipped model files and measure them:
#   scripts/ship-weights.sh PRESET RUN [checkpoint-name]      e.g. scripts/ship-weights.sh compact runs/compact_x3
# writes edge_sr/weights/dcscn_<preset>_x<scale>.{safetensors,onnx,int8.onnx,cpu-int8.onnx} and
# docs/quality/<preset>_x<scale>.json (edge-sr eval of all four on $EDGE_SR_DATA/val). Any preset, any scale.
#
#   .onnx           FP32, the fast graph (deploy/fast_graph.py): the runtime's FP32 model
#   .int8.onnx      symmetric signed INT8 Q/DQ from the plain residual export, on conv inputs: TensorRT
#                   (calibration.quantize.TENSORRT_INT8)
#   .cpu-int8.onnx  INT8 for ONNX Runtime on CPUs, x86 and ARM (calibration.quantize.CPU_INT8: uint8 activations,
#                   fast graph)
#
# Both INT8 files are first calibrated (PTQ); then quantization-aware fine-tuning (edge-sr train --qat, QAT_STEPS
# steps, default 600; QAT_STEPS=0 skips it) makes them again from the checkpoint. Each INT8 file shipped is the
# best of the candidates on held-out photos (scripts/heldout.py: never the test sets Set5/Set14): the PTQ files
# (three percentiles, each of the graph as exported and of its activation-equalized twin), the QAT file, and the INT8 file already shipped when the checkpoint is byte-identical to the one shipped (so
# re-shipping never makes a file worse). Scored in the ONNX reference arithmetic (eval --int8-arithmetic
# reference: TensorRT's; free of this CPU's kernel saturation). REFINE=1: the best PTQ file is made again with its
# activation ranges refined by output error (calibrate --refine; minutes for compact, ~6x for normal) and ships
# when it is better on the held-out photos. QAT_BEST_STEPS=N (default 0): the best file then gets N steps of QAT
# of its own (train --qat-from FILE --learn-ranges --qat-loss distill) and ships when that is better. KEEP_FLOAT (default first_conv,last_conv): the node groups every PTQ and QAT file leaves
# in float32 (calibrate --keep-float: the first conv sees the raw input; the reconstruction conv and the residual
# it writes stay float, a few percent of the arithmetic); KEEP_FLOAT_CPU: the same for the CPU file alone (default
# KEEP_FLOAT; compact x2's ships with "first_conv": its quantized last conv is 17% of its CPU INT8 time at 640x480
# and 0.01 dB on Set5). CAL_IMAGES: the calibration folder of every PTQ,
# equalization, refinement and QAT (default $EDGE_SR_DATA/train/bsd200: its scenes give ranges that also fit hard
# edges: docs/deploy.md). KINDS: the INT8 files to re-make (default "int8.onnx
# cpu-int8.onnx"; one of them only for the checkpoint already shipped). Env: PERCENTILES, REFINE, KEEP_FLOAT, KEEP_FLOAT_CPU,
# CAL_IMAGES, CAL_MAX_IMAGES (40), KINDS, QAT_STEPS, QAT_BEST_STEPS, QAT_BATCH (16), QAT_PATCH (48), QAT_LR (2e-5),
# TIE_CONCAT (1: the CPU file ships with its Concat inputs tied, unless that loses more than TIE_TOLERANCE, 0.005 dB,
# on the held-out photos).
set -euo pipefail
preset=${1:?preset}; run=${2:?run folder}; ckpt=${3:-last.safetensors}
here=$(cd "$(dirname "$0")/.." && pwd); cd "$here"
bin=.venv/bin/edge-sr
: "${EDGE_SR_DATA:?set EDGE_SR_DATA to the folder with train/ and val/}"
qat_steps=${QAT_STEPS:-600}
scale=$(.venv/bin/python -c "from edge_sr.checkpoint import load_checkpoint as l; print(l('$run/$ckpt')[0].scale)")
w=edge_sr/weights/dcscn_${preset}_x${scale}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pick() {  # JSON of edge-sr eval, file kind [name prefixes] -> the candidate (file name less the kind) with the best
  # mean PSNR, among those whose names start with one of the prefixes when given
  .venv/bin/python - "$@" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
pre = tuple(sys.argv[3:]) or ("",)
cands = {k.rsplit("/", 1)[-1]: sum(s["psnr"] for s in v.values()) for k, v in r.items() if k != "bicubic"}
cands = {k: v for k, v in cands.items() if k.startswith(pre)}
best = max(cands, key=cands.get)
print(best[: -len(sys.argv[2]) - 1])
EOF
}
for kind in int8.onnx cpu-int8.onnx; do   # the shipped INT8 files stay candidates only for the same weights
  if [ -f "$w.safetensors" ] && [ -f "$w.$kind" ] && cmp -s "$run/$ckpt" "$w.safetensors"; then cp "$w.$kind" "$tmp/shipped.$kind"; fi
done
kinds=${KINDS:-int8.onnx cpu-int8.onnx}
wants() { [[ " $kinds " == *" $1 "* ]]; }   # is this INT8 file (kind) to be re-made?
if ! { wants int8.onnx && wants cpu-int8.onnx; } && ! cmp -s "$run/$ckpt" "$w.safetensors"; then
  echo "KINDS=$kinds re-makes only some INT8 files: only for the checkpoint already shipped ($w.safetensors)" >&2
  exit 2
fi
cp "$run/$ckpt" "$w.safetensors.tmp" && mv "$w.safetensors.tmp" "$w.safetensors"
.venv/bin/python scripts/heldout.py "$tmp/heldout" >/dev/null
# TensorRT's INT8 is calibrated from the plain residual export; the shipped FP32 file is the rewritten (--fast) one,
# and the CPU INT8 file is calibrated from it
plain=$tmp/plain.onnx
$bin export --model "$w.safetensors" --residual -o "$plain"
$bin export --model "$w.safetensors" --residual --fast -o "$w.onnx"
# the same two graphs activation-equalized for INT8 (calibration/equalize.py: same function, channels rescaled)
cal=${CAL_IMAGES:-$EDGE_SR_DATA/train/bsd200}
kf=(--keep-float "${KEEP_FLOAT:-first_conv,last_conv}")
kfc=(--keep-float "${KEEP_FLOAT_CPU:-${KEEP_FLOAT:-first_conv,last_conv}}")   # the CPU file's (KEEP_FLOAT_CPU)
cm=(--max-images "${CAL_MAX_IMAGES:-40}")   # calibration images, 2 crops each (refinement time grows with them)
$bin export --model "$w.safetensors" --residual --equalize "$cal" -o "$tmp/eq_plain.onnx"
$bin export --model "$w.safetensors" --residual --fast --equalize "$cal" -o "$tmp/eq_fast.onnx"
# PTQ at each of PERCENTILES (default "99.99 99.995 99.999": the best differs by model), of the graphs as
# exported (ptq*) and equalized (eq*): all candidates
for pc in ${PERCENTILES:-99.99 99.995 99.999}; do
  for v in ptq eq; do
    if [ $v = ptq ]; then p=$plain; f=$w.onnx; else p=$tmp/eq_plain.onnx; f=$tmp/eq_fast.onnx; fi
    if wants int8.onnx; then
      $bin calibrate --onnx "$p" --images "$cal" -o "$tmp/$v$pc.int8.onnx" --percentile "$pc" "${kf[@]}" "${cm[@]}" \
        --bench none --val none
    fi
    if wants cpu-int8.onnx; then
      $bin calibrate --onnx "$f" --target cpu --images "$cal" -o "$tmp/$v$pc.cpu-int8.onnx" --percentile "$pc" \
        "${kfc[@]}" "${cm[@]}" --bench none --val none
    fi
  done
done
if [ "$qat_steps" -gt 0 ]; then
  $bin train --qat all --init "$w.safetensors" --out "$tmp/qat" --data "$EDGE_SR_DATA/train" \
    --val "$EDGE_SR_DATA/val/set5" --max-steps "$qat_steps" --batch "${QAT_BATCH:-16}" --patch "${QAT_PATCH:-48}" \
    --lr "${QAT_LR:-2e-5}" --calib-images "$cal" --keep-float "${KEEP_FLOAT:-first_conv,last_conv}" \
    --calib-max-images "${CAL_MAX_IMAGES:-40}" --no-progress
fi
for kind in $kinds; do
  models=()   # distinct file names: eval labels models by file name
  for pc in ${PERCENTILES:-99.99 99.995 99.999}; do models+=(--model "$tmp/ptq$pc.$kind" --model "$tmp/eq$pc.$kind"); done
  if [ -f "$tmp/qat/dcscn_${preset}_x${scale}.$kind" ]; then
    cp "$tmp/qat/dcscn_${preset}_x${scale}.$kind" "$tmp/qat.$kind"; models+=(--model "$tmp/qat.$kind")
  fi
  if [ -f "$tmp/shipped.$kind" ]; then models+=(--model "$tmp/shipped.$kind"); fi
  $bin eval --data "$tmp/heldout" --scale "$scale" --no-ssim --int8-arithmetic reference "${models[@]}" \
    --json "$tmp/$kind.json"
  best=$(pick "$tmp/$kind.json" "$kind")
  if [ "${REFINE:-0}" = 1 ]; then
    # the best PTQ file again, its activation ranges refined by output error (calibrate --refine); ships if better
    # than every candidate (the shipped and QAT files included)
    bp=$(pick "$tmp/$kind.json" "$kind" ptq eq)
    pc=${bp#ptq}; pc=${pc#eq}
    if [[ $bp == eq* ]]; then p=$tmp/eq_plain.onnx; f=$tmp/eq_fast.onnx; else p=$plain; f=$w.onnx; fi
    if [ "$kind" = int8.onnx ]; then src=$p; tgt=tensorrt; k=("${kf[@]}"); else src=$f; tgt=cpu; k=("${kfc[@]}"); fi
    $bin calibrate --onnx "$src" --target "$tgt" --images "$cal" -o "$tmp/refined.$kind" --percentile "$pc" --refine \
      "${k[@]}" "${cm[@]}" --bench none --val none
    $bin eval --data "$tmp/heldout" --scale "$scale" --no-ssim --int8-arithmetic reference --model "$tmp/$best.$kind" \
      --model "$tmp/refined.$kind" --json "$tmp/refined.$kind.json"
    best=$(pick "$tmp/refined.$kind.json" "$kind")
  fi
  if [ "${QAT_BEST_STEPS:-0}" -gt 0 ]; then
    # the best file so far fine-tuned as it is (edge-sr train --qat-from: its weights, ranges and layout), its
    # activation ranges learned too, distilled from the FP32 model (MSE to its output: the loss that measures
    # what INT8 costs); ships if better on the held-out photos
    if [ "$kind" = int8.onnx ]; then tgt=tensorrt; else tgt=cpu; fi
    $bin train --qat "$tgt" --init "$w.safetensors" --qat-from "$tmp/$best.$kind" --learn-ranges --qat-loss distill \
      --out "$tmp/qatbest_$kind" --data "$EDGE_SR_DATA/train" --val "$tmp/heldout" --max-steps "$QAT_BEST_STEPS" \
      --batch "${QAT_BATCH:-16}" --patch "${QAT_PATCH:-48}" --lr "${QAT_LR:-2e-5}" --no-progress
    cp "$tmp/qatbest_$kind/dcscn_${preset}_x${scale}.$kind" "$tmp/qatbest.$kind"
    $bin eval --data "$tmp/heldout" --scale "$scale" --no-ssim --int8-arithmetic reference --model "$tmp/$best.$kind" \
      --model "$tmp/qatbest.$kind" --json "$tmp/qatbest.$kind.json"
    best=$(pick "$tmp/qatbest.$kind.json" "$kind")
  fi
  if [ "$kind" = cpu-int8.onnx ] && [ "${TIE_CONCAT:-1}" = 1 ]; then
    # the CPU file with its Concat inputs on the Concat's own scale, so that ONNX Runtime's QLinearConcat copies
    # instead of requantizing (calibration.quantize.tie_concat_inputs; idempotent); ships unless that loses more
    # than TIE_TOLERANCE dB (default 0.005) on the held-out photos
    .venv/bin/python -c "import sys; from edge_sr.calibration.quantize import tie_concat_file as t; t(*sys.argv[1:])" \
      "$tmp/$best.$kind" "$tmp/tied.$kind"
    $bin eval --data "$tmp/heldout" --scale "$scale" --no-ssim --int8-arithmetic reference --model "$tmp/$best.$kind" \
      --model "$tmp/tied.$kind" --json "$tmp/tied.$kind.json"
    best=$(.venv/bin/python - "$tmp/tied.$kind.json" "$best" "${TIE_TOLERANCE:-0.005}" <<'EOF'
import json, sys
r = {k.rsplit("/", 1)[-1]: sum(s["psnr"] for s in v.values()) for k, v in json.load(open(sys.argv[1]))["results"].items()}
tied = next(v for k, v in r.items() if k.startswith("tied."))
untied = next(v for k, v in r.items() if k.startswith(sys.argv[2] + "."))
print("tied" if tied >= untied - float(sys.argv[3]) else sys.argv[2])
EOF
)
  fi
  if [ "$kind" = cpu-int8.onnx ]; then
    # layers still narrower than a multiple of 8 channels (the shipped file as a candidate, made before PReLU layers
    # were padded) get zero filters (calibration.quantize.pad_int8_file: the same output bit for bit, faster)
    .venv/bin/python -c "import sys; from edge_sr.calibration.quantize import pad_int8_file as p; p(*sys.argv[1:])" \
      "$tmp/$best.$kind" "$tmp/$best.$kind"
  fi
  cp "$tmp/$best.$kind" "$w.$kind.tmp" && mv "$w.$kind.tmp" "$w.$kind"
  echo "shipped the $best $kind (best on the held-out photos: $tmp/$kind.json)"
done
mkdir -p docs/quality
$bin eval --data "$EDGE_SR_DATA/val" --scale "$scale" --model "$w.safetensors" --model "$w.onnx" --model "$w.int8.onnx" \
  --model "$w.cpu-int8.onnx" --json "docs/quality/${preset}_x${scale}.json"
# the INT8 files again in the ONNX reference arithmetic (what TensorRT and int32-accumulating CPUs compute)
$bin eval --data "$EDGE_SR_DATA/val" --scale "$scale" --no-ssim --int8-arithmetic reference --model "$w.int8.onnx" \
  --model "$w.cpu-int8.onnx" --json "docs/quality/${preset}_x${scale}.int8-reference.json"
