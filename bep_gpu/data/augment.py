"""--augment: random translations and left-right flips of the training images, drawn anew every epoch.

They act on the encoded +-1 pixels (N, H, W, D), D = channels x encoder bits, on the backend's arrays, so the data
stays where it is trained and every backend sees the same integers. A pixel moved in from outside the image takes
the encoding of the value 0 (the background of Fashion-MNIST and digits). The draws depend on the seed and the
epoch only, so a resumed run sees the images the uninterrupted one would have.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UserError

AUGMENT_HELP = ("shift:S (move each training image by up to S pixels in y and in x), flip (mirror half of them "
                "left-right), or both, e.g. shift:1,flip")
# Third word of the draws' seed, so that they never coincide with the shuffle's (seed, epoch) stream.
_STREAM = 0x61756720


@dataclass(frozen=True)
class Augment:
    shift: int = 0
    flip: bool = False

    @classmethod
    def parse(cls, spec: str) -> "Augment":
        """'' -> none; 'shift:S', 'flip' or both, comma-separated; UserError for anything else."""
        shift, flip = 0, False
        for item in filter(None, (s.strip() for s in str(spec or "").split(","))):
            kind, sep, arg = item.partition(":")
            if kind == "flip" and not sep and not flip:
                flip = True
            elif kind == "shift" and sep and arg.isdigit() and int(arg) > 0 and not shift:
                shift = int(arg)
            else:
                raise UserError(f"--augment {spec!r}: {item!r} is not understood; use {AUGMENT_HELP}")
        return cls(shift, flip)

    def __bool__(self) -> bool:
        return bool(self.shift or self.flip)

    def draws(self, n: int, seed: int, epoch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per image: the shift (dy, dx), each in -S..S, and whether it is mirrored."""
        rng = np.random.default_rng([int(seed), int(epoch), _STREAM])
        dy = rng.integers(-self.shift, self.shift + 1, size=n)
        dx = rng.integers(-self.shift, self.shift + 1, size=n)
        flip = rng.random(n) < 0.5 if self.flip else np.zeros(n, dtype=bool)
        return dy, dx, flip

    def apply(self, xp, x, background, seed: int, epoch: int):
        """out[i, y, c] = m[i, y - dy, c - dx], m = x or x mirrored left-right, the background outside the image.

        x: (N, H, W, D) int8 on the backend; background: (D,) int8, the encoding of a pixel of value 0."""
        n, h, w, d = x.shape
        s = self.shift
        dy, dx, flip = self.draws(n, seed, epoch)
        padded = xp.empty((n, h + 2 * s, w + 2 * s, d), dtype=x.dtype)
        padded[...] = background
        padded[:, s:s + h, s:s + w] = x
        rows = s + np.arange(h) - dy[:, None]
        src = np.arange(w) - dx[:, None]  # the column of the mirrored (or not) image; then of the padded one
        cols = s + np.where(flip[:, None], w - 1 - src, src)
        return padded[xp.arange(n)[:, None, None], xp.asarray(rows)[:, :, None], xp.asarray(cols)[:, None, :]]
