"""What every command shares: user errors as one line on stderr and a non-zero exit, never a traceback."""
from __future__ import annotations

import argparse
import os
import sys

from ..errors import UserError


class StrictParser(argparse.ArgumentParser):
    def error(self, message):  # one line and exit 2, like every other user error
        raise UserError(message)


def add_version(parser: argparse.ArgumentParser) -> None:
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")


def run_cli(fn, argv=None) -> int:
    prog = getattr(fn, "prog", None) or "bep"
    try:
        fn(argv)
        return 0
    except UserError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        # a command may say what survives the interruption as the exception's message
        print(f"{prog}: interrupted" + (f"; {e}" if str(e) else ""), file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into a reader that stopped early (| head): not an error
        # Python flushes stdout again at exit; point it at /dev/null so that flush cannot fail too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except MemoryError:
        print(f"{prog}: error: out of memory; lower --batch-size or --eval-batch", file=sys.stderr)
        return 2


def parse_indices(text: str, flag: str, what: str = "layer indices like 0,1") -> list[int]:
    """'0,2' -> [0, 2]; '' -> []; UserError for anything else."""
    try:
        return [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{flag} takes comma-separated {what}, got {text!r}") from None


def parse_widths(text: str) -> list[int]:
    try:
        widths = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"--hidden takes comma-separated integers like 525,525, got {text!r}") from None
    if not widths:
        raise UserError("--hidden needs at least one width")
    return widths
