"""What every command shares: user errors as one line on stderr and a non-zero exit, never a traceback."""
from __future__ import annotations

import sys

from ..errors import UserError


def run_cli(fn, argv=None) -> int:
    prog = getattr(fn, "prog", None) or "bep"
    try:
        fn(argv)
        return 0
    except UserError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; finished epochs are in the run's checkpoint.npz (continue with --resume DIR)",
              file=sys.stderr)
        return 130
    except MemoryError:
        print(f"{prog}: error: out of memory; lower --batch-size or --eval-batch", file=sys.stderr)
        return 2


def parse_widths(text: str) -> list[int]:
    try:
        widths = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"--hidden takes comma-separated integers like 525,525, got {text!r}") from None
    if not widths:
        raise UserError("--hidden needs at least one width")
    return widths
