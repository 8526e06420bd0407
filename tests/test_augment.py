"""--augment: shifted and mirrored training images, against a per-pixel loop, identical on every backend, resumable."""
import json

import numpy as np
import pytest

from bep_gpu.config import TrainConfig
from bep_gpu.data import Dataset
from bep_gpu.data.augment import Augment
from bep_gpu.errors import UserError
from bep_gpu.trainer import Trainer


def _moved_by_loop(x, background, dy, dx, flip):
    """The spec of Augment.apply, one pixel at a time: out[y, c] = m[y - dy, c - dx], m = x or x mirrored."""
    h, w, _ = x.shape
    m = x[:, ::-1] if flip else x
    out = np.empty_like(x)
    for y in range(h):
        for c in range(w):
            inside = 0 <= y - dy < h and 0 <= c - dx < w
            out[y, c] = m[y - dy, c - dx] if inside else background
    return out


@pytest.mark.parametrize("spec, shape", [("shift:1", (40, 5, 7, 3)), ("flip", (30, 4, 4, 1)),
                                         ("shift:2,flip", (50, 6, 9, 2)), ("flip,shift:7", (20, 3, 5, 4))])
def test_apply_matches_the_per_pixel_loop(spec, shape):
    rng = np.random.default_rng(len(spec))
    x = rng.choice(np.array([-1, 1], dtype=np.int8), size=shape)
    background = rng.choice(np.array([-1, 1], dtype=np.int8), size=shape[-1])
    aug = Augment.parse(spec)
    out = aug.apply(np, x, background, seed=3, epoch=2)
    dy, dx, flip = aug.draws(len(x), seed=3, epoch=2)
    assert out.shape == x.shape and out.dtype == x.dtype
    for i in range(len(x)):
        assert np.array_equal(out[i], _moved_by_loop(x[i], background, dy[i], dx[i], flip[i])), i
    # the draws cover the whole range, and only what the spec asks for
    assert set(np.abs(dy)) | set(np.abs(dx)) <= set(range(aug.shift + 1))
    assert flip.any() == aug.flip and (not aug.flip or not flip.all())


def test_draws_change_with_the_epoch_and_seed_only():
    aug = Augment.parse("shift:2,flip")
    same = [np.concatenate(aug.draws(200, 5, 1)) for _ in range(2)]
    assert np.array_equal(*same)
    for seed, epoch in ((5, 2), (6, 1)):
        assert not np.array_equal(same[0], np.concatenate(aug.draws(200, seed, epoch)))


@pytest.mark.parametrize("spec", ["shift", "shift:0", "shift:-1", "shift:x", "flip:2", "flip,flip", "shift:1,shift:2",
                                  "rotate"])
def test_bad_specs_are_one_line_errors(spec):
    with pytest.raises(UserError, match="is not understood; use shift:S"):
        Augment.parse(spec)


def test_empty_spec_is_no_augmentation():
    assert not Augment.parse("") and not Augment.parse(None) and Augment.parse("flip")


def _images(n=120, h=6, w=6):
    """Two classes that differ by where a bright bar sits, as (N, H, W) pixels 0..255 (background 0)."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, n)
    x = (rng.random((n, h, w)) < 0.15) * 80
    for i in range(n):
        x[i, 1 + 2 * y[i]] = 255
    return x.astype(np.uint8), y


def _dataset(kind):
    x, y = _images()
    if kind == "mlp":  # the MLP's view: flattened pixels that remember their (H, W, C)
        return Dataset("bars", x.reshape(len(x), -1), y, None, None, 2, True, image_shape=(6, 6, 1))
    return Dataset("bars", x[..., None], y, None, None, 2, True)


KIND_SETTINGS = {"mlp": dict(hidden=[32], gamma0=8), "conv": dict(conv=[[8, 3, 1, 1]], hidden=[16], gamma0=[4, 8])}


def _train(kind, bk, out, **settings):
    settings = {"epochs": 2, "augment": "shift:1,flip", **KIND_SETTINGS[kind], **settings}
    cfg = TrainConfig(kind=kind, dataset="bars", out=str(out), batch_size=10, quiet=True, backend="numpy",
                      encode="thermometer:2", **settings)
    Trainer(cfg, backend=bk, dataset=_dataset(kind)).run()
    return np.load(out / "model.npz")


@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_augmented_training_identical_on_every_backend(kind, bk, tmp_path):
    from conftest import make_backend

    ref = _train(kind, make_backend("numpy"), tmp_path / "numpy")
    got = _train(kind, bk, tmp_path / "bk")
    keys = [k for k in ref.files if k.startswith("hidden.")] + ["prototypes", "train.state"]
    for key in keys:
        assert np.array_equal(ref[key], got[key]), key
    plain = _train(kind, make_backend("numpy"), tmp_path / "plain", augment="")
    assert not all(np.array_equal(ref[k], plain[k]) for k in keys if k.startswith("hidden."))


def test_each_epoch_packs_its_own_moved_images(tmp_path):
    from bep_gpu.backends.numpy_backend import NumpyBackend

    bk = NumpyBackend()
    cfg = TrainConfig(kind="mlp", dataset="bars", out=str(tmp_path), epochs=0, quiet=True, backend="numpy",
                      hidden=[32], gamma0=8, encode="thermometer:2", augment="shift:1", seed=4)
    data = Trainer(cfg, backend=bk, dataset=_dataset("mlp")).data
    pixels = data.pixels  # (N, 6, 6, 2): thermometer:2 gives each pixel two bits
    assert pixels.shape == (data.n_train, 6, 6, 2) and np.array_equal(data.background, [-1, -1])
    assert np.array_equal(bk.pack(pixels.reshape(data.n_train, -1)), data.train[0])
    for epoch in (0, 1):
        moved = Augment.parse("shift:1").apply(np, pixels, data.background, 4, epoch)
        assert np.array_equal(data.train_inputs(epoch), bk.pack(moved.reshape(data.n_train, -1)))
    assert not np.array_equal(data.train_inputs(0), data.train_inputs(1))


def test_resumed_augmented_run_ends_where_the_uninterrupted_one_does(tmp_path):
    from bep_gpu.backends.numpy_backend import NumpyBackend

    full = _train("mlp", NumpyBackend(), tmp_path / "full", epochs=3)
    _train("mlp", NumpyBackend(), tmp_path / "part", epochs=1)
    cfg = TrainConfig(kind="mlp", resume=str(tmp_path / "part"), epochs=3, quiet=True)
    Trainer(cfg, backend=NumpyBackend(), dataset=_dataset("mlp"), given={"epochs": 3}).run()
    resumed = np.load(tmp_path / "part" / "model.npz")
    assert json.loads(str(resumed["train.state"]))["epoch"] == 3
    for key in [k for k in full.files if k.startswith("hidden.")] + ["prototypes", "train.state"]:
        assert np.array_equal(full[key], resumed[key]), key


def test_rnn_refuses_augment():
    with pytest.raises(UserError, match="--augment moves images: it is for mlp and conv"):
        TrainConfig(kind="rnn", augment="shift:1").check()


def test_estimators_take_augment_for_images_only():
    from bep_gpu.estimators import ConvClassifier, MLPClassifier, RNNClassifier

    x, y = _images()
    mlp = MLPClassifier(hidden=[16], gamma0=8, epochs=1, backend="numpy", augment="shift:1,flip").fit(x, y)
    assert mlp.predict(x).shape == y.shape
    ConvClassifier(conv=[[4, 3, 1, 1]], hidden=[8], gamma0=4, epochs=1, backend="numpy", augment="flip").fit(x, y)
    with pytest.raises(ValueError, match="holds no images of known shape"):
        MLPClassifier(hidden=[16], gamma0=8, epochs=1, backend="numpy", augment="shift:1").fit(x.reshape(len(x), -1), y)
    assert "augment" not in RNNClassifier().get_params()
