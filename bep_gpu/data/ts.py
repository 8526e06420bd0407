"""Reader for the sktime / UEA-UCR `.ts` time-series classification format.

A file is comment lines ('#', or '%' as in ARFF), '@key value' header lines up to '@data', then one case per
line: the dimensions separated by ':', the values of one dimension by ',', the class label last.
'?' (or NaN) marks a missing value.
"""
from __future__ import annotations

import gzip
import os
from dataclasses import dataclass

import numpy as np

from ..errors import UserError


@dataclass
class TsFile:
    """A parsed .ts file: series[i][d] is dimension d of case i (1-D float64, may hold NaN for missing)."""

    class_labels: list[str]
    series: list[list[np.ndarray]]
    labels: list[str]

    @property
    def n_dims(self) -> int:
        return len(self.series[0])

    @property
    def max_length(self) -> int:
        return max(len(s) for case in self.series for s in case)


def _header_bool(path: str, key: str, words: list[str]) -> bool:
    if len(words) < 1 or words[0].lower() not in ("true", "false"):
        raise UserError(f"{path}: @{key} must be followed by true or false")
    return words[0].lower() == "true"


def _open_text(path: str):
    """A .ts file for reading, gzip-compressed when its name ends in .gz (the copies bep-gpu ships)."""
    opener = gzip.open if path.endswith(".gz") else open
    return opener(path, "rt", encoding="utf-8", errors="replace")


def read_ts_header(path: str) -> dict[str, list[str]]:
    """The header lines of a .ts file up to @data, keys lower-cased (the format's keys are case-insensitive)."""
    header: dict[str, list[str]] = {}
    with _open_text(path) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("@"):
                continue
            key, *words = line[1:].split() or [""]
            if key.lower() == "data":
                break
            header[key.lower()] = words
    return header


def _parse_values(path: str, lineno: int, text: str) -> np.ndarray:
    tokens = [t.strip() for t in text.split(",")]
    try:
        return np.array(["nan" if t == "?" else t for t in tokens], dtype=np.float64)
    except ValueError:
        bad = next((t for t in tokens if t != "?" and not _is_float(t)), text[:40])
        raise UserError(f"{path}:{lineno}: {bad!r} is not a number (nor '?' for missing)") from None


def _is_float(t: str) -> bool:
    try:
        float(t)
        return True
    except ValueError:
        return False


def read_ts(path: str | os.PathLike) -> TsFile:
    """Parse a classification .ts file; UserError (with file:line) for anything it cannot use."""
    path = os.fspath(path)
    class_labels: list[str] | None = None
    n_dims: int | None = None
    series: list[list[np.ndarray]] = []
    labels: list[str] = []
    in_data = False
    try:
        f = _open_text(path)
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None
    with f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line[0] in "#%":  # '%' too: ARFF-style comments occur (sktime's UnitTest)
                continue
            if not in_data:
                if not line.startswith("@"):
                    raise UserError(f"{path}:{lineno}: expected an @ header line before @data")
                key, *words = line[1:].split() or [""]
                key = key.lower()
                if key == "data":
                    if class_labels is None:
                        raise UserError(f"{path}: no '@classLabel true ...' header; only classification is supported")
                    in_data = True
                elif key == "classlabel":
                    if not _header_bool(path, key, words):
                        raise UserError(f"{path}: @classLabel false: the file has no class labels")
                    class_labels = words[1:]
                    if len(class_labels) < 2:
                        raise UserError(f"{path}: @classLabel true lists fewer than 2 classes")
                elif key == "targetlabel" and _header_bool(path, key, words):
                    raise UserError(f"{path}: a regression dataset (@targetLabel true); "
                                    "only classification is supported")
                elif key == "timestamps" and _header_bool(path, key, words):
                    raise UserError(f"{path}: @timeStamps true is not supported; give the values without time stamps")
                elif key == "dimensions":
                    n_dims = int(words[0]) if words and words[0].isdigit() else None
                continue
            parts = line.split(":")
            if len(parts) < 2:
                raise UserError(f"{path}:{lineno}: expected values then ':' then the class label")
            label = parts[-1].strip()
            if label not in class_labels:
                raise UserError(f"{path}:{lineno}: class label {label!r} is not among "
                                f"@classLabel {' '.join(class_labels)}")
            case = [_parse_values(path, lineno, p) for p in parts[:-1]]
            if n_dims is None:
                n_dims = len(case)
            if len(case) != n_dims:
                raise UserError(f"{path}:{lineno}: {len(case)} dimensions, expected {n_dims}")
            series.append(case)
            labels.append(label)
    if not in_data:
        raise UserError(f"{path}: no @data line; not a .ts file")
    if not series:
        raise UserError(f"{path}: no cases after @data")
    return TsFile(class_labels=class_labels, series=series, labels=labels)


def _fill_missing(s: np.ndarray) -> np.ndarray:
    """Forward-fill NaN, then back-fill the leading ones."""
    missing = np.isnan(s)
    if not missing.any():
        return s
    idx = np.where(missing, 0, np.arange(len(s)))
    np.maximum.accumulate(idx, out=idx)
    filled = s[idx]
    first = np.flatnonzero(~missing)[0]
    filled[:first] = s[first]
    return filled


def ts_to_array(ts: TsFile, length: int, path: str) -> np.ndarray:
    """(N, length, D) float64: missing values filled, each series front-padded with its first value to length.

    Front padding keeps every series' last steps aligned at the end, where a recurrent net reads last.
    """
    out = np.empty((len(ts.series), length, ts.n_dims), dtype=np.float64)
    for i, case in enumerate(ts.series):
        for d, s in enumerate(case):
            if np.isnan(s).all():
                raise UserError(f"{path}: case {i + 1}, dimension {d + 1} has no values (all missing)")
            s = _fill_missing(s)
            out[i, length - len(s):, d] = s
            out[i, : length - len(s), d] = s[0]
    return out
