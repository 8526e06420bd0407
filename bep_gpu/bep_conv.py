"""BEP for binary convolutional networks (docs/CONV.md), written once on the backend primitives.

Conv layers, then dense layers after flattening in (y, x, c) order, then the fixed prototype readout. Activations
are NHWC bit maps packed along the channels, (N, H, W, n_words(C)); a conv layer's forward is one xnor_matmul_sign
over its packed im2col rows, so its output rows (n, y, x) are already the next map. hidden[l] is int16
(C_out, k, k, C_in) for a conv layer and (K_out, K_in) for a dense one; its 2-D view (C_out, k * k * C_in) is the
matrix of the equivalent dense layer, so the update is batch_update over the im2col rows and reinforcement runs on
the flat (o, i, j, c) index. Every quantity of a step comes from the pre-update state.
"""
from __future__ import annotations

from dataclasses import dataclass

from .backends.base import Backend
from . import bep_mlp
from .bep_mlp import StepRules, flip_rank, reinforcement
from .bits import n_words
from .distributed import apply_updates
from .profiling import nvtx_range


@dataclass(frozen=True)
class ConvGeometry:
    """One conv layer: C_out filters of k x k, stride, padding, on an h_in x w_in x c_in map; pool 2 (else 1)
    replaces its output map by the majority of each 2 x 2 window before the next layer reads it."""

    c_in: int
    c_out: int
    k: int
    stride: int
    pad: int
    h_in: int
    w_in: int
    pool: int = 1

    @property
    def h_out(self) -> int:
        return (self.h_in + 2 * self.pad - self.k) // self.stride + 1

    @property
    def w_out(self) -> int:
        return (self.w_in + 2 * self.pad - self.k) // self.stride + 1

    @property
    def h_map(self) -> int:
        """Height of the map the next layer reads: the output, pooled (a last odd row is dropped)."""
        return self.h_out // self.pool

    @property
    def w_map(self) -> int:
        return self.w_out // self.pool

    @property
    def fan_in(self) -> int:
        return self.k * self.k * self.c_in


def geometries(image_shape, specs) -> list[ConvGeometry]:
    """The conv layers for an input map (H, W, C) and specs [(C_out, k, stride, pad[, pool]), ...]; ValueError
    when a kernel or a pooling window does not fit its map."""
    h, w, c = (int(v) for v in image_shape)
    out = []
    for i, spec in enumerate(specs):
        c_out, k, s, p = spec[:4]
        g = ConvGeometry(c, int(c_out), int(k), int(s), int(p), h, w, int(spec[4]) if len(spec) > 4 else 1)
        if g.h_out <= 0 or g.w_out <= 0:
            raise ValueError(f"conv layer {i}: a {k}x{k} kernel with padding {p} does not fit its {h}x{w} input")
        if g.pool not in (1, 2):
            raise ValueError(f"conv layer {i}: pooling {g.pool} is not 1 (none) or 2 (2 x 2 majority)")
        if g.h_map <= 0 or g.w_map <= 0:
            raise ValueError(f"conv layer {i}: 2x2 pooling does not fit its {g.h_out}x{g.w_out} output")
        out.append(g)
        h, w, c = g.h_map, g.w_map, g.c_out
    return out


def flat_size(geoms) -> int:
    """Inputs of the first dense layer: H' W' C of the last conv map (pooled)."""
    g = geoms[-1]
    return g.h_map * g.w_map * g.c_out


def step_rules(geoms, dense_sizes, r: float, nu: float, clip: int, frozen=(), stability: str = "z") -> StepRules:
    """Gates floor(nu * fan-in) of every trainable layer in forward order, trigger margin ceil(r * K_L)."""
    return StepRules.make(fan_ins(geoms, dense_sizes) + [dense_sizes[-1]], r, nu, clip, stability, frozen)


def fan_ins(geoms, dense_sizes) -> list[int]:
    """k k C_in of each conv layer, then the dense layers' K_in, in forward order."""
    return [g.fan_in for g in geoms] + [flat_size(geoms)] + list(dense_sizes[:-1])


def matrices(hidden):
    """2-D views (K_out, fan-in) of the hidden weights: a conv layer's (C_out, k, k, C_in) as (C_out, k k C_in)."""
    return [h.reshape(h.shape[0], -1) for h in hidden]


def visible_weights(bk: Backend, hidden, transposed: bool = False):
    """bep_mlp.visible_weights of the 2-D matrices."""
    return bep_mlp.visible_weights(bk, matrices(hidden), transposed)


def flatten(bk: Backend, a, g: ConvGeometry):
    """An NHWC map (N, H', W', n_words(C)) as dense inputs (N, n_words(H' W' C)) in (y, x, c) order: im2col with one
    window covering the map."""
    return bk.im2col(a, g.c_out, g.h_map, g.w_map, 1, 0).reshape(a.shape[0], n_words(flat_size([g])))


def pool_majority(a, g: ConvGeometry):
    """2 x 2 pooling of a packed output map (N, H', W', words): the majority sign of each window, a tie going to
    its top-left sign, so +1 and -1 stay as frequent as they were (a max-pool, the OR, makes 15 of 16 windows of
    random signs +1). Bitwise on the words, so any backend's arrays; a last odd row or column is dropped."""
    h, w = 2 * g.h_map, 2 * g.w_map
    a0, a1, a2, a3 = a[:, 0:h:2, 0:w:2], a[:, 0:h:2, 1:w:2], a[:, 1:h:2, 0:w:2], a[:, 1:h:2, 1:w:2]
    return (a0 & (a1 | a2 | a3)) | (~a0 & a1 & a2 & a3)


def unpool_targets(bk: Backend, t_map, out_map, g: ConvGeometry):
    """Targets of a pooled layer's outputs (N, H', W', words) from those of its pooled map: where a window's
    pooled sign meets its target, every output of the window keeps its own sign (no error passes, as a max-pool
    passes no gradient to its losers); where it misses, every output of the window gets the target and the mask
    picks among them. Rows and columns that no window covers keep their own signs."""
    xp = bk.xp

    def up(m):
        return xp.repeat(xp.repeat(m, 2, axis=1), 2, axis=2)

    t_up = up(t_map)
    miss = up(pool_majority(out_map, g)) ^ t_up
    h, w = t_up.shape[1], t_up.shape[2]
    full = out_map.copy()
    full[:, :h, :w] = (out_map[:, :h, :w] & ~miss) | (t_up & miss)
    return full


def forward(bk: Backend, weights, geoms, dense_sizes, x, gates=None):
    """For packed maps x (N, H, W, n_words(C)): per trainable layer z (int32 rows x units), its packed output
    and, with gates, its gate bits (None for layer 0); plus the conv layers' im2col rows (the update's inputs)
    and the dense layers' packed inputs. Conv rows are (n, y, x); dense rows are samples. At least one conv and
    one dense layer."""
    n = x.shape[0]
    zs, outs, gate_bits, inputs = [], [], [], []

    def layer(rows, l: int, k: int):
        """Layer l on its packed input rows of k bits; keeps its z, output, gate bits and input rows."""
        res = bk.xnor_matmul_sign(rows, weights[l], k, gate=None if gates is None or l == 0 else gates[l])
        zs.append(res[0])
        outs.append(res[1])
        gate_bits.append(res[2] if len(res) == 3 else None)
        inputs.append(rows)
        return res[1]

    a = x
    for l, g in enumerate(geoms):
        cols = bk.im2col(a, g.c_in, g.k, g.k, g.stride, g.pad).reshape(-1, n_words(g.fan_in))
        a = layer(cols, l, g.fan_in).reshape(n, g.h_out, g.w_out, n_words(g.c_out))
        if g.pool > 1:
            a = pool_majority(a, g)
    sizes = [flat_size(geoms)] + list(dense_sizes)
    act = flatten(bk, a, geoms[-1])
    for i in range(len(dense_sizes)):
        act = layer(act, len(geoms) + i, sizes[i])
    return zs, outs, gate_bits, inputs


def logits(bk: Backend, weights, geoms, dense_sizes, prototypes, x):
    """The int32 readout (N, classes) for packed maps x."""
    _, outs, _, _ = forward(bk, weights, geoms, dense_sizes, x)
    return bk.xnor_matmul(outs[-1], prototypes, dense_sizes[-1])


def predict(bk: Backend, weights, geoms, dense_sizes, prototypes, x):
    return bk.xp.argmax(logits(bk, weights, geoms, dense_sizes, prototypes, x), axis=1)


def select_updates(bk: Backend, hidden, geoms, dense_sizes, prototypes, x, labels, gammas, tile: int,
                   rules: StepRules):
    """Steps 1-4 on a mini-batch of packed maps x: the device int64 counts [misclassified, triggered] and, per
    trainable layer, the operands (sel, t, input rows) of batch_update on its 2-D matrix. Changes nothing."""
    n, n_conv, n_layers = x.shape[0], len(geoms), len(hidden)
    fans = fan_ins(geoms, dense_sizes)
    with nvtx_range("forward"):
        weights, wts = visible_weights(bk, hidden, transposed=True)
        zs, outs, gate_bits, inputs = forward(bk, weights, geoms, dense_sizes, x, rules.gates)
        logits = bk.xnor_matmul(outs[-1], prototypes, dense_sizes[-1])
    with nvtx_range("trigger"):
        counts, row_mask = bk.trigger(logits, labels, rules.trigger_margin)
    with nvtx_range("targets"):
        targets = [None] * n_layers
        targets[-1] = prototypes[labels]
        for l in range(n_layers - 1, 0, -1):
            fan_in, wt = hidden[l].size // hidden[l].shape[0], wts[l]
            if l > n_conv:  # dense below dense
                targets[l - 1] = bk.gated_transposed_product(targets[l], gate_bits[l], wt)
                continue
            sums = bk.gated_transposed_sum(targets[l], gate_bits[l], wt)
            if l == n_conv:  # the flattened map's targets, read back in (y, x, c) order
                g = geoms[-1]
                t_map = bk.col2im_sign(sums.reshape(n, 1, 1, fan_in), g.h_map, g.w_map, g.c_out, g.h_map, g.w_map,
                                       1, 0)
            else:  # every output reading an input position adds its sum there, then one sign
                g = geoms[l]
                t_map = bk.col2im_sign(sums.reshape(n, g.h_out, g.w_out, fan_in), g.h_in, g.w_in, g.c_in, g.k, g.k,
                                       g.stride, g.pad)
            below = geoms[l - 1]
            if below.pool > 1:  # the targets of the pooled map, back to the layer's own outputs
                out_map = outs[l - 1].reshape(n, below.h_out, below.w_out, n_words(below.c_out))
                t_map = unpool_targets(bk, t_map, out_map, below)
            targets[l - 1] = t_map.reshape(-1, t_map.shape[-1])
    updates = []
    with nvtx_range("masks"):
        for l in range(n_layers):
            value = flip_rank(zs[l], fans[l], rules.stability)  # ranked by |value|
            if l < n_conv:
                g = geoms[l]
                sel = bk.conv_select_wrong(value, outs[l], targets[l], row_mask, g.h_out, g.w_out, tile, gammas[l])
            else:
                sel = bk.select_wrong(value, outs[l], targets[l], row_mask, gammas[l])
            updates.append((sel, targets[l], inputs[l]))
    return counts, updates


def train_step(bk: Backend, hidden, geoms, dense_sizes, prototypes, x, labels, gammas, tile: int, rules: StepRules,
               thresholds, seed: int, step: int, comm=None):
    """One BEP step in place on `hidden`; returns the device int64 counts [misclassified, triggered].
    comm: as in bep_mlp.train_step (data-parallel: this process's samples; sums over processes before the clip)."""
    # Reinforced on the 2-D views: their flat index is the layer's flat (o, i, j, c) index.
    return apply_updates(bk, comm, matrices(hidden), x.shape[0], rules.clip,
                         lambda: select_updates(bk, hidden, geoms, dense_sizes, prototypes, x, labels, gammas, tile,
                                                rules),
                         reinforcement(thresholds, seed, step), rules.frozen)
