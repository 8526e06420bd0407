"""BEP for multi-layer perceptrons (docs/ALGORITHM.md sections 3-4), written once on the backend primitives.

Layer i (0-based) has hidden weights H_i of shape (K_{i+1}, K_i); sizes = [K_0, K_1, ..., K_L].
Every quantity of a step is computed from the pre-update state, so the update order across layers is free.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .backends.base import Backend
from .distributed import apply_updates
from .profiling import nvtx_range
from .rng import probability_threshold

REINFORCE_STREAM = 1


@dataclass(frozen=True)
class StepRules:
    """Integer thresholds of one run, turned from the float hyper-parameters once on the host."""

    trigger_margin: int  # T_r = ceil(r * K_L)
    gates: tuple[int, ...]  # gate of layer i: |z_i| <= floor(nu * K_i), K_i its fan-in (layer 0's is unused)
    clip: int
    stability: str  # "z" (rank by |z|), "flips" (by the input flips that flip the unit) or "hidden" (by |H . a|)
    frozen: tuple[int, ...] = ()  # matrices (hidden.i) never updated nor reinforced (--freeze)

    @classmethod
    def make(cls, sizes, r: float, nu: float, clip: int, stability: str = "z", frozen=()) -> "StepRules":
        return cls(
            trigger_margin=math.ceil(r * sizes[-1]),
            gates=tuple(math.floor(nu * sizes[i]) for i in range(len(sizes) - 1)),
            clip=int(clip),
            stability=stability,
            frozen=tuple(int(i) for i in frozen),
        )


def reinforcement_thresholds(fan_ins, p_r: float, error_rate: float) -> list[int]:
    """floor(p_l * 2^32) with p_l = min(1, p_r * sqrt(E) * sqrt(2 / (pi * K_{l-1}))), float64, left to right."""
    return [probability_threshold(min(1.0, p_r * math.sqrt(error_rate) * math.sqrt(2 / (math.pi * fan_in))))
            for fan_in in fan_ins]


def flip_rank(z, fan_in: int, stability: str):
    """The values whose |.| ranks a layer's wrong units for the stability rules "z" and "flips" (section 4.4).

    z has the parity of the fan-in. With an even fan-in, sign(0) = +1 puts the +1 unit nearest to flipping at
    z = 0 and the -1 one at z = -2, both one input flip away, so |z| prefers wrong +1 units; "flips" ranks by
    |z + 1| there, which counts the flips alike on both sides (odd fan-ins: |z| already does)."""
    return z + 1 if stability == "flips" and fan_in % 2 == 0 else z


def visible_weights(bk: Backend, hidden, transposed: bool = False):
    """W_i = sign(H_i), packed along the fan-in; with transposed, (those, W_i^T): the W_i^T of the target pass
    (packed along the outputs) made with W_i from H_i, for every matrix but the first (None there: no target is
    propagated below it). hidden: 2-D (K_out, fan-in) arrays."""
    if not transposed:
        return [bk.pack(h) for h in hidden]
    pairs = [(bk.pack(h), None) if i == 0 else bk.pack_both(h) for i, h in enumerate(hidden)]
    return [w for w, _ in pairs], [wt for _, wt in pairs]


def forward(bk: Backend, weights, sizes, x, gates=None):
    """z_i (int32) and packed activations a_0..a_L for packed inputs x (N, n_words(K_0)); with gates (the
    rules' thresholds), also the packed gate bits |z_i| <= gates[i] of every layer but the first (None there),
    made in the same kernels as the activations, for the backward pass."""
    acts, zs, gate_bits = [x], [], []
    for i, w in enumerate(weights):
        if gates is None or i == 0:  # layer 0's gate is never read: no target is propagated below it
            (z, a), g = bk.xnor_matmul_sign(acts[-1], w, sizes[i]), None
        else:
            z, a, g = bk.xnor_matmul_sign(acts[-1], w, sizes[i], gate=gates[i])
        zs.append(z)
        acts.append(a)
        gate_bits.append(g)
    return (zs, acts) if gates is None else (zs, acts, gate_bits)


def logits(bk: Backend, weights, sizes, prototypes, x):
    """The int32 readout P a_L (N, classes) for packed inputs x."""
    zs, acts = forward(bk, weights, sizes, x)
    return bk.xnor_matmul(acts[-1], prototypes, sizes[-1])


def predict(bk: Backend, weights, sizes, prototypes, x):
    return bk.xp.argmax(logits(bk, weights, sizes, prototypes, x), axis=1)


def select_updates(bk: Backend, hidden, sizes, prototypes, x, labels, gammas, rules: StepRules):
    """Steps 1-4 of docs/ALGORITHM.md section 4 on a mini-batch: the device int64 counts [misclassified, triggered]
    and, per layer, the update operands (sel, t, a_in) of batch_update/update_delta. Changes nothing."""
    n_layers = len(hidden)
    with nvtx_range("forward"):
        weights, wts = visible_weights(bk, hidden, transposed=True)
        zs, acts, gate_bits = forward(bk, weights, sizes, x, rules.gates)
        logits = bk.xnor_matmul(acts[-1], prototypes, sizes[-1])
    with nvtx_range("trigger"):
        counts, row_mask = bk.trigger(logits, labels, rules.trigger_margin)
    with nvtx_range("targets"):
        targets = [None] * n_layers
        targets[-1] = prototypes[labels]
        for i in range(n_layers - 1, 0, -1):
            targets[i - 1] = bk.gated_transposed_product(targets[i], gate_bits[i], wts[i])
    updates = []
    with nvtx_range("masks"):
        for i in range(n_layers):
            value = (bk.int_matmul(acts[i], hidden[i]) if rules.stability == "hidden"  # ranked by |value|
                     else flip_rank(zs[i], sizes[i], rules.stability))
            updates.append((bk.select_wrong(value, acts[i + 1], targets[i], row_mask, gammas[i]), targets[i], acts[i]))
    return counts, updates


def train_step(bk: Backend, hidden, sizes, prototypes, x, labels, gammas, rules: StepRules,
               thresholds, seed: int, step: int, comm=None):
    """One BEP step on a mini-batch, in place on `hidden`. Returns a device int64 array [misclassified, triggered].

    prototypes: packed (C, n_words(K_L)); x: packed inputs; labels: int array on the backend.
    comm: a bep_gpu.distributed.Communicator; with more than one process, x and labels are this process's rows
    of the global mini-batch (maybe none), and the update sums and counts are summed over all processes before
    the clip, so each applies the whole batch's update and reinforcement and returns the whole batch's counts.
    """
    return apply_updates(bk, comm, hidden, x.shape[0], rules.clip,
                         lambda: select_updates(bk, hidden, sizes, prototypes, x, labels, gammas, rules),
                         reinforcement(thresholds, seed, step), rules.frozen)


def reinforcement(thresholds, seed: int, step):
    """Section 4.6's reinforce arguments (threshold, seed, stream, step, layer) of matrix i, for apply_updates:
    its reinforcement layer index is its list position."""
    return lambda i: (thresholds[i], seed, REINFORCE_STREAM, step, i)
