"""Every integer rule of the algorithm pinned to literal values worked out by hand from the rules (or by the
hand-written references of dense_reference, which import nothing from bep_gpu): the rounding of the thresholds,
the trigger exactly at its margin, the counter RNG at non-zero seed, stream, step, layer and index, the
reinforcement move (h = 0 included), the error rate E across epochs and the group-size schedule. Backend
primitives run on every backend of the `bk` fixture."""
import csv
from types import SimpleNamespace

import numpy as np
import pytest

import dense_reference as ref
from bep_gpu import bep_rnn, bits
from bep_gpu.bep_mlp import StepRules, reinforcement_thresholds
from bep_gpu.config import TrainConfig, next_divisor
from bep_gpu.rng import counter_uniform, mix_int, rng_key
from bep_gpu.trainer import Trainer


# --- thresholds ------------------------------------------------------------------------------------------------
def test_step_rules_round_the_margin_up_and_the_gates_down():
    # r K_L = 0.75 * 35 = 26.25 -> 27; nu K = 0.3 * 45 = 13.5 -> 13, 0.3 * 65 = 19.5 -> 19 (fan-ins 45 and 65)
    rules = StepRules.make([45, 65, 35], r=0.75, nu=0.3, clip=99)
    assert (rules.trigger_margin, rules.gates, rules.clip) == (27, (13, 19), 99)
    assert StepRules.make([10, 7], r=0.5, nu=0.25, clip=1).trigger_margin == 4  # 3.5 -> 4


def test_rnn_rules_use_the_cell_fan_in_kx_plus_ks():
    # Kx = 20, Ks = 45, Ky = 35: cell gate floor(0.3 * 65) = 19, readout gate floor(0.3 * 45) = 13, margin 27
    rules = bep_rnn.step_rules([20, 45, 35], r=0.75, nu=0.3, clip=7)
    assert (rules.trigger_margin, rules.gates, rules.clip) == (27, (19, 13), 7)


def test_reinforcement_thresholds_literal():
    # floor(min(1, p_r sqrt(E) sqrt(2 / (pi K))) 2^32), worked out in float64
    assert reinforcement_thresholds([784, 45], 0.5, 0.25) == [30597215, 127712578]
    assert reinforcement_thresholds([525], 0.5, 0.1) == [23647774]
    assert reinforcement_thresholds([3], 2.0, 1.0) == [3957029527]  # p = 0.921...
    assert reinforcement_thresholds([2, 784], 4.0, 1.0) == [2**32, 489555442]  # p = min(1, 2.25...) = 1
    assert reinforcement_thresholds([784], 0.5, 0.0) == [0]  # E = 0: never
    for k, p_r, e in ((784, 0.5, 0.25), (45, 0.5, 0.25), (3, 2.0, 1.0), (2, 4.0, 1.0), (784, 4.0, 1.0)):
        assert reinforcement_thresholds([k], p_r, e) == [ref.reinforcement_threshold(k, p_r, e)]


def test_trigger_exactly_at_the_margin(bk):
    """Triggers iff y_c - max_{c' != c} y_c' < margin: a gap equal to the margin does not trigger."""
    margin = 4
    logits = np.array([[10, 6, 0],    # gap 4 = margin: no
                       [9, 6, 0],     # gap 3: yes
                       [5, 6, 6],     # label 0 loses by 1: yes, misclassified
                       [6, 6, 2],     # tie with class 0, label 1: gap 0, misclassified (argmax = lowest index)
                       [0, 4, 8]], np.int32)
    labels = np.array([0, 0, 0, 1, 2])
    counts, rows = bk.trigger(bk.asarray(logits), bk.asarray(labels), margin)
    assert bk.to_numpy(counts).tolist() == [2, 3]  # misclassified: rows 2, 3; triggered: rows 1, 2, 3
    assert (bk.to_numpy(rows)[:, 0] != 0).tolist() == [False, True, True, True, False]


def test_gate_exactly_at_the_threshold(bk):
    z = np.array([[-14, -13, 0, 13, 14, 12, -12, 1]], np.int32)
    got = bits.unpack_bits(bk.to_numpy(bk.gate_pack(bk.asarray(z), 13)), 8)
    assert got.tolist() == [[-1, 1, 1, 1, -1, 1, 1, 1]]  # |z| <= 13


# --- the counter RNG -----------------------------------------------------------------------------------------------
def test_rng_key_and_uniforms_literal():
    # SplitMix64 finaliser, written out in dense_reference; the literals were computed with it.
    assert mix_int(0) == ref.splitmix(0) == 0xE220A8397B1DCDAF
    assert rng_key(12345, 5, 77, 2) == ref.rng_key(12345, 5, 77, 2) == 0xCF01A396C5A6CD5D
    assert rng_key(7, 1, 2, 3) == 0x19EA39DD3E86F88E and rng_key(7, 1, 3, 2) == 0xE2145B2CBC5F50EA  # step, layer order


def test_counter_uniform_literal(bk):
    u = bk.to_numpy(bk.counter_uniform(12345, 5, 77, 2, 65538))
    assert u.dtype == np.uint32
    assert u[[0, 1, 2, 1000, 65537]].tolist() == [1960153893, 1086235571, 1534661490, 1176885894, 3082022930]
    assert u[[0, 1, 2, 1000, 65537]].tolist() == [ref.uniform(12345, 5, 77, 2, i) for i in (0, 1, 2, 1000, 65537)]
    assert counter_uniform(0, 1, 0, 0, 4).tolist() == [4188827187, 12836575, 32020642, 3258682454]
    assert counter_uniform(987654321, 1, 3, 1, 6).tolist() == [115586971, 3761129510, 871941513, 3461454409,
                                                                2995911781, 2151953764]


@pytest.mark.parametrize("device_step", [False, True])
def test_reinforce_literal(bk, device_step):
    """Key (seed 987654321, stream 1, step 3, layer 1): u = 115586971, 3761129510, 871941513, 3461454409,
    2995911781, 2151953764, so with threshold 3 * 2^30 entries 0, 2, 4 and 5 move: 0 -> +2 (sign(0) = +1),
    8 -> 10 clipped to 9, -6 -> -8, 3 -> 5. The step as a one-element device array is the CUDA graph's path."""
    h = bk.asarray(np.array([[0, -4, 8], [5, -6, 3]], np.int16))
    step = bk.asarray(np.array([3], np.int64)) if device_step else 3
    bk.reinforce(h, 3 * 2**30, 987654321, 1, step, 1, 9)
    assert bk.to_numpy(h).tolist() == [[2, -4, 9], [5, -8, 5]]


def test_reinforce_moves_every_entry_away_from_zero(bk):
    h = bk.asarray(np.array([[0, 1, -1, 8, -8, 9, -9, 2]], np.int16))
    bk.reinforce(h, 2**32, 1, 1, 1, 1, 9)  # p = 1: every entry
    assert bk.to_numpy(h).tolist() == [[2, 3, -3, 9, -9, 9, -9, 4]]
    h0 = bk.asarray(np.zeros((3, 70), np.int16))
    bk.reinforce(h0, 2**32, 1, 1, 1, 1, 32767)
    assert (bk.to_numpy(h0) == 2).all()  # h = 0 becomes +2, never -2


# --- epoch rules: E across epochs, the group-size schedule --------------------------------------------------------
def test_error_rate_of_the_previous_epoch_sets_the_next_thresholds(tmp_path):
    """E = 1 in epoch 0, then the fraction of the previous epoch's training samples that its steps misclassified,
    counted on each batch's pre-update state; thresholds and the metrics' reinforce_p0 follow it."""
    rng = np.random.default_rng(2)
    protos = rng.choice([-1, 1], size=(3, 60))
    y = rng.integers(0, 3, size=150)
    x = protos[y] * np.where(rng.random((150, 60)) < 0.35, -1, 1)
    np.savez(tmp_path / "d.npz", x_train=x[:120], y_train=y[:120], x_test=x[120:], y_test=y[120:])
    cfg = TrainConfig(dataset=f"npz:{tmp_path / 'd.npz'}", hidden=[15], gamma0=5, epochs=3, batch_size=16,
                      val_fraction=0.0, p_r=0.5, backend="numpy", out=str(tmp_path / "run"), quiet=True)
    trainer = Trainer(cfg)
    task, seen = trainer.task, []
    real_step = task.step

    def step(xb, yb, gammas, thresholds, i):
        wrong_before = int((task.predict(xb) != yb).sum())
        counts = real_step(xb, yb, gammas, thresholds, i)
        seen.append((i, list(thresholds), wrong_before, int(counts[0])))
        return counts

    task.step = step
    trainer.run()
    n, per_epoch = 120, 8  # 120 rows in batches of 16: 8 steps an epoch
    assert [s[0] for s in seen] == list(range(3 * per_epoch))
    assert all(s[2] == s[3] for s in seen)  # misclassified = counted before the step's update
    errors = [1.0] + [sum(s[3] for s in seen[e * per_epoch:(e + 1) * per_epoch]) / n for e in range(2)]
    assert 0 < errors[1] < 1 and errors[1] != errors[2]
    for e in range(3):
        want = [ref.reinforcement_threshold(k, 0.5, errors[e]) for k in (60,)]  # one layer: fan-in 60
        assert all(s[1] == want for s in seen[e * per_epoch:(e + 1) * per_epoch]), e
    with open(tmp_path / "run" / "metrics.csv", newline="") as f:
        p0 = [float(r["reinforce_p0"]) for r in csv.DictReader(f)]
    assert p0 == [float(f"{ref.reinforcement_threshold(60, 0.5, e) / 2**32:.6g}") for e in errors]


def test_next_divisor_literal():
    assert [next_divisor(60, g) for g in (1, 5, 6, 12, 30, 60)] == [2, 6, 10, 15, 60, 60]
    assert [next_divisor(45, g) for g in (1, 3, 5, 9, 15, 45)] == [3, 5, 9, 15, 45, 45]
    assert next_divisor(7, 1) == 7  # a prime jumps straight to the whole layer


def test_group_size_schedule_steps():
    """After `patience` epochs in a row without a strictly better score every gamma moves to its width's next
    divisor and the count restarts; patience 0 never moves."""
    def run(patience, scores, milestones=()):
        fake = SimpleNamespace(cfg=SimpleNamespace(patience=patience, gamma_milestones=list(milestones),
                                                   group_widths=lambda: [60, 45]),
                               state={"best_val": -1.0, "bad_epochs": 0, "gammas": [5, 5]})
        history = []
        for epoch, s in enumerate(scores, 1):
            Trainer._schedule(fake, s, 0.0, epoch)
            history.append(list(fake.state["gammas"]))
        return history, fake.state

    history, state = run(2, [0.5, 0.4, 0.5, 0.6, 0.6, 0.1, 0.7, 0.2, 0.2, 0.2, 0.2])
    assert history == [[5, 5], [5, 5], [6, 9], [6, 9], [6, 9], [10, 15], [10, 15], [10, 15], [12, 45], [12, 45],
                       [15, 45]]
    assert state["best_val"] == 0.7 and state["bad_epochs"] == 0
    assert run(0, [0.5, 0.1, 0.1, 0.1])[0][-1] == [5, 5]
    # fixed milestones replace the patience rule: growth after epochs 1 and 3 whatever the scores, none otherwise
    history, state = run(2, [0.5, 0.4, 0.3, 0.2, 0.1], milestones=[1, 3])
    assert history == [[6, 9], [6, 9], [10, 15], [10, 15], [10, 15]]
    assert state["best_val"] == 0.5


def test_flips_ranks_both_sides_of_an_even_fan_in_alike():
    """With an even fan-in z is even and sign(0) = +1: the wrong +1 unit at z = 0 and the wrong -1 unit at z = -2
    are both one input flip from flipping. |z| prefers the +1 unit; "flips" ties them (lowest index wins), and at
    an odd fan-in it ranks as |z| does."""
    from bep_gpu import get_backend, pack_bits
    from bep_gpu.bep_mlp import flip_rank

    bk = get_backend("numpy")
    z = np.array([[-2, 0, 4, -6]], dtype=np.int32)
    a = pack_bits(np.where(z >= 0, 1, -1))
    t = pack_bits(np.where(z >= 0, -1, 1))  # every unit wrong
    rows = np.array([[~np.uint64(0)]], dtype=np.uint64)

    def chosen(value):
        return int(np.flatnonzero(bits.unpack_bits(bk.select_wrong(value, a, t, rows, 4), 4)[0] > 0)[0])

    assert chosen(flip_rank(z, 784, "z")) == 1
    assert chosen(flip_rank(z, 784, "flips")) == 0
    assert np.array_equal(flip_rank(z, 785, "flips"), z)
