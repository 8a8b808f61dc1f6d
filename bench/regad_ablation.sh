#!/bin/bash
# RegAD's component ablation (the paper's Table 5) on magnetic_tile at the `cpu` preset, on the same 10 support
# draws per K as every other method: A = the 22 support augmentations, F = registration training on other
# categories (dtd10 and elpv; the target is never among them), S = the spatial transformers.
#   bash bench/regad_ablation.sh && python bench/regad_tables.py      # ROUNDS=3 bash ...: the first 3 draws only
# A+F+S is the main run (results/lee/regad, from `bash bench/adversarial_runs.sh regad`). Runs with the same
# training share one trained network, because augmentation is not part of training: FS starts from the main
# run's checkpoint, AF from F's. Each `fsad run` resumes: rerunning skips finished rounds.
set -e
OUT=${OUT:-results/regad_ablation}
ROUNDS=${ROUNDS:-10}
MAIN=${MAIN:-results/lee/regad}
run() {  # run NAME [fsad run options...]
  local name=$1; shift
  fsad run --method regad --dataset magnetic_tile --shots 2 4 8 --rounds $ROUNDS --preset cpu "$@" --out $OUT/$name
}
share() {  # share CHECKPOINT NAME: start NAME's meta-training from a finished one with the same training set-up
  local to=$OUT/$2/magnetic_tile/meta/regad.pt
  [ -e "$to" ] || { mkdir -p "$(dirname "$to")" && cp "$1" "$to"; }
}
run none --set augment=False train=False stn=False
run A    --set augment=True  train=False stn=False
run F    --meta dtd10 elpv --set augment=False train=True stn=False
[ -e $MAIN/magnetic_tile/meta/regad.pt ] && share $MAIN/magnetic_tile/meta/regad.pt FS
run FS   --meta dtd10 elpv --set augment=False train=True stn=True
share $OUT/F/magnetic_tile/meta/regad.pt AF
run AF   --meta dtd10 elpv --set augment=True  train=True stn=False
