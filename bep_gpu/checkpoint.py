"""Checkpoint files (CONTRACT.md): .npz written atomically, read back with one-line errors for bad files."""
from __future__ import annotations

import json
import os
import tempfile
import zipfile

import numpy as np

from .errors import UserError

FORMAT = "bep-gpu"
VERSION = 1
KINDS = ("mlp", "rnn", "conv")
RNN_KEYS = ("hidden.xs", "hidden.ss", "hidden.sy")


TEMP_PREFIX = ".tmp-"


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once, at import: os.umask can only be read by setting it, which would race with threads creating files.
_UMASK = _read_umask()


def atomic_write(path: str, write) -> None:
    """Call write(file) on a temporary file beside path, then rename it over path: never a partial file."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=os.path.splitext(path)[1], dir=directory)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror}; choose a writable --out directory") from None
    try:
        # mkstemp makes the file 0600; give it the mode open() would (0666 less the umask).
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def remove_stale_temps(directory: str) -> None:
    """Delete temporary files a killed writer left in directory (a kill skips atomic_write's cleanup)."""
    for name in os.listdir(directory):
        if name.startswith(TEMP_PREFIX):
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass  # gone already, or not ours to remove: harmless either way


def save_checkpoint(path: str, kind: str, config: dict, prototypes, hidden: dict, extra: dict | None = None) -> None:
    """hidden: name suffix -> int16 array ('0', '1', ... or 'xs', 'ss', 'sy'); extra: more named arrays."""
    arrays = {
        "format": np.array(FORMAT),
        "version": np.array(VERSION),
        "kind": np.array(kind),
        "config": np.array(json.dumps(config, sort_keys=True)),
        "prototypes": np.asarray(prototypes, dtype=np.int8),
    }
    for name, h in hidden.items():
        arrays[f"hidden.{name}"] = np.asarray(h, dtype=np.int16)
    arrays.update(extra or {})
    atomic_write(path, lambda f: np.savez(f, **arrays))


def load_checkpoint(path: str, kind: str | None = None) -> dict:
    """All arrays of a checkpoint as a dict (config parsed to a dict), validated; UserError if unusable."""
    if not os.path.isfile(path):
        raise UserError(f"checkpoint {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise UserError(f"checkpoint {path} is not a readable .npz file ({e}); it may be truncated") from None
    for key in ("format", "version", "kind", "prototypes"):
        if key not in data:
            raise UserError(f"checkpoint {path} has no '{key}' entry: not a bep-gpu checkpoint")
    if str(data["format"]) != FORMAT:
        raise UserError(f"checkpoint {path} has format {str(data['format'])!r}, expected {FORMAT!r}")
    if int(data["version"]) != VERSION:
        raise UserError(f"checkpoint {path} is version {int(data['version'])}; this bep-gpu reads version {VERSION}")
    found = str(data["kind"])
    if found not in KINDS:
        raise UserError(f"checkpoint {path} has unknown kind {found!r}")
    if kind is not None and found != kind:
        raise UserError(f"checkpoint {path} holds an {found} model, but an {kind} model is needed")
    try:
        data["config"] = json.loads(str(data.get("config", "{}")))
    except json.JSONDecodeError:
        raise UserError(f"checkpoint {path} has a corrupt 'config' entry") from None
    _check_shapes(path, found, data)
    return data


def mlp_hidden(data: dict) -> list:
    """hidden.0, hidden.1, ... in order."""
    out, i = [], 0
    while f"hidden.{i}" in data:
        out.append(data[f"hidden.{i}"])
        i += 1
    return out


def _check_shapes(path: str, kind: str, data: dict) -> None:
    p = data["prototypes"]
    if p.ndim != 2 or p.shape[0] < 2 or not np.isin(p, (-1, 1)).all():
        raise UserError(f"checkpoint {path}: prototypes must be a +-1 matrix with at least 2 rows")
    if kind == "conv":
        last = _check_conv_shapes(path, mlp_hidden(data))
    elif kind == "mlp":
        hidden = mlp_hidden(data)
        if not hidden:
            raise UserError(f"checkpoint {path} has no hidden.0 array")
        chain = [hidden[0].shape[1] if hidden[0].ndim == 2 else -1]
        for i, h in enumerate(hidden):
            if h.ndim != 2 or h.shape[1] != chain[-1]:
                raise UserError(f"checkpoint {path}: hidden.{i} has shape {h.shape}, expected (*, {chain[-1]})")
            chain.append(h.shape[0])
        last = chain[-1]
    else:
        missing = [k for k in RNN_KEYS if k not in data]
        if missing:
            raise UserError(f"checkpoint {path} lacks {', '.join(missing)}")
        xs, ss, sy = (data[k] for k in RNN_KEYS)
        ks = ss.shape[0] if ss.ndim == 2 else -1
        if xs.ndim != 2 or ss.shape != (ks, ks) or xs.shape[0] != ks or sy.ndim != 2 or sy.shape[1] != ks:
            raise UserError(f"checkpoint {path}: hidden.xs/ss/sy shapes {xs.shape}, {ss.shape}, {sy.shape} do not chain")
        last = sy.shape[0]
    for k, v in data.items():
        if k.startswith("hidden.") and v.dtype != np.int16:
            raise UserError(f"checkpoint {path}: {k} must be int16, found {v.dtype}")
    if p.shape[1] != last:
        raise UserError(f"checkpoint {path}: prototypes have {p.shape[1]} columns, the last layer has {last} units")


def _check_conv_shapes(path: str, hidden: list) -> int:
    """Conv arrays (C_out, k, k, C_in) chaining channels, then dense (K_out, K_in) chaining widths (the first dense
    input count depends on the image size, checked when the model is built); returns the last width."""
    n_conv = next((i for i, h in enumerate(hidden) if h.ndim != 4), len(hidden))
    if n_conv == 0 or n_conv == len(hidden):
        raise UserError(f"checkpoint {path}: a conv model needs conv arrays hidden.0.. (C_out, k, k, C_in) and then "
                        "at least one dense array (K_out, K_in)")
    for i, h in enumerate(hidden):
        want = hidden[i - 1].shape[0] if 0 < i else h.shape[-1]
        conv_ok = i < n_conv and h.shape[1] == h.shape[2] and h.shape[3] == want
        if not (conv_ok or i >= n_conv and h.ndim == 2 and (i == n_conv or h.shape[1] == want)):
            raise UserError(f"checkpoint {path}: hidden.{i} has shape {h.shape}, which does not chain "
                            f"(conv (C_out, k, k, {want}) first, then dense (K_out, K_in))")
    return int(hidden[-1].shape[0])
