"""BEP through time for a fully binary recurrent network (docs/ALGORITHM.md section 9), on the backend primitives.

Matrices H_xs (Ks, Kx), H_ss (Ks, Ks), H_sy (Ky, Ks); sizes = [Kx, Ks, Ky]. Time is batched wherever the
recurrence allows: the input products of all T steps are one xnor_matmul over T*B rows, each recurrent step one
fused kernel (z_t += W_ss s_{t-1} and the packed s_t), the readout one kernel with its signs and gate bits, the
gates of all target steps one gate_pack, their masks one select_wrong, and each matrix's update, summed over
steps and samples, one batch_update over the stacked rows (so it is summed in int32 and clipped once). Only the
forward recurrence and the backward target recursion loop over time, and both stay on the device.
Every quantity of a step comes from the pre-update state.
"""
from __future__ import annotations

from .backends.base import Backend
from .distributed import apply_updates
from .bep_mlp import StepRules, reinforcement, visible_weights
from .errors import UserError
from .profiling import nvtx_range

# Reinforcement layer index of each matrix (section 9): 0 = xs, 1 = ss, 2 = sy.
XS, SS, SY = 0, 1, 2


def step_rules(sizes, r: float, nu: float, clip: int, frozen=()) -> StepRules:
    """The MLP's rules with the cell's fan-in Kx + Ks and the readout's Ks: gates[0] = floor(nu (Kx + Ks)),
    gates[1] = floor(nu Ks), trigger margin ceil(r Ky)."""
    kx, ks, ky = sizes
    return StepRules.make([kx + ks, ks, ky], r, nu, clip, frozen=frozen)


def time_major(bk: Backend, x):
    """Packed inputs (B, T, kw) -> (T, B, kw), contiguous, so that each step's rows are adjacent."""
    return bk.xp.ascontiguousarray(x.transpose(1, 0, 2))


def stack_rows(a):
    """(T, B, w) -> (T * B, w): the time steps' rows stacked, time-major (explicit w: B may be 0)."""
    return a.reshape(a.shape[0] * a.shape[1], a.shape[2])


def forward(bk: Backend, weights, sizes, x_t, gate=None, cell_gate=None):
    """For time-major packed inputs x_t (T, B, n_words(Kx)): z (T, B, Ks) int32, the packed states s_0..s_T
    ((T + 1, B, n_words(Ks))), with cell_gate the cell's gate bits |z_t| <= cell_gate of every step (T, B,
    n_words(Ks)), and the readout's (z_y (B, Ky), s_y packed), plus its gate bits |z_y| <= gate when a gate is
    given, all three from one kernel on the CUDA backend."""
    xp = bk.xp
    w_xs, w_ss, w_sy = weights
    kx, ks, _ = sizes
    s0 = bk.pack(xp.ones((x_t.shape[1], ks), dtype=xp.int8))  # s_0 = all +1
    # z_t = W_xs a_t + W_ss s_{t-1}, s_t = sign(z_t): one kernel per step on the CUDA backend.
    cell = bk.sign_recurrence(x_t, w_xs, kx, w_ss, s0, gate=cell_gate)
    return (*cell, bk.xnor_matmul_sign(cell[1][-1], w_sy, ks, gate=gate))


def logits(bk: Backend, weights, sizes, prototypes, x):
    """The int32 readout P s_y (B, classes) for packed inputs x (B, T, n_words(Kx))."""
    _, _, (_, s_y) = forward(bk, weights, sizes, time_major(bk, x))
    return bk.xnor_matmul(s_y, prototypes, sizes[2])


def predict(bk: Backend, weights, sizes, prototypes, x):
    """Class predictions for packed inputs x (B, T, n_words(Kx))."""
    return bk.xp.argmax(logits(bk, weights, sizes, prototypes, x), axis=1)


def unpack01(xp, words, k: int):
    """0/1 uint8 values (..., k) of packed words (..., n_words(k)), with plain array ops of xp."""
    bits = (words[..., None] >> xp.arange(64, dtype=xp.uint64)) & xp.uint64(1)
    return bits.astype(xp.uint8).reshape(*words.shape[:-1], words.shape[-1] * 64)[..., :k]


def shared_selection(bk: Backend, wrong, z_abs, gamma: int, max_abs_z: int):
    """rnn_mask="shared": per sample and group, the unit wrong at the most target steps, then the smallest
    summed |z_t|, then the lowest index; candidates are the units wrong at least once.

    wrong: (h, B, n_words(Ks)) bits; z_abs: (h, B, Ks). One group_select over the composed integer score
    (h - count) * (S + 1) + sum|z|, S = h * max_abs_z bounding the sum, so the count decides first.
    Returns the selection repeated for every step, (h * B, n_words(Ks)).
    """
    xp = bk.xp
    h, _, ks = z_abs.shape
    bound = h * max_abs_z
    if (h + 1) * (bound + 1) > 2**31 - 1:
        raise UserError(f"--rnn-mask shared: {h} target steps of |z| <= {max_abs_z} overflow the int32 mask "
                        "score; lower --horizon or use --rnn-mask step")
    count = unpack01(xp, wrong, ks).sum(axis=0, dtype=xp.int64)
    score = (h - count) * (bound + 1) + z_abs.sum(axis=0, dtype=xp.int64)
    sel = bk.group_select(score.astype(xp.int32), bk.pack(count > 0), gamma)
    return xp.tile(sel, (h, 1))  # time-major rows, like the step masks


def select_updates(bk: Backend, hidden, sizes, prototypes, x, labels, gammas, rules: StepRules, horizon: int,
                   shared_mask: bool):
    """Forward, trigger, targets through time and masks on a mini-batch: the device int64 counts
    [misclassified, triggered] and, for H_xs, H_ss, H_sy, the operands (sel, t, input) of batch_update, the
    recurrent ones stacked over the target steps (time-major rows). Changes nothing.

    x: packed inputs (B, T, n_words(Kx)); gammas: [cell, readout] group sizes; rules from step_rules();
    horizon: target steps counted from the end (0 = all).
    """
    xp = bk.xp
    kx, ks, ky = sizes
    x_t = time_major(bk, x)
    steps = x_t.shape[0]
    h = min(horizon, steps) if horizon else steps
    first = steps - h  # 0-based index of the first step with a target
    with nvtx_range("forward"):
        weights, wts = visible_weights(bk, hidden, transposed=True)
        z, states, cell_gates, (z_y, s_y, g_y) = forward(bk, weights, sizes, x_t, gate=rules.gates[1],
                                                         cell_gate=rules.gates[0])
        logits = bk.xnor_matmul(s_y, prototypes, ky)
    with nvtx_range("trigger"):
        counts, row_mask = bk.trigger(logits, labels, rules.trigger_margin)
    with nvtx_range("targets"):
        t_y = prototypes[labels]
        targets = [bk.gated_transposed_product(t_y, g_y, wts[SY])]  # t_T
        wt_ss = wts[SS]
        gates = cell_gates[first + 1:]
        for i in range(h - 2, -1, -1):  # t_{t-1} from t_t and the gate of z_t, t = T..T-h+2
            targets.append(bk.gated_transposed_product(targets[-1], gates[i], wt_ss))
        targets = xp.stack(targets[::-1])  # (h, B, n_words(Ks)) for steps first+1..T (1-based)
    with nvtx_range("masks"):
        s_t = states[first + 1:]  # (h, B, words): s_t of every target step
        if shared_mask:
            sel = shared_selection(bk, (s_t ^ targets) & row_mask, xp.abs(z[first:]), gammas[0], kx + ks)
        else:  # time-major rows: row t * B + b takes sample b's trigger word
            sel = bk.select_wrong(stack_rows(z[first:]), stack_rows(s_t), stack_rows(targets),
                                  row_mask, gammas[0])
        sel_y = bk.select_wrong(z_y, s_y, t_y, row_mask, gammas[1])
    t_rows = stack_rows(targets)
    # H_xs and H_ss share the selected rows: a_t and s_{t-1} are the two halves of the cell's input.
    return counts, [(sel, t_rows, stack_rows(x_t[first:])),
                    (sel, t_rows, stack_rows(states[first:steps])),
                    (sel_y, t_y, states[-1])]


def train_step(bk: Backend, hidden, sizes, prototypes, x, labels, gammas, rules: StepRules, horizon: int,
               shared_mask: bool, thresholds, seed: int, step: int, comm=None):
    """One BEP-TT step on a mini-batch, in place on hidden = [H_xs, H_ss, H_sy] (arguments as select_updates).
    Returns a device int64 array [misclassified, triggered]. comm: as in bep_mlp.train_step (data-parallel:
    this process's rows of the batch; update sums and counts are summed over processes before the one clip)."""
    return apply_updates(bk, comm, hidden, x.shape[0], rules.clip,
                         lambda: select_updates(bk, hidden, sizes, prototypes, x, labels, gammas, rules, horizon,
                                                shared_mask),
                         reinforcement(thresholds, seed, step), rules.frozen)  # layers XS, SS, SY = list order
