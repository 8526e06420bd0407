// Targets of a conv layer's input (docs/CONV.md): per output position the gated transposed product as integers
// (gated_transposed_sum: one integer per patch bit), then col2im_sign sums, for each input position, the entries
// of every patch that reads it and takes one sign. Gathering (each output bit reads its own patch entries) keeps
// the sum order-free, so no atomics and no rounding questions.
#include "popc_tile.cuh"

// NumPy mirror: NumpyBackend.gated_transposed_sum in bep_gpu/backends/numpy_backend.py
// out[n, j] = popc(g[n]) - 2 popc((t[n] ^ wt[j]) & g[n]) (int32). Grid (ceil(J / 64), ceil(N / 64)), block 256.
extern "C" __global__ void __launch_bounds__(BEP_TILE_THREADS)
    gated_transposed_sum(const u64* __restrict__ t, const u64* __restrict__ g, const u64* __restrict__ wt,
                         int* __restrict__ out, int N, int J, int kw) {
    const int m0 = blockIdx.y * BEP_TILE, n0 = blockIdx.x * BEP_TILE;
    u32 acc[4][4], gcnt[4];
    popc_tile<true>(t, g, wt, N, J, kw, m0, n0, ~0ull, acc, gcnt);
    tile_outputs(N, J, m0, n0, [&](int i, int j, int r, int col) {
        out[(i64)r * J + col] = (int)gcnt[i] - 2 * (int)acc[i][j];
    });
}

// NumPy mirror: Backend.col2im_sign in bep_gpu/backends/base.py
// Grid-stride over warps, block 256. s: int32 (N, ho, wo, kh * kw * c); out: (rows = N * H * W, nwc) words.
extern "C" __global__ void __launch_bounds__(256)
    col2im_sign(const int* __restrict__ s, u64* __restrict__ out, i64 rows, int H, int W, int ho, int wo, int c,
                int kh, int kw, int stride, int pad, int nwc) {
    const int lane = threadIdx.x & 31;
    const i64 F = (i64)kh * kw * c;
    const i64 total = rows * nwc;
    for (i64 wi = bep_global_warp(); wi < total; wi += bep_warp_count()) {
        const i64 r = wi / nwc;
        const int word = (int)(wi - r * nwc);
        const int X = (int)(r % W), Y = (int)((r / W) % H);
        const i64 n = r / ((i64)W * H);
        u32 half[2];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int ch = word * 64 + 32 * h + lane;
            int sum = 0;
            if (ch < c) {
                for (int i = 0; i < kh; ++i) {
                    const int ty = Y + pad - i;
                    if (ty < 0 || ty % stride || ty / stride >= ho) continue;
                    for (int j = 0; j < kw; ++j) {
                        const int tx = X + pad - j;
                        if (tx < 0 || tx % stride || tx / stride >= wo) continue;
                        sum += s[((n * ho + ty / stride) * wo + tx / stride) * F + (i * kw + j) * c + ch];
                    }
                }
            }
            half[h] = __ballot_sync(BEP_FULL_MASK, ch < c && sum >= 0);
        }
        if (lane == 0) out[wi] = ((u64)half[1] << 32) | half[0];
    }
}
