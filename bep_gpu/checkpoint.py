"""Checkpoint files (docs/CLI.md, "Checkpoint"): .npz written atomically, read back with one-line errors for bad files."""
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


def checkpoint_arrays(kind: str, config: dict, prototypes, hidden: dict, extra: dict | None = None) -> dict:
    """The named arrays of a checkpoint. hidden: name suffix -> int16 array ('0', '1', ... or 'xs', 'ss', 'sy');
    extra: more named arrays."""
    arrays = {
        "format": np.array(FORMAT),
        "version": np.array(VERSION),
        "kind": np.array(kind),
        "config": np.array(json.dumps(config, sort_keys=True)),
        "prototypes": np.asarray(prototypes, dtype=np.int8),
    }
    for name, h in hidden.items():
        arrays[f"hidden.{name}"] = np.array(h, dtype=np.int16)  # a copy: the trainer goes on updating h
    arrays.update(extra or {})
    return arrays


def write_checkpoint(path: str, arrays: dict) -> None:
    atomic_write(path, lambda f: np.savez(f, **arrays))


def save_checkpoint(path: str, kind: str, config: dict, prototypes, hidden: dict, extra: dict | None = None) -> None:
    write_checkpoint(path, checkpoint_arrays(kind, config, prototypes, hidden, extra))


def load_checkpoint(path: str, kind: str | None = None) -> dict:
    """All arrays of a checkpoint as a dict (config parsed to a dict), validated; UserError if unusable."""
    if not os.path.isfile(path):
        raise UserError(f"checkpoint {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise UserError(f"checkpoint {path} is not a readable .npz file ({e}); it may be truncated") from None
    return check_checkpoint(data, path, kind)


def check_checkpoint(data: dict, path: str, kind: str | None = None) -> dict:
    """data (a checkpoint's arrays) validated as a whole, its config parsed to a dict: every layer present,
    shapes chained from the encoder's output to the prototypes, config, classes and kind consistent."""
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
    if not isinstance(data.get("config", {}), dict):
        try:
            data["config"] = json.loads(str(data["config"]))
        except json.JSONDecodeError:
            raise UserError(f"checkpoint {path} has a corrupt 'config' entry") from None
    data.setdefault("config", {})
    if not isinstance(data["config"], dict):
        raise UserError(f"checkpoint {path}: 'config' must be a JSON object")
    sizes = _check_shapes(path, found, data)
    _check_consistency(path, found, data, sizes)
    return data


def mlp_hidden(data: dict) -> list:
    """hidden.0, hidden.1, ... in order."""
    out, i = [], 0
    while f"hidden.{i}" in data:
        out.append(data[f"hidden.{i}"])
        i += 1
    return out


def _check_layer_names(path: str, kind: str, data: dict) -> None:
    """Exactly the hidden.* arrays of the kind: a gap or a stray array is a damaged file, not a smaller model."""
    names = {k for k in data if k.startswith("hidden.")}
    numbered = [int(k[7:]) for k in names if k[7:].isdigit()]
    expected = set(RNN_KEYS) if kind == "rnn" else {f"hidden.{i}" for i in range(max(numbered, default=-1) + 1)}
    if kind in ("mlp", "conv") and not expected:
        raise UserError(f"checkpoint {path} has no hidden.0 array")
    missing, stray = sorted(expected - names), sorted(names - expected)
    if missing:
        raise UserError(f"checkpoint {path} lacks {', '.join(missing)}")
    if stray:
        raise UserError(f"checkpoint {path} ({kind}) holds unexpected arrays {', '.join(stray)}")


def _check_shapes(path: str, kind: str, data: dict) -> list[int]:
    """The layer sizes the arrays give (MLP: K_0..K_L; RNN: Kx, Ks, Ky); UserError unless they chain."""
    p = data["prototypes"]
    if p.ndim != 2 or p.shape[0] < 2 or not np.isin(p, (-1, 1)).all():
        raise UserError(f"checkpoint {path}: prototypes must be a +-1 matrix with at least 2 rows")
    _check_layer_names(path, kind, data)
    if kind == "conv":
        sizes = _check_conv_shapes(path, mlp_hidden(data))
    elif kind == "mlp":
        hidden = mlp_hidden(data)
        chain = [hidden[0].shape[1] if hidden[0].ndim == 2 else -1]
        for i, h in enumerate(hidden):
            if h.ndim != 2 or h.shape[1] != chain[-1]:
                raise UserError(f"checkpoint {path}: hidden.{i} has shape {h.shape}, expected (*, {chain[-1]})")
            chain.append(h.shape[0])
        sizes = [int(k) for k in chain]
    else:
        xs, ss, sy = (data[k] for k in RNN_KEYS)
        ks = ss.shape[0] if ss.ndim == 2 else -1
        if xs.ndim != 2 or ss.shape != (ks, ks) or xs.shape[0] != ks or sy.ndim != 2 or sy.shape[1] != ks:
            raise UserError(f"checkpoint {path}: hidden.xs/ss/sy shapes {xs.shape}, {ss.shape}, {sy.shape} do not chain")
        sizes = [int(xs.shape[1]), int(ks), int(sy.shape[0])]
    for k, v in data.items():
        if k.startswith("hidden.") and v.dtype != np.int16:
            raise UserError(f"checkpoint {path}: {k} must be int16, found {v.dtype}")
    if p.shape[1] != sizes[-1]:
        raise UserError(f"checkpoint {path}: prototypes have {p.shape[1]} columns, the last layer has {sizes[-1]} units")
    return sizes


def _check_conv_shapes(path: str, hidden: list) -> list[int]:
    """Conv arrays (C_out, k, k, C_in) chaining channels, then dense (K_out, K_in) chaining widths (the first dense
    input count depends on the image size, checked when the model is built); returns the sizes [C_in, C_out.., K..]."""
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
    return [int(hidden[0].shape[-1])] + [int(h.shape[0]) for h in hidden]


def _encoder_width(data: dict) -> int | None:
    """Bits per sample (per step for an RNN) the stored encoder gives, or None when it does not fix them."""
    q = data.get("encoder.thresholds")
    width = int(q.shape[0] * q.shape[1]) if q is not None and q.ndim == 2 else None
    e = data.get("encoder.expand")
    if e is not None:
        if e.ndim != 2 or (width is not None and e.shape[1] != width):
            raise UserError(f"encoder.expand has shape {e.shape}, but the encoder gives {width} bits")
        width = int(e.shape[0])
    return width


def _check_consistency(path: str, kind: str, data: dict, sizes: list[int]) -> None:
    config, n_classes = data["config"], int(data["prototypes"].shape[0])
    if config.get("kind", kind) != kind:
        raise UserError(f"checkpoint {path}: kind {kind!r} but its config says {config['kind']!r}")
    if "sizes" in config and [int(k) for k in config["sizes"]] != sizes:
        raise UserError(f"checkpoint {path}: its config records layer sizes {config['sizes']}, the arrays give "
                        f"{sizes}; a layer is missing or was replaced")
    if config.get("n_classes", n_classes) != n_classes:
        raise UserError(f"checkpoint {path}: its config records {config['n_classes']} classes, the prototypes "
                        f"have {n_classes} rows")
    classes = data.get("classes")
    if classes is not None and (classes.ndim != 1 or len(classes) != n_classes or classes.dtype.kind not in "iuUS"):
        raise UserError(f"checkpoint {path}: 'classes' must list one integer or string label per prototype row "
                        f"({n_classes}), found {classes.dtype} of shape {classes.shape}")
    try:
        width = _encoder_width(data)
    except UserError as e:
        raise UserError(f"checkpoint {path}: {e}") from None
    if width is not None and width != sizes[0]:
        raise UserError(f"checkpoint {path}: the stored encoder gives {width} inputs, the first layer takes "
                        f"{sizes[0]}")
