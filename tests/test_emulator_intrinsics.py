"""The CPU emulator's own instructions (tests/emu/cuda_emu.h) against hand-written expectations: fibers (barriers,
deadlock detection), cp.async (zero fill, commit/wait groups, copies land only when waited for), ldmatrix
(.x1/.x2/.x4, the b16 8x8 layout) and dynamic shared memory. The kernels rely on these exactly as on a device."""
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import needs_emulator

pytestmark = needs_emulator

_SRC = textwrap.dedent(
    """
    #include "async_copy.cuh"
    // NumPy mirror: none (emulator self-test). Thread t copies 16-byte unit t of src (valid bytes: nbytes[t])
    // into dynamic shared memory in two groups (units < 32, then the rest), reads its unit before and after
    // waiting for the first group only, then for all.
    extern "C" __global__ void async_probe(const u64* src, const int* nbytes, u64* before, u64* mid, u64* after) {
        unsigned char* smem = bep_dynamic_smem();
        const int t = threadIdx.x;
        u64* s = reinterpret_cast<u64*>(smem);
        s[2 * t] = s[2 * t + 1] = 0x1111111111111111ull;
        __syncthreads();
        const int grp = t >= 32;
        if (grp == 0) bep_cp_async16(s + 2 * t, src + 2 * t, nbytes[t]);
        bep_cp_async_commit();
        if (grp == 1) {
            bep_cp_async8(s + 2 * t, src + 2 * t, nbytes[t] < 8 ? nbytes[t] : 8);
            bep_cp_async8(s + 2 * t + 1, src + 2 * t + 1, nbytes[t] > 8 ? nbytes[t] - 8 : 0);
        }
        bep_cp_async_commit();
        before[2 * t] = s[2 * t];
        before[2 * t + 1] = s[2 * t + 1];
        bep_cp_async_wait<1>();
        mid[2 * t] = s[2 * t];
        mid[2 * t + 1] = s[2 * t + 1];
        bep_cp_async_wait<0>();
        after[2 * t] = s[2 * t];
        after[2 * t + 1] = s[2 * t + 1];
    }
    // NumPy mirror: none (emulator self-test). One warp: lane l gives row address rows[l] (a 16-byte row index into
    // the 64 x 16-byte table); out[l] holds the x1, x2 and x4 results (7 words per lane).
    extern "C" __global__ void ldmatrix_probe(const u32* table, const int* rows, u32* out) {
        __shared__ __attribute__((aligned(16))) u32 s[64 * 4];
        for (int i = threadIdx.x; i < 64 * 4; i += 32) s[i] = table[i];
        __syncthreads();
        const u32* row = s + 4 * rows[threadIdx.x];
        u32 r1[1], r2[2], r4[4];
        bep_ldmatrix(r1, row);
        bep_ldmatrix(r2, row);
        bep_ldmatrix(r4, row);
        u32* o = out + 7 * threadIdx.x;
        o[0] = r1[0];
        o[1] = r2[0];
        o[2] = r2[1];
        for (int i = 0; i < 4; ++i) o[3 + i] = r4[i];
    }
    // NumPy mirror: none (emulator self-test). Each thread publishes stamp + t in shared memory and reads its
    // neighbour's, with or without the barrier between that a GPU needs.
    extern "C" __global__ void neighbour(int* out, int stamp, int sync) {
        __shared__ int s[64];
        s[threadIdx.x] = stamp + threadIdx.x;
        if (sync) __syncthreads();
        out[threadIdx.x] = s[threadIdx.x ^ 1];
    }
    // NumPy mirror: none (emulator self-test). Threads below `split` take one more barrier than the others.
    extern "C" __global__ void divergent_barrier(int split) {
        if ((int)threadIdx.x < split) __syncthreads();
        __syncthreads();
    }
    """
)


@pytest.fixture(scope="module")
def module(tmp_path_factory):
    from emu import EmuModule

    src = tmp_path_factory.mktemp("intrinsics") / "intrinsics.cu"
    src.write_text(_SRC)
    return EmuModule([src])


def test_cp_async_zero_fill_and_groups(module):
    gen = np.random.default_rng(0)
    n = 64
    src = gen.integers(0, 2**64, size=2 * n, dtype=np.uint64)
    nbytes = np.where(np.arange(n) >= 32, gen.choice([0, 3, 8, 11, 16], size=n),
                      gen.choice([0, 5, 16], size=n)).astype(np.int32)
    before, mid, after = (np.zeros(2 * n, np.uint64) for _ in range(3))
    module.get_function("async_probe")((1,), (n,), (src, nbytes, before, mid, after), shared_mem=16 * n)
    want = np.zeros((n, 16), np.uint8)
    raw = src.view(np.uint8).reshape(n, 16)
    for t in range(n):
        want[t, :nbytes[t]] = raw[t, :nbytes[t]]
    want = want.reshape(-1).view(np.uint64)
    stale = np.full(2 * n, 0x1111111111111111, np.uint64)
    np.testing.assert_array_equal(before, stale)  # nothing lands before a wait
    first = np.repeat(np.arange(n) < 32, 2)
    np.testing.assert_array_equal(mid, np.where(first, want, stale))  # wait_group 1: the older group only
    np.testing.assert_array_equal(after, want)


def test_dynamic_shared_memory_limits(module):
    from emu.emulator import MAX_DYNAMIC_SMEM

    fn = module.get_function("divergent_barrier")
    with pytest.raises(ValueError, match="dynamic shared memory"):
        fn((1,), (32,), (np.int32(0),), shared_mem=MAX_DYNAMIC_SMEM + 1)
    fn((1,), (32,), (np.int32(0),), shared_mem=MAX_DYNAMIC_SMEM)


def test_ldmatrix_b16_layout(module):
    gen = np.random.default_rng(1)
    table = gen.integers(0, 2**32, size=64 * 4, dtype=np.uint32)
    rows = gen.permutation(64)[:32].astype(np.int32)
    out = np.zeros((32, 7), np.uint32)
    module.get_function("ldmatrix_probe")((1,), (32,), (table, rows, out.reshape(-1)))
    tab = table.reshape(64, 4)
    lane = np.arange(32)

    def matrix(i):  # lane l: word l % 4 of row l / 4 of matrix i, whose rows lanes 8 i .. 8 i + 7 address
        return tab[rows[8 * i + lane // 4], lane % 4]

    np.testing.assert_array_equal(out[:, 0], matrix(0))
    np.testing.assert_array_equal(out[:, 1:3], np.stack([matrix(0), matrix(1)], 1))
    np.testing.assert_array_equal(out[:, 3:7], np.stack([matrix(i) for i in range(4)], 1))


def test_divergent_barrier_fails_at_once(module):
    """Threads that disagree on __syncthreads abort the process with a message (a GPU would hang or misbehave);
    run in a child process, since the emulator aborts. The child rebuilds nothing: the library is cached."""
    module.get_function("divergent_barrier")((2,), (64,), (np.int32(0),))  # uniform: fine
    child = textwrap.dedent(
        f"""
        import sys, numpy as np
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from emu import EmuModule
        EmuModule([{str(module.paths[0])!r}]).get_function("divergent_barrier")((1,), (64,), (np.int32(40),))
        """
    )
    res = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert res.returncode != 0
    assert "barrier deadlock" in res.stderr, res.stderr


def test_a_missing_barrier_shows_up(module):
    """Without the barrier some thread reads its neighbour's slot before the neighbour wrote it (the emulator runs
    threads in turn between barriers); with it every read sees the new value."""
    fn = module.get_function("neighbour")
    want = 1000 + (np.arange(64) ^ 1)
    out = np.zeros(64, np.int32)
    fn((1,), (64,), (out, np.int32(1000), np.int32(1)))
    np.testing.assert_array_equal(out, want)
    fn((1,), (64,), (out, np.int32(2000), np.int32(0)))
    assert (out != want + 1000).any()
