"""BEP-Conv exploration runs: run one into results/conv/NAME, or tabulate every run folder there.

  python scripts/conv_runs.py run NAME -- --dataset fashion-mnist --max-train 3000 --conv 16:3:2:1 --hidden 256
  python scripts/conv_runs.py table

`run` calls `bep-train conv` with the flags after `--` (plus --out results/conv/NAME --quiet) and records the
command in command.txt. A run of an experimental rule (a patch in this folder) also holds variant.txt, one
line naming it. `table` reads each folder's config.json, metrics.csv and results.json (bep-train's own
files) into results/conv/CONV_RESULTS.md, which RESULTS.md quotes (scripts/results_tables.py).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = os.path.join(ROOT, "results", "conv")


def run(name: str, flags: list[str]) -> int:
    out = os.path.join(RUNS, name)
    cmd = [sys.executable, "-m", "bep_gpu", "train", "conv", *flags, "--out", out, "--quiet"]
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "command.txt"), "w") as f:
        f.write("bep-train conv " + " ".join(shlex.quote(v) for v in flags) + "\n")
    return subprocess.run(cmd).returncode


def rows() -> list[dict]:
    out = []
    for name in sorted(os.listdir(RUNS)):
        d = os.path.join(RUNS, name)
        if not os.path.isfile(os.path.join(d, "config.json")) or not os.path.isfile(os.path.join(d, "results.json")):
            continue  # unfinished, or a QAT run
        cfg = json.load(open(os.path.join(d, "config.json")))
        res = json.load(open(os.path.join(d, "results.json")))
        metrics = list(csv.DictReader(open(os.path.join(d, "metrics.csv"))))
        gamma = cfg["gamma0"] if isinstance(cfg["gamma0"], int) else ",".join(map(str, cfg["gamma0"]))
        out.append({
            "run": name, "conv": ",".join(":".join(map(str, c)) for c in cfg["conv"]),
            "dense": ",".join(map(str, cfg["hidden"])), "gamma0": gamma, "tile": cfg["conv_tile"], "nu": cfg["nu"],
            "r": cfg["r"], "p_r": cfg["p_r"], "init std": cfg["init_std"], "patience": cfg["patience"], "encode": cfg["encode"],
            "augment": cfg.get("augment") or "none", "frozen": ",".join(map(str, cfg.get("freeze") or [])) or "none",
            "batch": cfg["batch_size"], "train": cfg["n_train"], "rule": variant(d),
            "rank": cfg.get("stability", "z"),
            "epochs": res["epochs"], "test %": f"{100 * res['test_accuracy']:.2f}",
            "best val %": "" if res["best_val_accuracy"] is None else f"{100 * res['best_val_accuracy']:.2f}",
            "test at best val %": percent(res.get("test_accuracy_at_best_val")),
            "s/epoch": f"{median_time([float(m['epoch_time_s']) for m in metrics]):.1f}",
        })
    return out


def qat_rows() -> list[dict]:
    """The QAT peer's runs (bep_gpu.peers.qat_conv results.json) in the same folder."""
    out = []
    for name in sorted(os.listdir(RUNS)):
        path = os.path.join(RUNS, name, "results.json")
        if os.path.isfile(path) and not os.path.isfile(os.path.join(RUNS, name, "config.json")):
            res = json.load(open(path))
            epochs = res["epochs"]
            out.append({"run": name, "conv": ",".join(":".join(map(str, c)) for c in res["conv"]),
                        "dense": ",".join(map(str, res["hidden"])), "BN": "yes" if res["bn"] else "no",
                        "pool": ",".join(map(str, res.get("pool") or [])) or "none",
                        "net": ("float, ReLU" if res.get("float") else "binary")
                        + frozen_filters(res.get("freeze_conv"), len(res["conv"])),
                        "encode": res["encode"], "train": res["n_train"], "epochs": len(epochs),
                        "test %": f"{100 * res['test_accuracy']:.2f}",
                        "s/epoch": f"{median_time([e['epoch_time_s'] for e in epochs]):.1f}"})
    return out


def frozen_filters(layers, n_conv: int) -> str:
    """The peer's --freeze-conv: every conv layer (True in the first runs, which had no layer list), some or none."""
    if layers is True or (layers and len(layers) == n_conv):
        return ", frozen filters"
    return f", frozen filters {','.join(map(str, layers))}" if layers else ""


def variant(run_dir: str) -> str:
    """The run's rule: 'spec', or the one-line description in its variant.txt (a run of a patched, experimental
    rule that bep-train does not offer; the patch sits beside the runs)."""
    path = os.path.join(run_dir, "variant.txt")
    if not os.path.isfile(path):
        return "spec"
    with open(path) as f:
        return f.readline().strip().replace("|", "/")  # one table cell


def percent(value) -> str:
    return "" if value is None else f"{100 * value:.2f}"


def median_time(seconds: list[float]) -> float:
    """The median epoch time: the first epoch's one-off compile (numba) and load spikes move it less than a mean."""
    s = sorted(seconds)
    return 0.0 if not s else (s[len(s) // 2] + s[(len(s) - 1) // 2]) / 2


def markdown(data: list[dict]) -> str:
    head = list(data[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(r[k]) for k in head) + " |" for r in data]
    return "\n".join(lines) + "\n"


def table() -> str:
    data, qat = rows(), qat_rows()
    text = markdown(data) if data else "(no finished BEP runs)\n"
    head = "QAT peer (latent fp32 weights, STE, Adam), same architecture (`pool`, `float`, frozen filters: its probes)"
    return text + (f"\n{head}:\n\n" + markdown(qat) if qat else "")


def texts() -> dict[str, str]:
    """{path: text} of CONV_RESULTS.md (RESULTS.md quotes it through scripts/results_tables.py)."""
    return {os.path.join(RUNS, "CONV_RESULTS.md"): "# BEP-Conv runs (generated by `python scripts/conv_runs.py "
            "table`; commands in each command.txt)\n\n" + table()}


def write_tables() -> None:
    for path, text in texts().items():
        with open(path, "w") as f:
            f.write(text)
    print(table(), end="")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    flags = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=["run", "table"])
    ap.add_argument("name", nargs="?")
    args = ap.parse_args(argv)
    if args.action == "run":
        if not args.name:
            ap.error("run needs a NAME")
        return run(args.name, flags)
    write_tables()
    return 0


if __name__ == "__main__":
    sys.exit(main())
