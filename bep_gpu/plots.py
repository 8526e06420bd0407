"""Learning curves from a run's metrics.csv (matplotlib is optional: the extra [plot])."""
from __future__ import annotations

import csv
import math

from .errors import UserError

ACCURACY_COLUMNS = (("train_acc", "train"), ("val_acc", "validation"), ("test_acc", "test"))


def require_matplotlib():
    """The pyplot module on a file-only backend; UserError with the install line when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        raise UserError("plotting needs matplotlib: pip install matplotlib (or bep-gpu[plot])") from None
    matplotlib.use("Agg")  # files only: works without a display
    import matplotlib.pyplot as plt

    return plt


def read_metrics(metrics_csv: str) -> list[dict]:
    try:
        with open(metrics_csv, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise UserError(f"cannot read {metrics_csv} ({e.strerror})") from None
    if not rows or "epoch" not in rows[0]:
        raise UserError(f"{metrics_csv} holds no epochs (expected a run's metrics.csv)")
    return rows


def _floats(rows, key):
    out = []
    for r in rows:
        try:
            out.append(float(r.get(key) or "nan"))
        except ValueError:
            out.append(math.nan)
    return out


def best_epoch(rows) -> float | None:
    """The first epoch of highest validation accuracy, or None without a validation split."""
    scored = [(v, -e) for v, e in zip(_floats(rows, "val_acc"), _floats(rows, "epoch")) if not math.isnan(v)]
    return -max(scored)[1] if scored else None


def plot_metrics(metrics_csv: str, png: str, title: str | None = None) -> str:
    """Accuracies (train, validation, test) and the triggered fraction per epoch, written to png, the best
    validation epoch marked (the first, as best.npz holds it); returns png."""
    plt = require_matplotlib()
    rows = read_metrics(metrics_csv)
    epochs = _floats(rows, "epoch")
    fig, (acc_ax, trig_ax) = plt.subplots(2, 1, figsize=(7, 6), sharex=True,
                                         gridspec_kw={"height_ratios": (3, 1)})
    try:
        for key, label in ACCURACY_COLUMNS:
            values = _floats(rows, key)
            if not all(math.isnan(v) for v in values):  # no validation split: no line
                acc_ax.plot(epochs, values, marker=".", label=label)
        best = best_epoch(rows)
        if best is not None:
            acc_ax.axvline(best, color="tab:red", linestyle=":", label=f"best validation (epoch {best:g})")
        acc_ax.set_title(title or metrics_csv)
        acc_ax.set_ylabel("accuracy")
        acc_ax.grid(alpha=0.3)
        acc_ax.legend()
        trig_ax.plot(epochs, _floats(rows, "triggered_frac"), marker=".", color="tab:gray")
        trig_ax.set_ylabel("triggered")
        trig_ax.set_xlabel("epoch")
        trig_ax.grid(alpha=0.3)
        fig.tight_layout()
        try:
            fig.savefig(png, dpi=120)
        except OSError as e:
            raise UserError(f"cannot write {png} ({e.strerror})") from None
    finally:
        plt.close(fig)
    return png
