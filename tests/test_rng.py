import numpy as np

from bep_gpu.rng import counter_uniform, mix_int, probability_threshold


def test_mix_matches_splitmix64_known_outputs():
    # SplitMix64 seeded with 0 yields mix(0), mix(golden), ... ; these are its published first outputs.
    assert mix_int(0) == 0xE220A8397B1DCDAF
    assert mix_int(0x9E3779B97F4A7C15) == 0x6E789E6AA1B965F4


def test_counter_uniform_is_uniform_enough():
    u = counter_uniform(3, 1, 5, 0, 200_000).astype(np.float64) / 2**32
    assert abs(u.mean() - 0.5) < 0.005
    assert abs((u < 0.1).mean() - 0.1) < 0.005


def test_probability_threshold():
    assert probability_threshold(0.0) == 0
    assert probability_threshold(1.0) == 2**32
    assert probability_threshold(0.5) == 2**31


def test_firing_indices_equal_the_threshold_test():
    from bep_gpu.rng import firing_indices

    n = (1 << 16) * 2 + 123  # crosses chunk boundaries
    for thr in (0, 1, 12345678, 2**31, 2**32 - 1, 2**32):
        expect = np.flatnonzero(counter_uniform(7, 1, 3, 2, n).astype(np.int64) < thr)
        assert np.array_equal(firing_indices(7, 1, 3, 2, n, thr), expect)
    assert firing_indices(7, 1, 3, 2, 0, 2**31).size == 0
