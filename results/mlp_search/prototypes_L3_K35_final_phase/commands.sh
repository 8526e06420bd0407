#!/bin/bash
# A probe outside the search grid (2 seeds, validation only): does a final low-rate phase lift L = 3, K = 35?
# Phase 1 is W_b5_bal for 40 of its 50 epochs; phase 2 starts from its model (--init, so a fresh step counter and
# E = 1 in its first epoch) for the last 10 epochs at gamma 35 (the group size W_b5_bal has reached by then), at
# batch 5 (the control), 20 or 50, or batch 5 with p_r 2. Run from the repository root.
set -e
O=results/mlp_search/prototypes_L3_K35_final_phase
B="--dataset prototypes --hidden 35,35,35 --nu 0.4 --gamma0 7 --patience 10 --r 1.0"
B="$B --batch-size 5 --proto-frame balanced"
B="$B --backend numba --threads 1"
for s in 0 1; do
  python -m bep_gpu train mlp $B --epochs 40 --seed $s --out $O/p1_s$s --quiet --overwrite
  two() { name=$1; shift; python -m bep_gpu train mlp --dataset prototypes --init $O/p1_s$s/model.npz --epochs 10 \
    --seed $s --nu 0.4 --r 1.0 --gamma0 35 --patience 0 --backend numba --threads 1 \
    --out $O/${name}_s$s --quiet --overwrite "$@"; }
  two b5 --batch-size 5; two b20 --batch-size 20; two b50 --batch-size 50; two b5_pr2 --batch-size 5 --p-r 2
done
