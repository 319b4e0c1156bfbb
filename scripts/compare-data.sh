#!/usr/bin/env bash
# Does more training data help? Two runs of one recipe at equal steps, differing only in --data:
#   A: $EDGE_SR_DATA/train (T91 + BSD200)      B: $EDGE_SR_DATA/train + $EDGE_SR_DATA/photos
# side by side (one thread each on a 2-core machine, so both get the same CPU), then `edge-sr eval` of each
# run's last checkpoint on Set5 and Set14, and the two validation curves (Set5, from each run's log.jsonl).
#
#   scripts/compare-data.sh OUT PRESET SCALE EPOCHS [train options...]
#   e.g. scripts/compare-data.sh runs/data_normal_x2 normal 2 10 --init edge_sr/weights/dcscn_normal_x2.safetensors \
#          --lr 5e-4 --warmup-steps 100
#
# Writes OUT/a, OUT/b (run folders), OUT/eval_{a,b}.json and OUT/summary.json; prints the table.
# Resumable: run it again with the same arguments and each unfinished run continues from its state.pt.
set -euo pipefail
out=${1:?out folder}; preset=${2:?preset}; scale=${3:?scale}; epochs=${4:?epochs}; shift 4
here=$(cd "$(dirname "$0")/.." && pwd); cd "$here"
bin=.venv/bin/edge-sr
: "${EDGE_SR_DATA:?set EDGE_SR_DATA to the folder with train/, photos/ and val/}"
[ -d "$EDGE_SR_DATA/photos" ] || { echo "compare-data: no $EDGE_SR_DATA/photos" >&2; exit 2; }
mkdir -p "$out"
declare -A data=([a]="$EDGE_SR_DATA/train" [b]="$EDGE_SR_DATA/train $EDGE_SR_DATA/photos")
pids=()
for r in a b; do
  if [ -f "$out/$r/state.pt" ]; then
    # shellcheck disable=SC2086
    $bin train --out "$out/$r" --resume --epochs "$epochs" --no-progress >>"$out/$r.stdout" 2>&1 &
  else
    # shellcheck disable=SC2086
    $bin train --out "$out/$r" --preset "$preset" --scale "$scale" --epochs "$epochs" --threads 1 \
      --data ${data[$r]} --val "$EDGE_SR_DATA/val/set5" --no-progress "$@" >>"$out/$r.stdout" 2>&1 &
  fi
  pids+=($!)
done
trap 'kill -TERM "${pids[@]}" 2>/dev/null; wait' INT TERM
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=$?; done
[ $rc = 0 ] || { echo "compare-data: a training run failed (exit $rc); see $out/a.stdout, $out/b.stdout" >&2; exit $rc; }
for r in a b; do
  $bin eval --data "$EDGE_SR_DATA/val" --scale "$scale" --no-ssim --model "$out/$r/last.safetensors" \
    --json "$out/eval_$r.json" >/dev/null
done
.venv/bin/python - "$out" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
summary = {}
for r, label in (("a", "T91 + BSD200"), ("b", "T91 + BSD200 + photos")):
    log = [json.loads(line) for line in (out / r / "log.jsonl").read_text().splitlines() if line.strip()]
    ev = json.loads((out / f"eval_{r}.json").read_text())
    res = next(v for k, v in ev["results"].items() if k != "bicubic")  # eval adds a bicubic row
    summary[r] = {"data": label, "steps": log[-1]["step"], "hours": round(log[-1]["wall_s"] / 3600, 2),
                  "curve_set5": [[e["step"], round(e["val_psnr"], 3)] for e in log if e.get("val_psnr")],
                  "set5": round(res["set5"]["psnr"], 3), "set14": round(res["set14"]["psnr"], 3)}
(out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
print(f"{'data':24} {'steps':>6} {'hours':>5} {'Set5':>7} {'Set14':>7}  Set5 curve (step: dB)")
for s in summary.values():
    curve = ", ".join(f"{st // 1000 if st % 1000 == 0 else st / 1000}K {v:.2f}" for st, v in s["curve_set5"])
    print(f"{s['data']:24} {s['steps']:>6} {s['hours']:>5} {s['set5']:>7.3f} {s['set14']:>7.3f}  {curve}")
EOF
