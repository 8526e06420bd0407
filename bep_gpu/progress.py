"""Progress reporting: a tqdm bar per epoch on a terminal, plain one-line logs otherwise (or with --quiet)."""
from __future__ import annotations

import shutil
import sys

# No rate field: the postfix's samples/s says it once the epoch ends.
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}{postfix}]"
MIN_BAR = 10  # columns the bar itself keeps; the postfix drops its last entries rather than overflow the line


class EpochProgress:
    """One epoch's bar. The step loop only calls advance() (host-side counting, never a device sync); the
    epoch's statistics, known once the epoch ends, go to finish()."""

    def __init__(self, total_samples: int, epoch: int, epochs: int, quiet: bool):
        self.bar = None
        self.quiet = quiet
        if not quiet and sys.stderr.isatty():
            try:
                from tqdm import tqdm
            except ImportError:  # tqdm is optional (extra [progress])
                tqdm = None
            if tqdm is not None:
                # leave=True: each finished epoch stays on screen with its statistics as the postfix.
                self.columns = shutil.get_terminal_size().columns
                self.bar = tqdm(total=total_samples, desc=f"epoch {epoch + 1}/{epochs}", unit="sample",
                                unit_scale=True, leave=True, ncols=self.columns, bar_format=BAR_FORMAT,
                                file=sys.stderr)

    def advance(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def finish(self, line: str, stats: dict) -> None:
        """End the epoch: the bar shows stats (name -> formatted value) and stays; without a bar, log line."""
        if self.bar is not None:
            stats = dict(stats)
            while len(stats) > 1 and len(self._line(stats)) > self.columns:
                stats.popitem()  # the line must fit the terminal: a wrapped bar repeats itself on every refresh
            self.bar.set_postfix(stats, refresh=False)
            self.bar.close()
        else:
            log(line, self.quiet)

    def _line(self, stats: dict) -> str:
        """The finished bar's text with these stats, its bar at MIN_BAR columns."""
        postfix = ", " + ", ".join(f"{k}={v}" for k, v in stats.items())
        return BAR_FORMAT.format(desc=self.bar.desc, percentage=100, bar="#" * MIN_BAR, elapsed="00:00",
                                 remaining="00:00", postfix=postfix)

    def close(self) -> None:
        """Drop the bar without statistics (the epoch was interrupted)."""
        if self.bar is not None:
            self.bar.close()


def log(msg: str, quiet: bool = False) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)
