#!/usr/bin/env python3
"""Regenerate the tables of BENCHMARKS.md (and any other Markdown file) from the run folders they quote.

A generated table sits between two marker lines naming its source (a bep-bench run folder's bench.md, or a
summary that scripts/results_tables.py made from run folders); the source is quoted from its first table on:

    <!-- table: results/bench_cpu_numba/bench.md -->
    ... (replaced) ...
    <!-- end table -->

Run `python scripts/render_tables.py [FILE ...]` (default: BENCHMARKS.md) after a new run; `--check` exits 1 when
a file is not what its sources give (for CI or a pre-commit hook), without writing.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"(<!-- table: (?P<src>[^ ]+) -->\n)(?P<body>.*?)(<!-- end table -->)", re.S)


def render(text: str, root: Path = ROOT, sources: dict | None = None) -> str:
    """`text` with every marked table replaced by its source; `sources` ({path: text}) overrides files."""
    sources = {Path(k): v for k, v in (sources or {}).items()}

    def table(m):
        src = root / m.group("src")
        if src in sources:
            lines = sources[src].splitlines()
        elif src.is_file():
            lines = src.read_text().splitlines()
        else:
            raise SystemExit(f"render_tables: {m.group('src')} not found (a table's source run folder is missing)")
        first = next((i for i, line in enumerate(lines) if line.startswith("|")), len(lines))
        body = "\n".join(lines[first:]).rstrip()  # from the first table on, without the source's header
        return f"{m.group(1)}{body}\n{m.group(4)}"

    return BLOCK.sub(table, text)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="*", default=[str(ROOT / "BENCHMARKS.md")])
    p.add_argument("--check", action="store_true", help="only report files that are out of date (exit 1)")
    args = p.parse_args(argv)
    stale = []
    for name in args.files:
        path = Path(name)
        old = path.read_text()
        new = render(old)
        if new != old:
            stale.append(name)
            if not args.check:
                path.write_text(new)
    if args.check and stale:
        print(f"render_tables: out of date: {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
