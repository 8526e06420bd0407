"""Data layer: loaders, file parsers and encoders. Fixtures are written to tmp_path; the tests on the real
Fashion-MNIST, scikit-learn and sktime files skip when those are not installed."""
import gzip
import os
import struct

import numpy as np
import pytest

from bep_gpu.data import (Dataset, Encoder, list_datasets, load_dataset, make_encoder, read_idx, read_ts,
                          validate_dataset)
from bep_gpu.data import sources
from bep_gpu.errors import UserError


def user_error(fn, *args, match=None, **kwargs) -> str:
    """Call fn expecting a UserError with a one-line message (optionally matching a regex); return it."""
    with pytest.raises(UserError, match=match) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert msg and "\n" not in msg
    return msg


# ---------------------------------------------------------------- Random Prototypes


def test_prototypes_shapes_and_types():
    ds = load_dataset("prototypes")
    assert ds.x_train.shape == (20_000, 1000) and ds.x_test.shape == (3_000, 1000)
    assert ds.x_train.dtype == np.int8 and ds.y_train.dtype == np.int64
    assert set(np.unique(ds.x_train)) == {-1, 1}
    assert ds.n_classes == 10 and not ds.image and not ds.is_sequence and ds.n_steps is None
    assert ds.n_features == 1000
    assert set(np.unique(ds.y_train)) == set(range(10)) and set(np.unique(ds.y_test)) == set(range(10))


def test_prototypes_deterministic_by_data_seed():
    a, b, c = load_dataset("prototypes"), load_dataset("prototypes"), load_dataset("prototypes", data_seed=1)
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.x_train, c.x_train)


def test_prototypes_flip_rate_and_shared_prototypes():
    ds = load_dataset("prototypes", data_seed=3)
    for c in range(10):
        # The majority vote over a class's samples recovers its prototype (flip rate < 0.5).
        proto = np.where(ds.x_train[ds.y_train == c].sum(axis=0) >= 0, 1, -1)
        for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
            rate = (x[y == c] != proto).mean()
            assert abs(rate - 0.46) < 0.01
    # Class frequencies: uniform draws, so each near 1/10.
    assert np.all(np.abs(np.bincount(ds.y_train) / 20_000 - 0.1) < 0.01)


def test_bad_data_seed():
    user_error(load_dataset, "prototypes", data_seed=-1, match="non-negative")


# ---------------------------------------------------------------- IDX / Fashion-MNIST


def idx_bytes(arr: np.ndarray, type_byte: int = 0x08) -> bytes:
    head = bytes([0, 0, type_byte, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return head + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_fmnist(directory, n_train=12, n_test=5, gz=True, dotted=False):
    rng = np.random.default_rng(0)
    data = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(n_train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(n_test, dtype=np.uint8) % 10,
    }
    os.makedirs(directory, exist_ok=True)
    for name, arr in data.items():
        name = name.replace("-idx", ".idx") if dotted else name
        raw = idx_bytes(arr)
        with (gzip.open if gz else open)(os.path.join(directory, name + (".gz" if gz else "")), "wb") as f:
            f.write(raw)
    return data


@pytest.mark.parametrize("type_byte,dtype", [(0x08, np.uint8), (0x09, np.int8), (0x0B, np.int16), (0x0C, np.int32),
                                             (0x0D, np.float32), (0x0E, np.float64)])
def test_idx_round_trip(tmp_path, type_byte, dtype):
    arr = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype) if dtype != np.uint8 else np.arange(24, dtype=dtype)
    path = tmp_path / "a.idx"
    path.write_bytes(idx_bytes(arr, type_byte))
    got = read_idx(path)
    assert got.dtype == dtype and np.array_equal(got, arr)


def test_idx_gzip_detected_by_content(tmp_path):
    arr = np.arange(10, dtype=np.uint8)
    path = tmp_path / "no-suffix"
    path.write_bytes(gzip.compress(idx_bytes(arr)))
    assert np.array_equal(read_idx(path), arr)


def test_idx_errors(tmp_path):
    good = idx_bytes(np.zeros((4, 28, 28), dtype=np.uint8))
    cases = {
        "magic": (b"\x01\x02" + good[2:], "bad magic"),
        "type": (good[:2] + b"\x07" + good[3:], "bad magic"),
        "empty": (b"", "bad magic"),
        "header": (good[:9], "header cut short"),
        "data": (good[:-1], "truncated"),
        "extra": (good + b"\x00", "past the end"),
    }
    for name, (raw, match) in cases.items():
        (tmp_path / name).write_bytes(raw)
        user_error(read_idx, tmp_path / name, match=match)
    (tmp_path / "gz").write_bytes(gzip.compress(good)[:-20])
    user_error(read_idx, tmp_path / "gz", match="corrupt gzip")
    user_error(read_idx, tmp_path / "missing", match="cannot read")


@pytest.mark.parametrize("gz,dotted", [(True, False), (False, False), (False, True)])
def test_fashion_mnist_from_data_dir(tmp_path, gz, dotted):
    data = write_fmnist(tmp_path, gz=gz, dotted=dotted)
    ds = load_dataset("fashion-mnist", data_dir=str(tmp_path))
    assert ds.x_train.shape == (12, 784) and ds.x_train.dtype == np.uint8 and ds.image and ds.n_classes == 10
    assert np.array_equal(ds.x_train.reshape(12, 28, 28), data["train-images-idx3-ubyte"])
    assert ds.y_test.dtype == np.int64 and np.array_equal(ds.y_test, data["t10k-labels-idx1-ubyte"])
    seq = load_dataset("seq-fashion-mnist", data_dir=str(tmp_path), sequence=True)
    assert seq.x_test.shape == (5, 28, 28) and seq.n_steps == 28 and seq.n_features == 28 and seq.image
    flat = load_dataset("seq-fashion-mnist", data_dir=str(tmp_path))
    assert np.array_equal(flat.x_train, ds.x_train)
    user_error(load_dataset, "fashion-mnist", data_dir=str(tmp_path), sequence=True, match="seq-fashion-mnist")


def test_fashion_mnist_in_subdirectory(tmp_path):
    write_fmnist(tmp_path / "fashion-mnist")
    assert load_dataset("fashion-mnist", data_dir=str(tmp_path)).x_test.shape == (5, 784)


def test_fashion_mnist_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "FASHION_MNIST_DIRS", [str(tmp_path / "nowhere")])
    msg = user_error(load_dataset, "fashion-mnist", match="apt-get install dataset-fashion-mnist")
    assert "--data-dir" in msg
    write_fmnist(tmp_path)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
    user_error(load_dataset, "fashion-mnist", data_dir=str(tmp_path), match="lacks t10k-labels-idx1-ubyte")
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.arange(4, dtype=np.uint8)))
    user_error(load_dataset, "fashion-mnist", data_dir=str(tmp_path), match="expected 5 labels")
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.arange(5, dtype=np.uint8))[:-2])
    user_error(load_dataset, "fashion-mnist", data_dir=str(tmp_path), match="truncated")


needs_fmnist = pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"),
                                  reason="dataset-fashion-mnist not installed")


@needs_fmnist
def test_real_fashion_mnist():
    ds = load_dataset("fashion-mnist")
    assert ds.x_train.shape == (60_000, 784) and ds.x_test.shape == (10_000, 784)
    assert np.array_equal(np.bincount(ds.y_train), [6000] * 10) and np.array_equal(np.bincount(ds.y_test), [1000] * 10)
    assert ds.x_train.max() == 255


# ---------------------------------------------------------------- digits


def write_digits(path, n_per_class=10):
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(10), n_per_class)
    table = np.column_stack([rng.integers(0, 17, (len(y), 64)), y])
    with gzip.open(path, "wt") as f:
        np.savetxt(f, table, fmt="%d", delimiter=",")
    return table


def test_digits_from_data_dir(tmp_path):
    table = write_digits(tmp_path / "digits.csv.gz")
    a = load_dataset("digits", data_dir=str(tmp_path))
    assert a.x_train.shape == (80, 64) and a.x_test.shape == (20, 64) and a.image and a.n_classes == 10
    assert np.array_equal(np.bincount(a.y_test), [2] * 10)  # stratified 80/20
    b, c = load_dataset("digits", data_dir=str(tmp_path)), load_dataset("digits", data_dir=str(tmp_path), data_seed=5)
    assert np.array_equal(a.x_train, b.x_train) and not np.array_equal(a.x_train, c.x_train)
    # The split partitions the table.
    split = np.column_stack([np.vstack([a.x_train, a.x_test]), np.concatenate([a.y_train, a.y_test])])
    assert {tuple(r) for r in split} == {tuple(r) for r in table}


def test_digits_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "_package_dir", lambda package: None)
    user_error(load_dataset, "digits", match="pip install scikit-learn")
    # a given --data-dir is the only place looked at
    user_error(load_dataset, "digits", data_dir=str(tmp_path), match="holds no digits.csv.gz")


def test_digits_bad_table(tmp_path):
    with gzip.open(tmp_path / "digits.csv.gz", "wt") as f:
        f.write("1,2,3\n")
    user_error(load_dataset, "digits", data_dir=str(tmp_path), match="expected 64 pixels")


@pytest.mark.skipif(sources._package_dir("sklearn") is None, reason="scikit-learn not installed")
def test_real_digits():
    ds = load_dataset("digits")
    assert len(ds.x_train) + len(ds.x_test) == 1797 and ds.n_features == 64
    assert ds.x_train.max() == 16 and abs(len(ds.x_test) - 0.2 * 1797) < 10


# ---------------------------------------------------------------- npz


def write_npz(path, **overrides):
    rng = np.random.default_rng(2)
    arrays = {
        "x_train": rng.normal(size=(20, 5)), "y_train": np.arange(20) % 3,
        "x_test": rng.normal(size=(6, 5)), "y_test": np.arange(6) % 3,
    }
    arrays.update(overrides)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return arrays


def test_npz_round_trip(tmp_path):
    arrays = write_npz(tmp_path / "d.npz")
    ds = load_dataset(f"npz:{tmp_path / 'd.npz'}")
    assert ds.n_classes == 3 and not ds.image and ds.name == f"npz:{tmp_path / 'd.npz'}"
    for k in arrays:
        assert np.array_equal(getattr(ds, k), arrays[k])
    assert ds.y_train.dtype == np.int64


def test_npz_sequence_and_float_labels(tmp_path):
    write_npz(tmp_path / "s.npz", x_train=np.zeros((20, 7, 2)), x_test=np.ones((6, 7, 2)),
              y_train=(np.arange(20) % 2).astype(np.float32), y_test=np.arange(6) % 2)
    ds = load_dataset(f"npz:{tmp_path / 's.npz'}", sequence=True, window=3)
    assert ds.x_train.shape == (20, 3, 2) and ds.n_steps == 3 and ds.y_train.dtype == np.int64


NPZ_ERRORS = [
    (dict(x_train=None), "lacks the arrays x_train"),
    (dict(x_train=np.zeros((20, 5, 1))), r"expected \(N, F\)"),
    (dict(x_test=np.zeros((6, 4))), "x_train samples have shape"),
    (dict(x_train=np.full((20, 5), np.nan)), "NaN or inf"),
    (dict(x_test=np.full((6, 5), np.inf)), "NaN or inf"),
    (dict(x_train=np.array([["a"] * 5] * 20)), "must be numeric"),
    (dict(y_train=np.arange(20) * 0.5), "integer class labels"),
    (dict(y_train=np.arange(20) * (1 + 1j)), "integer class labels"),
    (dict(y_test=np.array([0, 1, 2, -1, 0, 0])), r"y_test holds labels the training labels lack \(-1\)"),
    (dict(y_test=np.array([0, 1, 7, 1, 0, 0])), r"lack \(7\); the classes are 0, 1, 2"),
    (dict(y_train=np.zeros(20, dtype=int)), "fewer than 2 classes"),
    (dict(x_train=np.zeros((0, 5)), y_train=np.zeros(0, dtype=int)), "train set is empty"),
    (dict(x_test=np.zeros((0, 5)), y_test=np.zeros(0, dtype=int)), "test set is empty"),
    (dict(y_train=np.arange(19) % 3), "20 samples but y_train has 19"),
    (dict(y_test=np.zeros((6, 1), dtype=int)), "1-D labels"),
]


@pytest.mark.parametrize("overrides,match", NPZ_ERRORS)
def test_npz_errors(tmp_path, overrides, match):
    write_npz(tmp_path / "bad.npz", **overrides)
    user_error(load_dataset, f"npz:{tmp_path / 'bad.npz'}", match=match)


def test_npz_file_errors(tmp_path):
    user_error(load_dataset, f"npz:{tmp_path / 'none.npz'}", match="does not exist")
    user_error(load_dataset, "npz:", match="needs a path")
    write_npz(tmp_path / "d.npz")
    raw = (tmp_path / "d.npz").read_bytes()
    (tmp_path / "trunc.npz").write_bytes(raw[: len(raw) // 2])
    user_error(load_dataset, f"npz:{tmp_path / 'trunc.npz'}", match="not a valid .npz|truncated")
    (tmp_path / "text.npz").write_text("hello")
    user_error(load_dataset, f"npz:{tmp_path / 'text.npz'}", match="not a valid .npz")
    np.save(tmp_path / "one.npy", np.zeros(3))
    user_error(load_dataset, f"npz:{tmp_path / 'one.npy'}", match="single array")
    # A sequence model needs (N, T, F).
    user_error(load_dataset, f"npz:{tmp_path / 'd.npz'}", sequence=True, match=r"expected \(N, T, F\)")
    user_error(load_dataset, f"npz:{tmp_path / 'd.npz'}", window=2, match="only to sequence")


def test_npz_corrupt_member(tmp_path):
    # Intact zip directory, damaged member data: fails when the member is read, not when the archive opens.
    np.savez_compressed(tmp_path / "c.npz", x_train=np.zeros((20, 5)), y_train=np.arange(20) % 2,
                        x_test=np.zeros((6, 5)), y_test=np.arange(6) % 2)
    raw = bytearray((tmp_path / "c.npz").read_bytes())
    start = raw.index(b"x_train.npy") + 40
    raw[start:start + 20] = b"\xff" * 20
    (tmp_path / "c.npz").write_bytes(bytes(raw))
    user_error(load_dataset, f"npz:{tmp_path / 'c.npz'}", match="not a valid .npz|truncated or corrupt")


def test_unknown_dataset():
    msg = user_error(load_dataset, "mnist", match="unknown dataset")
    assert "npz:PATH" in msg and "ucr:NAME" in msg


def test_validate_dataset_direct():
    x = np.zeros((4, 3))
    validate_dataset(Dataset("ok", x, np.array([0, 1, 0, 1]), x, np.array([0, 0, 1, 1]), 2, image=False))
    user_error(validate_dataset, Dataset("d", x, np.array([0, 1, 0, 2]), x, np.array([0, 0, 1, 1]), 2, False),
               match="outside 0..1")
    user_error(validate_dataset, Dataset("d", x.ravel(), np.array([0, 1] * 6), x, np.array([0, 0, 1, 1]), 2, False),
               match=r"\(N, F\) or \(N, T, F\)")
    user_error(validate_dataset, Dataset("d", np.zeros((4, 0)), np.array([0, 1, 0, 1]), np.zeros((4, 0)),
                                         np.array([0, 0, 1, 1]), 2, False), match="no features")


# ---------------------------------------------------------------- .ts files / UCR

TS_MULTI = """# a comment
% an ARFF-style comment
@problemName Toy
@timeStamps false
@missing true
@univariate false
@dimensions 2
@equalLength false
@classLabel true b a c
@data
1,2,3,4:10,20,30,40:a
?,5,?,7:1,?,3:b

8,9:?,2:c
"""


def write_ucr(directory, name="Toy", train=TS_MULTI, test=None):
    os.makedirs(directory, exist_ok=True)
    (directory / f"{name}_TRAIN.ts").write_text(train)
    (directory / f"{name}_TEST.ts").write_text(test if test is not None else train)


def test_ts_parser(tmp_path):
    write_ucr(tmp_path)
    ts = read_ts(tmp_path / "Toy_TRAIN.ts")
    assert ts.class_labels == ["b", "a", "c"] and ts.labels == ["a", "b", "c"] and ts.n_dims == 2
    assert ts.max_length == 4
    assert np.isnan(ts.series[1][0][0]) and np.array_equal(ts.series[2][0], [8, 9])


def test_ucr_variable_length_missing_multivariate(tmp_path):
    write_ucr(tmp_path)
    ds = load_dataset("ucr:Toy", data_dir=str(tmp_path), sequence=True)
    assert ds.x_train.shape == (3, 4, 2) and ds.x_train.dtype == np.float64 and not ds.image
    assert ds.n_classes == 3 and list(ds.y_train) == [1, 0, 2]  # numbered in @classLabel order
    assert np.array_equal(ds.x_train[0], [[1, 10], [2, 20], [3, 30], [4, 40]])
    # Case 2: dim 0 "?,5,?,7" -> forward-fill, then back-fill -> 5,5,5,7; dim 1 "1,?,3" -> 1,1,3, front-padded.
    assert np.array_equal(ds.x_train[1], [[5, 1], [5, 1], [5, 1], [7, 3]])
    # Case 3: "8,9" and "?,2" -> front-padded to 4 steps with the first (filled) value.
    assert np.array_equal(ds.x_train[2], [[8, 2], [8, 2], [8, 2], [9, 2]])
    flat = load_dataset("ucr:Toy", data_dir=str(tmp_path))
    assert flat.x_train.shape == (3, 8) and np.array_equal(flat.x_train, ds.x_train.reshape(3, 8))
    win = load_dataset("ucr:Toy", data_dir=str(tmp_path), sequence=True, window=2)
    assert np.array_equal(win.x_train, ds.x_train[:, -2:])
    user_error(load_dataset, "ucr:Toy", data_dir=str(tmp_path), sequence=True, window=5, match="between 1 and")
    user_error(load_dataset, "ucr:Toy", data_dir=str(tmp_path), window=1.5, match="between 1 and")


def test_ucr_length_shared_by_train_and_test(tmp_path):
    test = TS_MULTI.replace("1,2,3,4:10,20,30,40:a", "0,1,2,3,4,5:0,1,2,3,4,5:a")
    write_ucr(tmp_path / "Toy", test=test)  # in the NAME sub-directory
    ds = load_dataset("ucr:Toy", data_dir=str(tmp_path), sequence=True)
    assert ds.x_train.shape == (3, 6, 2) and ds.x_test.shape == (3, 6, 2)
    assert np.array_equal(ds.x_train[0, :, 0], [1, 1, 1, 2, 3, 4])


TS_HEAD = "@problemName T\n@classLabel true 1 2\n@data\n"
TS_ERRORS = [
    (TS_HEAD + "1,2,3:3\n", "class label '3' is not among"),
    (TS_HEAD + "1,x,3:1\n", "'x' is not a number"),
    (TS_HEAD + "1,,3:1\n", "is not a number"),
    (TS_HEAD + "1,2:1\n1,2:3,4:2\n", "2 dimensions, expected 1"),
    (TS_HEAD + "1,2\n", "expected values then ':'"),
    (TS_HEAD + "?,?:1\n1,2:2\n", "all missing"),
    (TS_HEAD, "no cases after @data"),
    ("@problemName T\n@classLabel true 1 2\n1,2:1\n", "expected an @ header line"),
    ("@problemName T\n@classLabel true 1 2\n", "no @data line"),
    ("@problemName T\n@data\n1,2:1\n", "only classification"),
    ("@classLabel false\n@data\n1,2\n", "no class labels"),
    ("@targetLabel true\n@data\n1,2:0.5\n", "regression"),
    ("@timeStamps true\n@classLabel true 1 2\n@data\n(0,1),(1,2):1\n", "timeStamps true is not supported"),
    ("@classLabel true 1\n@data\n1,2:1\n", "fewer than 2 classes"),
    ("@classLabel maybe 1 2\n@data\n1,2:1\n", "true or false"),
    ("@dimensions 2\n@classLabel true 1 2\n@data\n1,2:1\n", "1 dimensions, expected 2"),
    ("@\n@classLabel true 1 2\n1,2:1\n", "expected an @ header line"),
]


@pytest.mark.parametrize("text,match", TS_ERRORS)
def test_ts_errors(tmp_path, text, match):
    write_ucr(tmp_path, "Bad", train=text, test=TS_HEAD + "1,2:1\n")
    msg = user_error(load_dataset, "ucr:Bad", data_dir=str(tmp_path), match=match)
    assert "Bad_TRAIN.ts" in msg


def test_ucr_train_test_mismatch(tmp_path):
    write_ucr(tmp_path, "M", train=TS_HEAD + "1,2:1\n3,4:2\n", test=TS_HEAD.replace("1 2", "1 2 3") + "1,2:3\n")
    user_error(load_dataset, "ucr:M", data_dir=str(tmp_path), match="class labels 3 are not in the training")
    write_ucr(tmp_path, "D", train=TS_HEAD + "1,2:1\n3,4:2\n", test=TS_HEAD + "1,2:3,4:1\n")
    user_error(load_dataset, "ucr:D", data_dir=str(tmp_path), match="2 dimensions but the training file has 1")


def test_ucr_unknown_name_lists_found(tmp_path):
    write_ucr(tmp_path / "Toy")
    write_ucr(tmp_path, "Reg", train="@targetLabel true\n@data\n1,2:0.5\n")
    msg = user_error(load_dataset, "ucr:Nope", data_dir=str(tmp_path), match="no Nope_TRAIN.ts")
    assert "Toy" in msg and "Reg" not in msg  # regression files are not offered
    assert "ucr:Toy" in list_datasets(str(tmp_path)) and list_datasets()[:4] == list(sources.BUILTIN)
    user_error(load_dataset, "ucr:", match="needs a dataset name")
    user_error(load_dataset, "ucr:../x", match="needs a dataset name")


SKTIME = sources._package_dir("sktime")
SKTIME_SETS = {  # name: (train shape (N, T, D), test N, classes)
    "ItalyPowerDemand": ((67, 24, 1), 1029, 2),
    "GunPoint": ((50, 150, 1), 150, 2),
    "ArrowHead": ((36, 251, 1), 175, 3),
    "BasicMotions": ((40, 100, 6), 40, 4),
    "JapaneseVowels": ((270, 29, 12), 370, 9),  # variable length 7..29, front-padded
    "UnitTest": ((20, 24, 1), 22, 2),
}


@pytest.mark.skipif(SKTIME is None, reason="sktime not installed (pip install --no-deps sktime)")
@pytest.mark.parametrize("name", sorted(SKTIME_SETS))
def test_real_sktime_datasets(name):
    shape, n_test, n_classes = SKTIME_SETS[name]
    ds = load_dataset(f"ucr:{name}", sequence=True)
    assert ds.x_train.shape == shape and ds.x_test.shape == (n_test,) + shape[1:] and ds.n_classes == n_classes
    assert set(np.unique(ds.y_train)) == set(range(n_classes))


@pytest.mark.skipif(SKTIME is None, reason="sktime not installed (pip install --no-deps sktime)")
def test_sktime_found_without_importing_it():
    import sys

    load_dataset("ucr:ItalyPowerDemand")
    assert "sktime" not in sys.modules


# ---------------------------------------------------------------- encoders


def test_sign_encoder():
    enc = make_encoder("sign", image=False).fit(np.zeros((1, 3)))
    out = enc.transform(np.array([[-1, 0, 2], [1, -0.5, -3]]))
    assert out.dtype == np.int8 and np.array_equal(out, [[-1, 1, 1], [1, -1, -1]])
    assert enc.n_out(3) == 3 and enc.state() == {} and enc.spec == "sign"
    assert Encoder.from_state("sign", {}).spec == "sign"


def test_thermometer_quantiles_per_feature():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(200, 3)) * [1, 10, 100]
    enc = make_encoder("thermometer:3", image=False).fit(x)
    q = enc.state()["thresholds"]
    assert q.shape == (3, 3)
    for f in range(3):
        assert np.array_equal(q[f], np.quantile(x[:, f], [0.25, 0.5, 0.75]))
    x_new = rng.normal(size=(50, 3)) * [1, 10, 100]
    out = enc.transform(x_new)
    assert out.shape == (50, 9) and out.dtype == np.int8 and enc.n_out(3) == 9
    for f in range(3):  # feature-major: feature f's bits are columns 3f..3f+2
        for i in range(3):
            assert np.array_equal(out[:, 3 * f + i] == 1, x_new[:, f] > q[f, i])
    # Bits form a thermometer: once a bit is -1 the higher ones are too.
    bits = out.reshape(50, 3, 3)
    assert np.all(np.diff(bits, axis=2) <= 0)


def test_thermometer_image_uses_global_quantiles():
    x = np.arange(40, dtype=np.uint8).reshape(10, 4)
    q = make_encoder("thermometer:2", image=True).fit(x).state()["thresholds"]
    assert q.shape == (4, 2) and np.array_equal(q, np.tile(np.quantile(x, [1 / 3, 2 / 3]), (4, 1)))


def test_median_is_thermometer_1():
    rng = np.random.default_rng(5)
    for image in (False, True):
        x, x_new = rng.integers(0, 9, size=(101, 6)), rng.integers(0, 9, size=(30, 6))
        med, th1 = make_encoder("median", image).fit(x), make_encoder("thermometer:1", image).fit(x)
        assert med.spec == "median" and np.array_equal(med.state()["thresholds"], th1.state()["thresholds"])
        assert np.array_equal(med.transform(x_new), th1.transform(x_new))
        expected = np.median(x) if image else np.median(x, axis=0)
        assert np.allclose(med.state()["thresholds"][:, 0], expected)
        assert np.array_equal(med.transform(x_new), np.where(x_new > expected, 1, -1))


def test_quantile_encoder_is_one_bit_at_q():
    rng = np.random.default_rng(8)
    for image in (False, True):
        x, x_new = rng.integers(0, 255, size=(101, 6)), rng.integers(0, 255, size=(30, 6))
        enc = make_encoder("quantile:0.70", image).fit(x)
        assert enc.spec == "quantile:0.7" and enc.n_out(6) == 6
        expected = np.quantile(x, 0.7) if image else np.quantile(x, 0.7, axis=0)
        assert enc.state()["thresholds"].shape == (6, 1)
        assert np.allclose(enc.state()["thresholds"][:, 0], expected)
        assert np.array_equal(enc.transform(x_new), np.where(x_new > expected, 1, -1))
    # quantile:0.5 is the median encoder's bit, under its own name.
    x = rng.normal(size=(40, 3))
    half, med = make_encoder("quantile:0.5", False).fit(x), make_encoder("median", False).fit(x)
    assert np.array_equal(half.transform(x), med.transform(x))


def test_sequence_encoding_per_step():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(8, 5, 3))
    enc = make_encoder("thermometer:2", image=False).fit(x)
    assert np.array_equal(enc.state()["thresholds"], np.quantile(x.reshape(-1, 3), [1 / 3, 2 / 3], axis=0).T)
    out = enc.transform(x)
    assert out.shape == (8, 5, 6)
    assert np.array_equal(out[:, 2], enc.transform(x[:, 2]))


@pytest.mark.parametrize("spec", ["sign", "median", "quantile:0.65", "thermometer:1", "thermometer:7"])
@pytest.mark.parametrize("image", [False, True])
def test_encoder_state_round_trip(spec, image):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(30, 4))
    enc = make_encoder(spec, image).fit(x)
    # A checkpoint holds these as npz arrays; go through that too.
    state = {k: np.asarray(v) for k, v in enc.state().items()}
    again = Encoder.from_state(enc.spec, state)
    assert again.spec == enc.spec and again.n_out(4) == enc.n_out(4)
    assert state.keys() == again.state().keys() and all(np.array_equal(state[k], again.state()[k]) for k in state)
    x_new = rng.normal(size=(9, 4))
    assert np.array_equal(again.transform(x_new), enc.transform(x_new))


def test_encoder_errors():
    user_error(make_encoder, None, False, match="must be a string")
    for bad in ["", "Sign", "median:2", "thermometer", "thermometer:0", "thermometer:-3", "thermometer:x", "binary",
                "quantile", "quantile:0", "quantile:1", "quantile:1.5", "quantile:x", "quantile:nan"]:
        user_error(make_encoder, bad, False)
    assert make_encoder("thermometer:08", False).spec == "thermometer:8"
    enc = make_encoder("thermometer:2", False).fit(np.zeros((3, 4)))
    user_error(enc.transform, np.zeros((3, 5)), match="fitted on 4 features")
    user_error(Encoder.from_state, "thermometer:3", enc.state(), match="expected \\(features, 3\\)")
    user_error(Encoder.from_state, "median", {}, match="stored thresholds")
    with pytest.raises(RuntimeError):
        make_encoder("median", False).transform(np.zeros((2, 2)))


@needs_fmnist
def test_real_fashion_mnist_median():
    ds = load_dataset("fashion-mnist")
    enc = make_encoder("median", ds.image).fit(ds.x_train)
    assert enc.state()["thresholds"][0, 0] == np.median(ds.x_train)
    out = enc.transform(ds.x_test)
    assert out.shape == (10_000, 784) and 0.3 < (out == 1).mean() < 0.7
