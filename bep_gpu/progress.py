"""Progress reporting: a tqdm bar per epoch on a terminal, plain one-line logs otherwise (or with --quiet)."""
from __future__ import annotations

import sys


class EpochProgress:
    def __init__(self, total_samples: int, epoch: int, epochs: int, quiet: bool):
        self.bar = None
        if not quiet and sys.stderr.isatty():
            try:
                from tqdm import tqdm
            except ImportError:  # tqdm is optional (extra [progress])
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total_samples, desc=f"epoch {epoch + 1}/{epochs}", unit="sample",
                                leave=False, dynamic_ncols=True)

    def advance(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def log(msg: str, quiet: bool = False) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)
