"""Launchers of the convolution kernels (kernels/conv_*.cu) for CudaBackend: argument checks, output allocation,
launch shape and exact scalar types, as in cuda_backend.py. A mixin, so the conv kernels sit beside the
rest of the backend without growing it; it uses CudaBackend's helpers (_launch, _words, _int_array, _i32, _grid_*)."""
from __future__ import annotations

import numpy as np

from .. import bits as _bits
from .base import _conv_shape


class CudaConvKernels:
    def im2col(self, x, c, kh, kw, stride, pad):
        x = self._words(x)
        n, h, w, ho, wo = _conv_shape("im2col", x, c, kh, kw, stride, pad)
        nwo = _bits.n_words(kh * kw * c)
        out = self.xp.empty((n, ho, wo, nwo), dtype=self.xp.uint64)
        rows = n * ho * wo
        if rows:
            i32 = self._i32
            self._launch("im2col_bits", (self._grid_blocks(rows * nwo * 32),),
                         (x, out, np.int64(rows), i32(h), i32(w), i32(ho), i32(wo), i32(c), i32(kh), i32(kw),
                          i32(stride), i32(pad), i32(x.shape[-1]), i32(nwo)))
        return out

    def col2im_sign(self, s, h, w, c, kh, kw, stride, pad):
        s = self._int_array(s, np.int32, "col2im_sign sums")
        n = s.shape[0]
        ho, wo = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
        if min(h, w, c, kh, kw, stride) <= 0 or pad < 0 or ho <= 0 or wo <= 0 or s.shape != (n, ho, wo, kh * kw * c):
            raise ValueError(f"col2im_sign: sums {s.shape} do not fit a {h}x{w}x{c} map, kernel {kh}x{kw}, "
                             f"stride {stride}, padding {pad}")
        nwc = _bits.n_words(c)
        out = self.xp.empty((n, h, w, nwc), dtype=self.xp.uint64)
        rows = n * h * w
        if rows:
            i32 = self._i32
            self._launch("col2im_sign", (self._grid_blocks(rows * nwc * 32),),
                         (s, out, np.int64(rows), i32(h), i32(w), i32(ho), i32(wo), i32(c), i32(kh), i32(kw),
                          i32(stride), i32(pad), i32(nwc)))
        return out

    def gated_transposed_sum(self, t, g, wt):
        t, g, wt = self._words(t), self._words(g), self._words(wt)
        if t.ndim != 2 or g.shape != t.shape or wt.ndim != 2 or wt.shape[1] != t.shape[1]:
            raise ValueError(f"gated_transposed_sum: t {t.shape}, g {g.shape}, wt {wt.shape} do not match")
        n, j = t.shape[0], wt.shape[0]
        out = self.xp.empty((n, j), dtype=self.xp.int32)
        if n == 0 or j == 0 or t.shape[1] == 0:
            out[...] = 0
            return out
        if self._grid_tiles(n) > self._max_grid_y:
            raise ValueError(f"gated_transposed_sum: {n} rows exceed one launch")
        self._launch("gated_transposed_sum", (self._grid_tiles(j), self._grid_tiles(n)),
                     (t, g, wt, out, self._i32(n), self._i32(j), self._i32(t.shape[1])))
        return out

    def conv_select_wrong(self, z, a, t, row_mask, out_h, out_w, tile, gamma):
        z = self._int_array(z, np.int32, "conv_select_wrong z")
        a, t, row_mask = self._words(a), self._words(t), self._words(row_mask)
        rows, ch = z.shape if z.ndim == 2 else (-1, -1)
        n = row_mask.shape[0]
        nw = _bits.n_words(ch)
        if (gamma <= 0 or ch % gamma or tile < 0 or rows != n * out_h * out_w or row_mask.shape != (n, 1)
                or a.shape != (rows, nw) or t.shape != a.shape):
            raise ValueError(f"conv_select_wrong: z {z.shape}, a {a.shape}, t {t.shape}, row_mask {row_mask.shape} "
                             f"do not fit {n} samples of {out_h}x{out_w} positions and groups of {gamma}")
        out = self.xp.zeros((rows, nw), dtype=self.xp.uint64)  # the kernel ORs selections into it
        qy, qx = (out_h, out_w) if tile == 0 else (min(tile, out_h), min(tile, out_w))
        groups = n * -(-out_h // qy) * -(-out_w // qx) * (ch // gamma)
        if groups:
            i32 = self._i32
            self._launch("conv_select_wrong", (self._grid_blocks(groups * 32),),
                         (z, a, t, row_mask, out, np.int64(n), i32(out_h), i32(out_w), i32(ch), i32(nw), i32(qy),
                          i32(qx), i32(gamma)))
        return out
