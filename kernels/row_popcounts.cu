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
