// Masks of docs/ALGORITHM.md section 4.4: per row and contiguous group of gamma units, the candidate with the smallest
// score, lowest index on ties; nothing for a group without candidates. gamma need not be a multiple of 64, so a
// group may straddle words and several groups share a word: the output starts zeroed and selections are OR-ed in.
// Each group is reduced by `width` lanes (a power of two <= 32 chosen by the backend from gamma) with
// __shfl_xor_sync on a 64-bit key (biased score << 32 | unit index): the smallest key is the smallest score with
// the lowest index among equal scores, exactly NumPy's first argmin.
#include "bep_common.cuh"

// One group per `width` lanes; WRONG: candidates are the bits of (a ^ t) & rowm[row % mrows] and scores |score|
// (int32 wrapping like NumPy's abs), read straight from the step's arrays instead of from two prepared ones.
template <bool WRONG>
__device__ __forceinline__ void group_select_rows(const int* __restrict__ score, const u64* __restrict__ cand,
                                                  const u64* __restrict__ a, const u64* __restrict__ t,
                                                  const u64* __restrict__ rowm, i64 mrows, u64* __restrict__ out,
                                                  i64 rows, int K, int nw, int gamma, int width) {
    const int lane = threadIdx.x & 31, sub = lane & (width - 1);
    const int per_warp = 32 / width;
    const int groups = K / gamma;
    const i64 total = rows * groups;
    for (i64 base = bep_global_warp() * per_warp; base < total; base += bep_warp_count() * per_warp) {
        const i64 gi = base + lane / width;
        u64 best = ~0ull;
        i64 r = 0;
        int first = 0;
        if (gi < total) {
            r = gi / groups;
            first = (int)(gi - r * groups) * gamma;
            const int* srow = score + r * K;
            const i64 w0 = r * nw;
            const u64 rm = WRONG ? rowm[r % mrows] : ~0ull;
            for (int u = sub; u < gamma; u += width) {
                const int k = first + u;
                const u64 word = WRONG ? (a[w0 + (k >> 6)] ^ t[w0 + (k >> 6)]) & rm : cand[w0 + (k >> 6)];
                if ((word >> (k & 63)) & 1ull) {
                    const int v = srow[k];
                    const u32 s = WRONG && v < 0 ? 0u - (u32)v : (u32)v;  // |INT_MIN| stays INT_MIN, as in NumPy
                    // The bias maps int32 order onto unsigned order, so any int32 score ranks as in NumPy.
                    const u64 key = ((u64)(s ^ 0x80000000u) << 32) | (u32)u;
                    best = key < best ? key : best;
                }
            }
        }
        for (int off = width >> 1; off > 0; off >>= 1) {  // same trip count on every lane
            const u64 other = __shfl_xor_sync(BEP_FULL_MASK, best, off);
            best = other < best ? other : best;
        }
        if (sub == 0 && gi < total && best != ~0ull) {
            const int k = first + (int)(u32)best;
            atomicOr(&out[r * nw + (k >> 6)], 1ull << (k & 63));
        }
    }
}

// NumPy mirror: NumpyBackend.group_select in bep_gpu/backends/numpy_backend.py
// Grid-stride over warps (1-D grid, block 256). score: int32 rows x K; cand, out: rows x nw words (out zeroed).
extern "C" __global__ void __launch_bounds__(256)
    group_select(const int* __restrict__ score, const u64* __restrict__ cand, u64* __restrict__ out, i64 rows,
                 int K, int nw, int gamma, int width) {
    group_select_rows<false>(score, cand, nullptr, nullptr, nullptr, 1, out, rows, K, nw, gamma, width);
}

// NumPy mirror: Backend.select_wrong in bep_gpu/backends/base.py (group_select of |z| over (a ^ t) & row_mask)
// As group_select with z: int32 rows x K, a, t: rows x nw words, rowm: mrows words (mrows divides rows; row r
// reads rowm[r % mrows], as the time steps of a recurrent step share their sample's trigger).
extern "C" __global__ void __launch_bounds__(256)
    select_wrong(const int* __restrict__ z, const u64* __restrict__ a, const u64* __restrict__ t,
                 const u64* __restrict__ rowm, i64 mrows, u64* __restrict__ out, i64 rows, int K, int nw, int gamma,
                 int width) {
    group_select_rows<true>(z, nullptr, a, t, rowm, mrows, out, rows, K, nw, gamma, width);
}
