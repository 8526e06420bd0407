"""What the scripts that fill run folders share: running a grid of runs, and writing the tables made from them."""
from __future__ import annotations

import csv
import io
import os
from concurrent.futures import ThreadPoolExecutor


def run_all(run_one, grid, jobs: int) -> None:
    """run_one(*item) for every item of grid, `jobs` at a time, printing each one's status line as it ends."""
    with ThreadPoolExecutor(jobs) as pool:
        for line in pool.map(lambda item: run_one(*item), grid):
            print(line, flush=True)


def write_texts(texts: dict[str, str]) -> None:
    """Write {path: text}, and print the Markdown ones."""
    for path, text in texts.items():
        with open(path, "w") as f:
            f.write(text)
        if path.endswith(".md"):
            print(text, end="")


def table_texts(rows: list[dict], intro: str, base: str) -> dict[str, str]:
    """{BASE.md: intro, a blank line and the Markdown table of rows; BASE.csv: the same rows as CSV}."""
    head = list(rows[0])
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=head, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    md = f"{intro}\n\n| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n"
    md += "".join("| " + " | ".join(str(r[k]) for k in head) + " |\n" for r in rows)
    return {base + ".md": md, base + ".csv": buf.getvalue()}


def best_test_epoch(run_dir: str) -> float | None:
    """The highest per-epoch test accuracy (%) in the run's metrics.csv, None without one. Chosen on the test set,
    so it is no result of ours: it shows what a paper that reports its best test epoch would have printed."""
    path = os.path.join(run_dir, "metrics.csv")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        tests = [float(r["test_acc"]) for r in csv.DictReader(f) if r.get("test_acc") not in (None, "")]
    return 100 * max(tests) if tests else None
