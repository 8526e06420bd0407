"""load_dataset(name): the built-in datasets, `.npz` files and UCR/UEA `.ts` archives.

`sequence` says what the model needs: True for a recurrent net, which takes (N, T, F); False for an MLP, which
takes (N, F). Sequence datasets (seq-fashion-mnist, ucr:NAME) are flattened to (N, T*F) when sequence=False,
step-major; the others refuse sequence=True.
"""
from __future__ import annotations

import gzip
import importlib.util
import os
import zipfile
import zlib

import numpy as np

from ..errors import UserError
from .dataset import Dataset, index_labels, validate_dataset
from .idx import read_idx
from .ts import read_ts, read_ts_header, ts_to_array

BUILTIN = ("prototypes", "fashion-mnist", "seq-fashion-mnist", "digits")
NAMES_HELP = "prototypes, fashion-mnist, seq-fashion-mnist, digits, npz:PATH or ucr:NAME"

# Random Prototypes (the paper's synthetic task): C classes, each a random +-1 prototype of length K; a sample is
# its class prototype with every bit flipped independently with probability 23/50 = 0.46.
PROTO_CLASSES, PROTO_DIM, PROTO_TRAIN, PROTO_TEST = 10, 1000, 20_000, 3_000
PROTO_FLIP_NUM, PROTO_FLIP_DEN = 23, 50
# Second words of the default_rng seeds, so that data streams never coincide with the trainer's
# default_rng([seed, epoch]) shuffles when data_seed == seed.
_PROTO_STREAM = 0x50524F54  # "PROT"
_DIGITS_STREAM = 0x44494749  # "DIGI"

# Where the Debian package dataset-fashion-mnist puts the files.
FASHION_MNIST_DIRS = ["/usr/share/datasets/fashion-mnist"]
_FMNIST_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
DIGITS_TEST_FRACTION = 0.2
# The UCR sets bep-gpu ships (gzip-compressed .ts), so that `bep-train rnn`'s default needs no other package.
UCR_BUNDLED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ucr")
TS_SUFFIXES = (".ts", ".ts.gz")


def load_dataset(
    name: str,
    *,
    data_dir: str | None = None,
    data_seed: int = 0,
    sequence: bool = False,
    window: int | None = None,
    images: bool = False,
) -> Dataset:
    """Load a dataset by name (see the module docstring); UserError for anything the user can fix.

    window: keep only the last `window` time steps of a sequence dataset (before any flattening).
    images: for a conv net, x as (N, H, W, C) images (fashion-mnist, digits, npz with (N, H, W) or (N, H, W, C)).
    """
    if not isinstance(data_seed, (int, np.integer)) or data_seed < 0:
        raise UserError(f"data seed must be a non-negative integer, not {data_seed!r}")
    if data_dir is not None:
        if name == "prototypes" or name.startswith("npz:"):
            raise UserError(f"dataset {name} reads no data directory; drop --data-dir")
        if not os.path.isdir(data_dir):
            raise UserError(f"--data-dir {data_dir} is not a directory")
    if images:
        return _load_images(name, data_dir, int(data_seed))
    if name.startswith("npz:"):
        ds = _load_npz(name, os.path.expanduser(name[4:]), sequence)
    elif name.startswith("ucr:"):
        ds = _load_ucr(name, name[4:], data_dir)
    elif name == "prototypes":
        ds = _prototypes(name, int(data_seed))
    elif name in ("fashion-mnist", "seq-fashion-mnist"):
        ds = _fashion_mnist(name, data_dir)
    elif name == "digits":
        ds = _digits(name, data_dir, int(data_seed))
    else:
        raise UserError(f"unknown dataset {name!r}; choose one of {NAMES_HELP}")
    if window is not None:
        if not ds.is_sequence:
            raise UserError(f"dataset {name}: a window applies only to sequence data (seq-fashion-mnist, ucr:NAME)")
        if not isinstance(window, (int, np.integer)) or not 1 <= window <= ds.n_steps:
            raise UserError(f"dataset {name}: window must be between 1 and the series length {ds.n_steps}, "
                            f"not {window}")
        ds.x_train, ds.x_test = ds.x_train[:, -window:], ds.x_test[:, -window:]
    if ds.is_sequence and not sequence:
        ds.x_train = ds.x_train.reshape(len(ds.x_train), -1)
        ds.x_test = ds.x_test.reshape(len(ds.x_test), -1)
    elif sequence and not ds.is_sequence:
        hint = "; use seq-fashion-mnist" if name == "fashion-mnist" else ""
        raise UserError(f"dataset {name} is not a sequence dataset{hint} (sequence datasets: seq-fashion-mnist, "
                        "ucr:NAME, npz:PATH with x of shape (N, T, F))")
    validate_dataset(ds)
    return ds


def list_datasets(data_dir: str | None = None) -> list[str]:
    """The built-in names (whether or not their files are installed), then ucr:NAME for each classification
    .ts pair found in data_dir or the installed sktime package."""
    return list(BUILTIN) + [f"ucr:{n}" for n in sorted(_ucr_found(data_dir))]


def prototype_rows(data_seed: int) -> tuple[np.ndarray, np.random.Generator]:
    """Random Prototypes' class rows for a data seed, and the generator that then draws its train and test sets."""
    rng = np.random.default_rng([data_seed, _PROTO_STREAM])
    return rng.integers(0, 2, size=(PROTO_CLASSES, PROTO_DIM), dtype=np.int8) * np.int8(2) - np.int8(1), rng


def draw_prototype_samples(protos: np.ndarray, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n samples of the generative model: a uniform class, its row with every bit flipped with p = 0.46."""
    y = rng.integers(0, len(protos), size=n).astype(np.int64)  # uniform, not balanced
    flip = rng.integers(0, PROTO_FLIP_DEN, size=(n, protos.shape[1]), dtype=np.uint8) < PROTO_FLIP_NUM
    x = protos[y]
    np.negative(x, out=x, where=flip)
    return x, y


def _prototypes(name: str, data_seed: int) -> Dataset:
    protos, rng = prototype_rows(data_seed)
    x_train, y_train = draw_prototype_samples(protos, rng, PROTO_TRAIN)
    x_test, y_test = draw_prototype_samples(protos, rng, PROTO_TEST)
    return Dataset(name, x_train, y_train, x_test, y_test, PROTO_CLASSES, image=False)


def _fmnist_file(directory: str, key: str) -> str | None:
    base = _FMNIST_FILES[key]
    # Debian ships "train-images-idx3-ubyte.gz"; other mirrors use "train-images.idx3-ubyte" or no .gz.
    for stem in (base, base.replace("-idx", ".idx")):
        for suffix in (".gz", ""):
            path = os.path.join(directory, stem + suffix)
            if os.path.isfile(path):
                return path
    return None


def _fashion_mnist(name: str, data_dir: str | None) -> Dataset:
    # a given --data-dir is the only place looked at: never a silent fallback to the system copy
    candidates = [data_dir, os.path.join(data_dir, "fashion-mnist")] if data_dir else FASHION_MNIST_DIRS
    for directory in candidates:
        paths = {k: _fmnist_file(directory, k) for k in _FMNIST_FILES}
        if any(paths.values()):
            break
    else:
        files = ", ".join(f + "[.gz]" for f in _FMNIST_FILES.values())
        if data_dir:
            raise UserError(f"Fashion-MNIST not found in --data-dir {data_dir}: it holds no IDX files ({files}), "
                            "nor does its fashion-mnist/ sub-folder")
        raise UserError(
            f"Fashion-MNIST not found in {', '.join(candidates)}; run `apt-get install dataset-fashion-mnist` "
            "or pass --data-dir DIR holding the four IDX files"
        )
    missing = [_FMNIST_FILES[k] for k, p in paths.items() if p is None]
    if missing:
        raise UserError(f"Fashion-MNIST in {directory} lacks {', '.join(missing)} (plain or .gz)")
    arrays = {k: read_idx(p) for k, p in paths.items()}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or x.shape[1:] != (28, 28) or x.dtype != np.uint8:
            raise UserError(f"{paths[f'x_{split}']}: expected uint8 images of 28x28, got {x.dtype} {x.shape}")
        if y.ndim != 1 or len(y) != len(x) or y.max(initial=0) > 9:
            raise UserError(f"{paths[f'y_{split}']}: expected {len(x)} labels 0..9, got {y.dtype} {y.shape}")
    x_train, x_test = arrays["x_train"], arrays["x_test"]
    if name == "fashion-mnist":
        x_train, x_test = x_train.reshape(len(x_train), -1), x_test.reshape(len(x_test), -1)
    return Dataset(name, x_train, arrays["y_train"].astype(np.int64), x_test, arrays["y_test"].astype(np.int64),
                   10, image=True, image_shape=(28, 28, 1) if name == "fashion-mnist" else None)


def _package_dir(package: str) -> str | None:
    """The directory of an installed top-level package, found without importing (so running) it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def _digits(name: str, data_dir: str | None, data_seed: int) -> Dataset:
    """scikit-learn's 8x8 digits (1797 images, values 0..16), read from DATA_DIR/digits.csv.gz or else the file
    scikit-learn's package ships; split stratified per class, DIGITS_TEST_FRACTION (rounded) of each class to the test set, by data_seed."""
    sklearn_dir = _package_dir("sklearn")
    if data_dir:
        candidates = [os.path.join(data_dir, "digits.csv.gz")]
    else:
        candidates = [os.path.join(sklearn_dir, "datasets", "data", "digits.csv.gz")] if sklearn_dir else []
    path = next((p for p in candidates if os.path.isfile(p)), None)
    if path is None and data_dir:
        raise UserError(f"--data-dir {data_dir} holds no digits.csv.gz (the table scikit-learn ships)")
    if path is None:
        raise UserError("digits needs the file scikit-learn ships: run `pip install scikit-learn` "
                        "(`pip install --no-deps scikit-learn` is enough)")
    try:
        with gzip.open(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.float64, ndmin=2)
    except (OSError, EOFError, zlib.error, ValueError) as e:
        raise UserError(f"{path}: unreadable digits table ({e})") from None
    if table.shape[1] != 65:
        raise UserError(f"{path}: expected 64 pixels and a label per row, got {table.shape[1]} columns")
    x, y = table[:, :64].astype(np.uint8), table[:, 64].astype(np.int64)
    rng = np.random.default_rng([data_seed, _DIGITS_STREAM])
    test = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        test[members[: int(round(DIGITS_TEST_FRACTION * len(members)))]] = True
    return Dataset(name, x[~test], y[~test], x[test], y[test], int(y.max()) + 1, image=True, image_shape=(8, 8, 1))


# Built-in image datasets and their (H, W); their loaders give flat pixels (or rows as steps).
IMAGE_SHAPES = {"fashion-mnist": (28, 28), "seq-fashion-mnist": (28, 28), "digits": (8, 8)}


def _load_images(name: str, data_dir: str | None, data_seed: int) -> Dataset:
    """The dataset with x as (N, H, W, C) images (one channel for the built-in ones)."""
    if name.startswith("npz:"):
        ds = _load_npz(name, os.path.expanduser(name[4:]), False, images=True)
    elif name in IMAGE_SHAPES:
        ds = load_dataset(name, data_dir=data_dir, data_seed=data_seed)
    else:
        raise UserError(f"dataset {name} holds no images; a conv net takes fashion-mnist, digits or npz:PATH with "
                        "x of (N, H, W) or (N, H, W, C)")
    for split in ("train", "test"):
        x = getattr(ds, f"x_{split}")
        hw = IMAGE_SHAPES[name] if name in IMAGE_SHAPES else x.shape[1:3]
        shape = (len(x),) + hw + (x.shape[3] if x.ndim == 4 else 1,)
        setattr(ds, f"x_{split}", x.reshape(shape))
    ds.image = True  # the encoders fit one threshold set over all pixels
    validate_dataset(ds)
    return ds


def _load_npz(name: str, path: str, sequence: bool, images: bool = False) -> Dataset:
    """An .npz with x_train, y_train, x_test, y_test; x (N, F), or (N, T, F) with sequence=True, or with
    images=True (N, H, W) or (N, H, W, C)."""
    if not path:
        raise UserError("npz: needs a path, e.g. npz:data/mine.npz")
    if not os.path.isfile(path):
        raise UserError(f"npz file {path} does not exist")
    bad = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)
    try:
        archive = np.load(path, allow_pickle=False)
    except bad as e:
        raise UserError(f"{path} is not a valid .npz file ({type(e).__name__}: {e})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise UserError(f"{path} holds a single array, not an .npz archive with x_train, y_train, x_test, y_test")
    with archive:
        missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in archive.files]
        if missing:
            raise UserError(f"{path} lacks the arrays {', '.join(missing)} (has: {', '.join(archive.files) or 'none'})")
        try:  # members are read lazily, so a truncated archive fails here
            arrays = {k: archive[k] for k in ("x_train", "y_train", "x_test", "y_test")}
        except bad as e:
            raise UserError(f"{path} is truncated or corrupt ({type(e).__name__}: {e})") from None
    want = 3 if sequence else 2
    for split in ("train", "test"):
        x = arrays[f"x_{split}"]
        if x.dtype.kind not in "biuf":
            raise UserError(f"{path}: x_{split} must be numeric, not {x.dtype}")
        if images and x.ndim not in (3, 4):
            raise UserError(f"{path}: x_{split} has shape {x.shape}; expected (N, H, W) or (N, H, W, C) for conv")
        if x.ndim != want and not images:
            kind = "(N, T, F) for a sequence model" if sequence else "(N, F) for a non-sequence model"
            raise UserError(f"{path}: x_{split} has shape {x.shape}; expected {kind}")
        if x.dtype.kind == "b":
            arrays[f"x_{split}"] = x.astype(np.int8)
    classes, y_train, others = index_labels(path, arrays["y_train"], {"y_test": arrays["y_test"]})
    return Dataset(name, arrays["x_train"], y_train, arrays["x_test"], others["y_test"], len(classes),
                   image=False, classes=classes)


def _ucr_dirs(name: str | None, data_dir: str | None) -> list[str]:
    """Directories searched for NAME_TRAIN.ts / NAME_TEST.ts (or .ts.gz), in order (name None: the roots to
    list): a given data_dir alone, else the copies bep-gpu ships, then the installed sktime's."""
    if data_dir:  # only there: never a silent fallback to another copy
        return [data_dir] + ([os.path.join(data_dir, name)] if name else [])
    dirs = [UCR_BUNDLED]
    sktime_dir = _package_dir("sktime")
    if sktime_dir:
        root = os.path.join(sktime_dir, "datasets", "data")
        dirs.append(os.path.join(root, name) if name else root)
    return dirs


def _is_classification(path: str) -> bool:
    words = read_ts_header(path).get("classlabel", [])
    return bool(words) and words[0].lower() == "true"


def _ucr_found(data_dir: str | None) -> set[str]:
    """NAMEs of classification .ts pairs in data_dir, its sub-directories and sktime's data directory."""
    found = set()
    for root in _ucr_dirs(None, data_dir):
        if not os.path.isdir(root):
            continue
        subdirs = [os.path.join(root, e) for e in sorted(os.listdir(root))]
        for directory in [root] + [d for d in subdirs if os.path.isdir(d)]:
            for f in os.listdir(directory):
                for suffix in TS_SUFFIXES:
                    stem = f[: -len("_TRAIN" + suffix)]
                    test = os.path.join(directory, stem + "_TEST" + suffix)
                    if f.endswith("_TRAIN" + suffix) and os.path.isfile(test) \
                            and _is_classification(os.path.join(directory, f)):
                        found.add(stem)
    return found


def _load_ucr(name: str, ucr_name: str, data_dir: str | None) -> Dataset:
    """A UCR/UEA .ts pair as (N, T, D) float64; variable-length series front-padded with their first value to
    the longest length over train and test, missing values forward- then back-filled; labels numbered in the
    order of the training file's @classLabel line."""
    if not ucr_name or os.sep in ucr_name or "/" in ucr_name:
        raise UserError(f"ucr: needs a dataset name such as ucr:GunPoint, not {name!r}")
    pairs = [(os.path.join(d, f"{ucr_name}_TRAIN{s}"), os.path.join(d, f"{ucr_name}_TEST{s}"))
             for d in _ucr_dirs(ucr_name, data_dir) for s in TS_SUFFIXES]
    for train, test in pairs:
        if os.path.isfile(train) and os.path.isfile(test):
            break
    else:
        found = ", ".join(sorted(_ucr_found(data_dir))) or "none"
        if data_dir:
            raise UserError(f"--data-dir {data_dir} holds no {ucr_name}_TRAIN.ts/_TEST.ts pair (there or in "
                            f"{ucr_name}/); found there: {found}")
        raise UserError(f"no {ucr_name}_TRAIN.ts/_TEST.ts pair found (no --data-dir given; `pip install "
                        f"--no-deps sktime` ships a few); found: {found}")
    ts_train, ts_test = read_ts(train), read_ts(test)
    if ts_test.n_dims != ts_train.n_dims:
        raise UserError(f"{test}: {ts_test.n_dims} dimensions but the training file has {ts_train.n_dims}")
    index = {label: i for i, label in enumerate(ts_train.class_labels)}
    unknown = sorted(set(ts_test.labels) - set(index))
    if unknown:
        raise UserError(f"{test}: class labels {', '.join(unknown)} are not in the training file's @classLabel")
    length = max(ts_train.max_length, ts_test.max_length)
    return Dataset(
        name,
        ts_to_array(ts_train, length, train),
        np.array([index[label] for label in ts_train.labels], dtype=np.int64),
        ts_to_array(ts_test, length, test),
        np.array([index[label] for label in ts_test.labels], dtype=np.int64),
        len(ts_train.class_labels),
        image=False,
        classes=np.array(ts_train.class_labels),
    )
