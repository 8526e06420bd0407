// Packed im2col of an NHWC bit map (channels are the bit axis) for a binary convolution: each output row is one
// patch, bit (i * kw + j) * c + ch = bit ch of input position (y * stride + i - pad, x * stride + j - pad), and
// positions outside the map read bit 1 (padding value +1). A conv forward is then xnor_matmul on these rows.
// One warp builds one output word with two ballots, as pack.cu does.
#include "bep_common.cuh"

// NumPy mirror: Backend.im2col in bep_gpu/backends/base.py
// Grid-stride over warps, block 256. x: (N, H, W, nwc) words; out: (rows = N * ho * wo, nwo) words,
// nwo = n_words(kh * kw * c); every word is written (padding bits 0).
extern "C" __global__ void __launch_bounds__(256)
    im2col_bits(const u64* __restrict__ x, u64* __restrict__ out, i64 rows, int H, int W, int ho, int wo, int c,
                int kh, int kw, int stride, int pad, int nwc, int nwo) {
    const int lane = threadIdx.x & 31;
    const int F = kh * kw * c;
    const i64 total = rows * nwo;
    for (i64 wi = bep_global_warp(); wi < total; wi += bep_warp_count()) {
        const i64 r = wi / nwo;
        const int word = (int)(wi - r * nwo);
        const int xo = (int)(r % wo), yo = (int)((r / wo) % ho);
        const i64 n = r / ((i64)wo * ho);
        u32 half[2];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int f = word * 64 + 32 * h + lane;
            bool bit = false;
            if (f < F) {
                const int pi = f / c, ch = f - pi * c;
                const int yy = yo * stride + pi / kw - pad, xx = xo * stride + pi % kw - pad;
                bit = yy < 0 || yy >= H || xx < 0 || xx >= W ||
                      ((x[((n * H + yy) * W + xx) * nwc + (ch >> 6)] >> (ch & 63)) & 1ull);
            }
            half[h] = __ballot_sync(BEP_FULL_MASK, bit);
        }
        if (lane == 0) out[wi] = ((u64)half[1] << 32) | half[0];
    }
}
