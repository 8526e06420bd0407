#!/usr/bin/env bash
# The QAT baseline runs behind QAT_RESULTS.md, one process at a time on one thread (shared CPU).
# Usage (from the repository root): bash results/qat/run_all.sh RUNS_DIR PART...
# PART: prototypes, prototypes-lr1e-2, raw-logits, ucr, ucr-more, fmnist
set -euo pipefail
runs=${1:?RUNS_DIR}; shift
# Skips a run whose results.json exists, so an interrupted batch can be restarted.
qat() {
  local out=${*: -1}
  [[ -f $out/results.json ]] && return 0
  python -m bep_gpu.peers.qat_torch "$@" --threads 1 --quiet
}
for part in "$@"; do
  case $part in
    prototypes)
      for bn in bn no-bn; do for k in 35 75 135 255 525; do
        qat mlp --dataset prototypes --encode sign --hidden $k,$k --epochs 50 --batch-size 100 --lr 1e-3 \
          --$bn --seed 0 --out "$runs/prototypes_L2_K${k}_$bn"
      done; done ;;
    prototypes-lr1e-2)  # only with BN: without BN lr 1e-3 already beats the paper's figures
      for k in 35 75 135 255 525; do
        qat mlp --dataset prototypes --encode sign --hidden $k,$k --epochs 50 --batch-size 100 --lr 1e-2 \
          --bn --seed 0 --out "$runs/prototypes_L2_K${k}_bn_lr1e-2"
      done ;;
    raw-logits)  # diagnostic: cross-entropy on the unscaled logits P a_L
      for bn in no-bn bn; do for k in 35 525; do
        qat mlp --dataset prototypes --encode sign --hidden $k,$k --epochs 50 --batch-size 100 --lr 1e-3 \
          --$bn --logit-scale 1 --seed 0 --out "$runs/prototypes_L2_K${k}_${bn}_scale1"
      done; done ;;
    ucr)  # as the paper: Ks = Ky = 1035, inputs expanded to 1035 bits, batch N/10 (60 series after the val split)
      for bn in bn no-bn; do
        qat rnn --dataset ucr:ItalyPowerDemand --encode thermometer:8 --expand 1035 --hidden 1035 --epochs 50 \
          --batch-size 6 --lr 1e-3 --$bn --seed 0 --out "$runs/italypower_rnn_K1035_expand_$bn"
      done ;;
    ucr-more)  # single runs swing by 10 points on 1029 test series: more seeds, and lr 1e-2 / 1e-4 with BN
      for seed in 1 2; do for bn in bn no-bn; do
        qat rnn --dataset ucr:ItalyPowerDemand --encode thermometer:8 --expand 1035 --hidden 1035 --epochs 50 \
          --batch-size 6 --lr 1e-3 --$bn --seed $seed --out "$runs/italypower_rnn_K1035_expand_${bn}_s$seed"
      done; done
      for lr in 1e-2 1e-4; do
        qat rnn --dataset ucr:ItalyPowerDemand --encode thermometer:8 --expand 1035 --hidden 1035 --epochs 50 \
          --batch-size 6 --lr $lr --bn --seed 0 --out "$runs/italypower_rnn_K1035_expand_bn_lr$lr"
      done ;;
    fmnist)  # 20 epochs, not 50: the shared CPU was loaded (load average ~60 on 2 cores)
      for bn in bn no-bn; do
        qat mlp --dataset fashion-mnist --encode median --hidden 525,525 --epochs 20 --batch-size 100 --lr 1e-3 \
          --$bn --seed 0 --out "$runs/fmnist_L2_K525_$bn"
      done ;;
    *) echo "unknown part $part" >&2; exit 2 ;;
  esac
done
