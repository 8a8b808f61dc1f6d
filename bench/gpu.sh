#!/usr/bin/env bash
# Every pending GPU measurement in one go, JSON per measurement under $OUT (default bench/results/gpu).
# On a CUDA machine:   OUT=/tmp/gpu bash bench/gpu.sh
# The data it reads comes from the data home; for a machine without it, first copy what it needs into the
# git-ignored .device_data/ (about 40 MB):   bash bench/gpu.sh --prepare
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--prepare" ]; then
  python - <<'PY'
import shutil
from fsad_nb.datasets import dataset
for name in ("magnetic_tile", "dtd10"):
    src = dataset(name); shutil.copytree(src, f".device_data/{name}", dirs_exist_ok=True); print("copied", src)
PY
  exit 0
fi
OUT=${OUT:-bench/results/gpu}; mkdir -p "$OUT"
export FSAD_DATA="$PWD/.device_data${FSAD_DATA:+:$FSAD_DATA}"
[ -d .venv ] && . .venv/bin/activate
nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/gpu.txt" 2>&1 || true
# One budget for the whole script (a lent GPU is about 15 minutes in all, start-up included): each step gets at most
# its own limit and what is left of BUDGET seconds; once the budget is spent the remaining steps are skipped, so the
# steps are ordered by how much their figure is wanted.
BUDGET=${BUDGET:-420}; START=$(date +%s)
run() {  # name, limit in seconds, command...
  local name=$1 limit=$2; shift 2; local t0=$(date +%s)
  local left=$(( BUDGET - (t0 - START) ))
  if [ "$left" -lt 15 ]; then echo "$name: skipped (budget of $BUDGET s spent; BUDGET=SECONDS raises it)"; return; fi
  [ "$limit" -gt "$left" ] && limit=$left
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1; local rc=$?
  echo "$name: exit $rc in $(( $(date +%s) - t0 )) s"
}
# inference at batch 32 and 128, bfloat16 autocast and float32, against the bare backbone (target: >= 50 % of it)
for m in knn regad dfd simplenet uniad; do
  run "throughput_$m" 120 python bench/throughput.py --method $m --device cuda --batch-size 32 128 --precision bf16 fp32 --image-size 224 --out "$OUT/throughput_$m.json"
done
run throughput_tdg 120 python bench/throughput.py --method tdg --device cuda --batch-size 32 --precision bf16 fp32 --out "$OUT/throughput_tdg.json"
# UniAD + adversarial: meta-training seconds per step and per MVTec AD epoch (the paper trains 1000 epochs)
run throughput_uniad_adv 120 python bench/throughput.py --method uniad_adv --device cuda --train-steps 20 --out "$OUT/throughput_uniad_adv.json"
# RegAD adaptation at K = 8 with the 22 augmentations (paper: 4.47 s on an RTX 3090; target < 0.5 s)
run regad_adapt 120 python bench/regad_adapt.py --device cuda --shots 8 --out "$OUT/regad_adapt.json"
# DFD and SimpleNet fits at the paper's budget, K = 2 (N = 80, 80 epochs; target < 60 s)
run dfd_fit 300 python bench/dfd_fit.py --method dfd --device cuda --shots 2 --out "$OUT/dfd_fit.json"
# seconds per training step and per predicted image at each method's `paper` preset (random weights: the time is the
# same); copied over fsad_nb/tables/timings.json, they make the estimates of fsad reproduce GPU ones
run preset_timing 180 python bench/preset_timing.py --device cuda --presets paper --fresh --out "$OUT/preset_timing.json"
# then, while the budget lasts: SimpleNet's and TDG's fits, UniAD trained at a GPU budget, the authors' code side by side
run simplenet_fit 200 python bench/dfd_fit.py --method simplenet --device cuda --shots 2 --out "$OUT/simplenet_fit.json"
# TDG at the paper's setting, K = 5, one class (target < 120 s)
run tdg_fit 300 python bench/tdg_oneclass.py --preset paper --device cuda --classes 0 --shots 5 --rounds 1 --n-test 1000 --fresh --out "$OUT/tdg_fit.json"
# UniAD at a GPU budget on magnetic_tile (leave-one-out meta-training on dtd10; 20 epochs; 3 rounds of K = 2, 4, 8)
for m in uniad uniad_adv; do
  run "${m/uniad/uniad_gpu}" 240 fsad run --method $m --dataset magnetic_tile --shots 2 4 8 --rounds 3 --meta dtd10 --device cuda --set epochs=20 --out "$OUT/${m/uniad/uniad_gpu}"
done
# ours vs the authors' code, side by side: one training step and one predict per method, same threads, batch and
# sizes, on the CPU (their code is run through CPU shims); needs their clones in $OFFICIAL (RegAD, UniAD, DFD, ...)
OFFICIAL=${OFFICIAL:-../official}
if [ -d "$OFFICIAL/RegAD" ]; then
  run equivalence_speed 900 python bench/equivalence.py --official "$OFFICIAL" --speed --threads 8 --json "$OUT/equivalence.json"
else echo "equivalence_speed: skipped (no $OFFICIAL/RegAD; OFFICIAL=DIR bash bench/gpu.sh)"; fi
ls -la "$OUT"
