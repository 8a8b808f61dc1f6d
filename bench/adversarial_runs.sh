#!/bin/bash
# The runs behind the README's UniAD / adversarial rows (10 rounds, K = 2, 4, 8; the same support draws for every
# method, because the rounds come from the protocol's fixed seed). CPU budget: see bench/adversarial_tables.py.
#   bash bench/adversarial_runs.sh [knn|regad|regad_adv|uniad|uniad_adv|uniad_ft|uniad_adv_ft|seed1 ...]
# Each `fsad run` resumes: rerunning skips finished rounds. Then: python bench/adversarial_tables.py
# The adversarial alignment is a method of its own (regad_adv, uniad_adv: the host plus the callback), run at its host's
# presets. Folders written before it was (method regad/uniad with adversarial=True in run.json) still read in the tables.
set -e
# RegAD and UniAD at their `cpu` presets (fsad options regad / uniad): RegAD 200 registration steps of 8 pairs at lr 1e-3
# (paper: 50 x 113 x 32 pairs at 1e-4), UniAD 300 steps of 8 images (paper: 1000 epochs)
run() {  # run NAME METHOD [SETTINGS...]
  local name=$1 method=$2; shift 2
  fsad run --method $method --dataset magnetic_tile --shots 2 4 8 --rounds 10 --meta dtd10 elpv --preset cpu ${1:+--set "$@"} --out results/lee/$name
  fsad run --method $method --dataset elpv --shots 2 4 8 --rounds 10 --meta dtd10 magnetic_tile --preset cpu ${1:+--set "$@"} --out results/lee/${name}_elpv
}
share() {  # share FROM NAME: NAME starts from FROM's finished meta-training (fine-tuning is not part of training)
  local f
  for f in results/lee/$1/*/meta/*.pt results/lee/$1_elpv/*/meta/*.pt; do
    [ -e "$f" ] || continue
    local to=${f/results\/lee\/$1/results\/lee\/$2}
    [ -e "$to" ] || { mkdir -p "$(dirname "$to")" && cp "$f" "$to"; }
  done
}
for what in "${@:-knn regad regad_adv uniad uniad_adv}"; do for w in $what; do case $w in
  knn)          fsad run --method knn --dataset magnetic_tile --shots 2 4 8 --rounds 10 --out results/lee/knn
                fsad run --method knn --dataset elpv --shots 2 4 8 --rounds 10 --out results/lee/knn_elpv ;;
  regad)        run regad regad ;;
  regad_adv)    run regad_adv regad_adv ;;
  uniad)        run uniad uniad ;;
  uniad_adv)    run uniad_adv uniad_adv ;;
  uniad_ft)     share uniad uniad_ft; run uniad_ft uniad finetune_steps=20 ;;
  uniad_adv_ft) share uniad_adv uniad_adv_ft; run uniad_adv_ft uniad_adv finetune_steps=20 ;;
  seed1)        # a second training seed on magnetic_tile, K = 2 (UniAD without fine-tuning: one round says it all)
                for v in "" _adv; do
                  fsad run --method regad$v --dataset magnetic_tile --shots 2 --rounds 10 --meta dtd10 elpv --preset cpu --set seed=1 --out results/lee/seed1/regad$v
                  fsad run --method uniad$v --dataset magnetic_tile --shots 2 --rounds 1 --meta dtd10 elpv --preset cpu --set seed=1 --out results/lee/seed1/uniad$v
                done ;;
  *) echo "unknown run $w"; exit 2 ;;
esac; done; done
