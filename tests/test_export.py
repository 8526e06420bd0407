"""bep-export: the packed .npz follows docs/EXPORT.md, and the generated C reproduces Model.predict bit for bit."""
import shutil
import subprocess

import numpy as np
import pytest

import bep_gpu
from bep_gpu.bits import n_words
from bep_gpu.cli.export import main as export_main
from bep_gpu.cli.train import main as train_main

# Reads "n steps features" (int32) then n samples of float32 and prints one predicted class per line; with a
# second argument "encode" it prints the encoded words of each sample (its first step for an RNN) instead.
C_MAIN = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bep_model.h"
#include "bep_infer.h"

int main(int argc, char **argv) {
    int32_t hdr[3];
    long i, count;
    uint32_t bits[BEP_WORDS(BEP_MAX_WIDTH)];
    FILE *f = fopen(argv[1], "rb");
    if (!f || fread(hdr, sizeof hdr[0], 3, f) != 3 || hdr[2] != BEP_N_FEATURES) return 3;
    count = (long)hdr[1] * hdr[2];
    float *x = malloc(sizeof(float) * count);
    for (i = 0; i < hdr[0]; i++) {
        if (fread(x, sizeof(float), count, f) != (size_t)count) return 4;
        if (argc > 2 && strcmp(argv[2], "encode") == 0) {
            int w;
            bep_encode(x, bits);
            for (w = 0; w < BEP_WORDS(BEP_N_INPUTS); w++) printf("%u ", bits[w]);
            printf("\n");
        } else {
            printf("%d\n", bep_predict(x, hdr[1]));
        }
    }
    return 0;
}
"""

needs_cc = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler (cc)")


def _dataset(path, rng, n=500, shape=(12,), classes=4):
    y = rng.integers(0, classes, n)
    x = (rng.normal(size=(n,) + shape) + 0.8 * y.reshape((-1,) + (1,) * len(shape))).astype(np.float32)
    np.savez(path, x_train=x[:300], y_train=y[:300], x_test=x[300:], y_test=y[300:])
    return x[300:], y[300:]


def _train(tmp_path, kind, dataset, *flags):
    out = tmp_path / f"run-{kind}"
    assert train_main([kind, "--dataset", f"npz:{dataset}", "--epochs", "2", "--backend", "numpy", "--quiet",
                       "--val-fraction", "0", "--out", str(out)] + list(flags)) == 0
    return out / "model.npz"


def _edge_inputs(model, x):
    """x with entries moved onto, just below and just above float32 versions of the encoder's thresholds, and
    exact zeros (sign(0) = +1 in the encoder) - where float rounding could make C and NumPy disagree."""
    x = x.copy()
    flat = x.reshape(-1, x.shape[-1])
    q = model.encoder.state().get("thresholds")
    rng = np.random.default_rng(5)
    for row in rng.choice(len(flat), size=len(flat) // 2, replace=False):
        f = rng.integers(flat.shape[1])
        if q is None:
            flat[row, f] = np.float32(0.0) * rng.choice([1, -1])
            continue
        v = np.float32(q[f, rng.integers(q.shape[1])])
        flat[row, f] = [v, np.nextafter(v, np.float32(-np.inf)), np.nextafter(v, np.float32(np.inf))][row % 3]
    return x


def _run_c(tmp_path, out_dir, x, mode=""):
    exe = tmp_path / "bep_test"
    (out_dir / "main.c").write_text(C_MAIN)
    subprocess.run(["cc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(exe), "main.c", "bep_infer.c"],
                   cwd=out_dir, check=True, capture_output=True)
    x3 = x.reshape(len(x), -1, x.shape[-1]).astype(np.float32)
    data = tmp_path / "inputs.bin"
    data.write_bytes(np.array(x3.shape, dtype="<i4").tobytes() + x3.astype("<f4").tobytes())
    lines = subprocess.run([str(exe), str(data)] + ([mode] if mode else []), check=True, capture_output=True,
                           text=True).stdout.splitlines()
    return [[int(v) for v in line.split()] for line in lines]


@needs_cc
@pytest.mark.parametrize("encode", ["thermometer:3", "sign"])
def test_c_inference_matches_predict_mlp(tmp_path, encode):
    x_test, _ = _dataset(tmp_path / "d.npz", np.random.default_rng(0))
    ckpt = _train(tmp_path, "mlp", tmp_path / "d.npz", "--hidden", "40,20", "--gamma0", "5", "--encode", encode)
    model = bep_gpu.load(ckpt)
    x = _edge_inputs(model, x_test)
    out = tmp_path / "export"
    assert export_main([str(ckpt), "--out", str(out), "--format", "c"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["bep_infer.c", "bep_infer.h", "bep_model.h"]
    words = np.array(_run_c(tmp_path, out, x, "encode"), dtype=np.uint32)
    want = bep_gpu.pack_bits(model.encode(x)).view("<u4")[:, : words.shape[1]]
    assert np.array_equal(words, want)
    assert np.array_equal(np.array(_run_c(tmp_path, out, x)).ravel(), model.predict(x))


@needs_cc
def test_c_inference_matches_predict_rnn(tmp_path):
    x_test, _ = _dataset(tmp_path / "s.npz", np.random.default_rng(1), shape=(10, 2), classes=3)
    ckpt = _train(tmp_path, "rnn", tmp_path / "s.npz", "--hidden", "30,20", "--gamma0", "5", "--batch-size", "20",
                  "--encode", "thermometer:2", "--expand", "24", "--window", "8")
    model = bep_gpu.load(ckpt)
    x = _edge_inputs(model, x_test)  # 10 steps: the C code must drop the first 2, as predict does
    out = tmp_path / "export"
    assert export_main([str(ckpt), "--out", str(out)]) == 0
    assert np.array_equal(np.array(_run_c(tmp_path, out, x)).ravel(), model.predict(x))


def _unpack(words, k):
    """The documented layout, read with plain NumPy: bit j of a row = bit j % 64 of little-endian word j // 64."""
    bits = np.unpackbits(np.ascontiguousarray(words.astype("<u8")).view(np.uint8), axis=-1, bitorder="little")
    return bits[..., :k].astype(np.int64) * 2 - 1


def test_npz_export_layout_predicts_like_the_model(tmp_path):
    x_test, _ = _dataset(tmp_path / "d.npz", np.random.default_rng(2))
    ckpt = _train(tmp_path, "mlp", tmp_path / "d.npz", "--hidden", "70,30", "--gamma0", "5", "--encode", "median")
    model = bep_gpu.load(ckpt)
    out = tmp_path / "export"
    assert export_main([str(ckpt), "--out", str(out), "--format", "npz"]) == 0
    z = np.load(out / "bep_model.npz", allow_pickle=False)
    assert str(z["format"]) == "bep-gpu-export" and int(z["version"]) == 1 and str(z["kind"]) == "mlp"
    sizes = [int(k) for k in z["sizes"]]
    assert sizes == [12, 70, 30] and int(z["n_features"]) == 12 and str(z["encoder.spec"]) == "median"
    assert z["weights.0"].dtype == np.dtype("<u8") and z["weights.0"].shape == (70, n_words(12))
    # inference from the export alone, as docs/EXPORT.md describes it
    a = np.where(x_test[..., None] > z["encoder.thresholds"], 1, -1).reshape(len(x_test), -1)
    for i in range(len(sizes) - 1):
        a = np.where(a @ _unpack(z[f"weights.{i}"], sizes[i]).T >= 0, 1, -1)
    logits = a @ _unpack(z["prototypes"], sizes[-1]).T
    assert np.array_equal(z["classes"][np.argmax(logits, axis=1)], model.predict(x_test))
    assert np.array_equal(_unpack(z["weights.1"], 70), np.where(model.hidden["1"] >= 0, 1, -1))


def test_export_errors_are_one_line(tmp_path, capsys):
    x_test, _ = _dataset(tmp_path / "d.npz", np.random.default_rng(3))
    ckpt = _train(tmp_path, "mlp", tmp_path / "d.npz", "--hidden", "10", "--gamma0", "5")
    full = np.load(ckpt)
    weights_only = tmp_path / "w.npz"
    np.savez(weights_only, format="bep-gpu", version=1, kind="mlp", config="{}", prototypes=full["prototypes"],
             **{"hidden.0": full["hidden.0"]})
    (tmp_path / "file").write_text("x")
    for args, message in [([str(tmp_path / "none.npz"), "--out", str(tmp_path / "o")], "does not exist"),
                          ([str(weights_only), "--out", str(tmp_path / "o")], "stores no encoder"),
                          ([str(ckpt), "--out", str(tmp_path / "file" / "sub")], "cannot create"),
                          ([str(ckpt)], "--out")]:
        assert export_main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("bep-export: error:") and message in err[0]
    assert not (tmp_path / "o").exists()


@needs_cc
@pytest.mark.parametrize("conv, pools", [("5:3:2:1,7:3:1:0", [1, 1]), ("5:3:1:1:2,7:3:1:0", [2, 1])])
def test_c_inference_matches_predict_conv(tmp_path, conv, pools):
    """Images of 2 channels, thermometer:2 (4 bits a pixel), stride 2 with padding, C not a multiple of 32; or a
    stride-1 layer with 2 x 2 majority pooling of its 7 x 6 map (its last row dropped)."""
    x_test, _ = _dataset(tmp_path / "i.npz", np.random.default_rng(2), shape=(7, 6, 2), classes=3)
    ckpt = _train(tmp_path, "conv", tmp_path / "i.npz", "--conv", conv, "--hidden", "12",
                  "--gamma0", "1", "--encode", "thermometer:2")
    model = bep_gpu.load(ckpt)
    x = _edge_inputs(model, x_test)
    out = tmp_path / "export"
    assert export_main([str(ckpt), "--out", str(out)]) == 0
    assert np.array_equal(np.array(_run_c(tmp_path, out, x)).ravel(), model.predict(x))
    with np.load(out / "bep_model.npz") as z:
        assert z["kind"] == "conv" and z["conv"].tolist() == [[int(v) for v in c.split(":")[:4]]
                                                              for c in conv.split(",")]
        assert z["conv_pool"].tolist() == pools
        assert z["weights.0"].shape == (5, n_words(3 * 3 * 4))
