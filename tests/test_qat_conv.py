"""The QAT conv peer (bep_gpu.peers.qat_conv): its binary layers, the --pool and --float probes, its command line."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402 (after the torch skip)

from bep_gpu.peers import qat_conv  # noqa: E402

SPECS = [(6, 3, 1, 1), (10, 3, 2, 0)]


def _model(**kw):
    return qat_conv.build((9, 11), 3, SPECS, [7], 4, bn=False, seed=1, **kw)


def _images(n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 2, (n, 9, 11, 3), generator=g) * 2 - 1).float()


def test_binary_conv_pads_with_plus_one_and_uses_signed_filters():
    conv = _model().convs[0]
    a = _images().permute(0, 3, 1, 2)
    want = F.conv2d(F.pad(a, (1,) * 4, value=1.0), torch.sign(conv.inner.weight).view(conv.shape))
    assert torch.equal(conv(a), want)


def test_float_probe_uses_latent_filters_over_zero_padding():
    conv = _model(binary=False).convs[0]
    a = _images().permute(0, 3, 1, 2)
    assert torch.allclose(conv(a), F.conv2d(a, conv.inner.weight.view(conv.shape), padding=1))


def _sign(z):
    return (z >= 0).float() * 2 - 1


def _or_pool(a):
    """2 x 2 OR of +-1 maps (N, C, H, W), the odd last row and column dropped, written without max_pool2d."""
    n, c, h, w = a.shape
    bits = (a[:, :, :h // 2 * 2, :w // 2 * 2] > 0).reshape(n, c, h // 2, 2, w // 2, 2)
    return bits.any(dim=5).any(dim=3).float() * 2 - 1


def _by_hand(model, x, *, binary, pool):
    """The forward pass of _model(...) without BN, written out: conv, activation, pool, flatten (y, x, c), dense."""
    act, wt = (_sign, torch.sign) if binary else (F.relu, lambda w: w)
    a = x.permute(0, 3, 1, 2)
    for i, (conv, (c_out, k, s, p)) in enumerate(zip(model.convs, SPECS)):
        a = F.pad(a, (p,) * 4, value=1.0 if binary else 0.0)
        a = act(F.conv2d(a, wt(conv.inner.weight).view(conv.shape), stride=s))
        if i in pool:
            a = _or_pool(a) if binary else F.max_pool2d(a, 2)
    a = act(F.linear(a.permute(0, 2, 3, 1).flatten(1), wt(model.dense[0].weight)))
    return F.linear(a, model.readout.prototypes) * model.readout.logit_scale


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("pool", [set(), {0}])
def test_forward_matches_the_layers_written_out(binary, pool):
    model = _model(pool=pool, binary=binary)
    x = _images()
    with torch.no_grad():
        assert torch.allclose(model(x), _by_hand(model, x, binary=binary, pool=pool), atol=1e-5)


def test_pooling_shrinks_the_flat_width():
    # 9 x 11 -> (pool) 4 x 5 -> (3x3, stride 2, no padding) 1 x 2; without the pool 4 x 5.
    assert _model(pool={0}).dense[0].weight.shape[1] == 1 * 2 * 10
    assert _model().dense[0].weight.shape[1] == 4 * 5 * 10


def test_frozen_filters_stay_while_the_rest_trains():
    from bep_gpu.peers.qat_torch import train_epoch

    model = qat_conv.build((9, 11), 3, SPECS, [7], 4, bn=True, seed=1)
    qat_conv.freeze_filters(model, {1})
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x = _images(40).to(torch.int8)
    train_epoch(model, opt, x, torch.arange(40) % 4, 10, np.arange(40), bf16=False)
    filters = {id(model.convs[1].inner.weight)}
    for p, old in zip(model.parameters(), before):
        assert torch.equal(p, old) == (id(p) in filters)


def test_main_trains_and_records_the_probes(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(60, 8, 8), dtype=np.uint8)
    y = np.arange(60) % 3
    path = tmp_path / "d.npz"
    np.savez(path, x_train=x[:40], y_train=y[:40], x_test=x[40:], y_test=y[40:])
    out = tmp_path / "run"
    assert qat_conv.main(["--dataset", f"npz:{path}", "--conv", "4:3:1:1,4:3:1:1", "--hidden", "16", "--pool", "1",
                          "--float", "--freeze-conv", "--epochs", "2", "--threads", "1", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["pool"] == [1] and res["float"] is True and res["freeze_conv"] == [0, 1] and len(res["epochs"]) == 2
    assert 0.0 <= res["test_accuracy"] <= 1.0


@pytest.mark.parametrize("args, words", [
    (["--pool", "2"], "--pool '2'"),
    (["--pool", "0,0"], "distinct"),
    (["--pool", "0,00"], "distinct"),
    (["--pool", "-1"], "--pool '-1'"),
    (["--pool", "\u00b2"], "--pool takes comma-separated"),
    (["--conv", "4:3:2:0,4:3:2:0,4:3:2:0", "--pool", "0,1"], "leaves a 0 x 0 map"),
    (["--conv", "4:3:0:1"], "positive channels, kernel and stride"),
    (["--conv", "0:3:1:1"], "positive channels, kernel and stride"),
    (["--epochs", "0"], "must be positive"),
    (["--freeze-conv", "0,2"], "--freeze-conv '0,2'"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, words):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(20, 8, 8), dtype=np.uint8)
    path = tmp_path / "d.npz"
    np.savez(path, x_train=x, y_train=np.arange(20) % 2, x_test=x, y_test=np.arange(20) % 2)
    base = ["--dataset", f"npz:{path}", "--conv", "4:3:1:1,4:3:1:1", "--epochs", "1", "--out", str(tmp_path / "o")]
    assert qat_conv.main([*base, *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0]
