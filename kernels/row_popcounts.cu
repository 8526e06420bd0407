// Row popcounts for the tensor-core kernels (tc_gemm.cuh): their epilogues turn AND popcounts into XOR ones with
// them, counted once per operand here instead of once per block tile in the main loop.
#include "bep_common.cuh"

// Sum over the row's words of popc(x & y) (x, y: kw words per row), the last word AND-ed with last_mask.
__device__ __forceinline__ u32 bep_row_popc(const u64* __restrict__ x, const u64* __restrict__ y, i64 r, int kw,
                                            u64 last_mask) {
    u32 c = 0;
    for (int w = threadIdx.x & 31; w < kw; w += 32) {
        const u64 v = x[r * kw + w] & y[r * kw + w];
        c += __popcll(w == kw - 1 ? v & last_mask : v);
    }
#pragma unroll
    for (int d = 16; d; d >>= 1) c += __shfl_xor_sync(BEP_FULL_MASK, c, d);
    return c;
}

// NumPy mirror: bep_gpu.bits.row_popcounts (of x & y, then of z; bits past k ignored)
// out[r] = popc(x[r] & y[r]) for r < rows_x, out[rows_x + r] = popc(z[r]) for r < rows_z: one warp per row,
// grid-stride over warps, block 256. x & y with y = x is plain popc(x); the gated kernels pass t, g and g.
extern "C" __global__ void __launch_bounds__(256)
    row_popcounts(const u64* __restrict__ x, const u64* __restrict__ y, int rows_x, const u64* __restrict__ z,
                  int rows_z, int kw, u64 last_mask, u32* __restrict__ out) {
    for (i64 r = bep_global_warp(); r < (i64)rows_x + rows_z; r += bep_warp_count()) {
        const u32 c = r < rows_x ? bep_row_popc(x, y, r, kw, last_mask) : bep_row_popc(z, z, r - rows_x, kw, last_mask);
        if ((threadIdx.x & 31) == 0) out[r] = c;
    }
}

// NumPy mirror: bep_gpu.bits.row_popcounts (of a plus a2, then of b plus b2; bits past k and k2 ignored)
// The row counts of a two-product kernel (xnor_matmul2_sign_tc) in one launch: out[r] = popc(a[r]) + popc(a2[r])
// for r < rows_a, out[rows_a + r] = popc(b[r]) + popc(b2[r]) for r < rows_b; a, b: kw words per row, a2, b2: kw2,
// last words AND-ed with last and last2. One warp per row, grid-stride over warps, block 256.
extern "C" __global__ void __launch_bounds__(256)
    row_popcounts_pair(const u64* __restrict__ a, const u64* __restrict__ a2, int rows_a, const u64* __restrict__ b,
                       const u64* __restrict__ b2, int rows_b, int kw, int kw2, u64 last, u64 last2,
                       u32* __restrict__ out) {
    for (i64 r = bep_global_warp(); r < (i64)rows_a + rows_b; r += bep_warp_count()) {
        const bool in_a = r < rows_a;
        const i64 row = in_a ? r : r - rows_a;
        const u64 *x = in_a ? a : b, *x2 = in_a ? a2 : b2;
        const u32 c = bep_row_popc(x, x, row, kw, last) + bep_row_popc(x2, x2, row, kw2, last2);
        if ((threadIdx.x & 31) == 0) out[r] = c;
    }
}
