// +-1 matrix product on packed bits: out[m, n] = k - 2 popc(a[m] ^ b[n]) (BEP_SPEC.md section 1).
// Tiling: see popc_tile.cuh (64 x 64 block tile, 256 threads, 4 x 4 per thread, 8-word K slabs).
#include "popc_tile.cuh"

// NumPy mirror: NumpyBackend.xnor_matmul in bep_gpu/backends/numpy_backend.py
// Grid (ceil(N / 64), ceil(M / 64)), block 256. a: M x kw, b: N x kw words; out: int32 M x N.
// Four resident blocks per SM (<= 64 registers) keep enough warps in flight to hide shared-memory latency.
extern "C" __global__ void __launch_bounds__(BEP_TILE_THREADS, 4)
    xnor_matmul(const u64* __restrict__ a, const u64* __restrict__ b, int* __restrict__ out, int M, int N, int kw,
                int k) {
    const int m0 = blockIdx.y * BEP_TILE, n0 = blockIdx.x * BEP_TILE;
    u32 acc[4][4], gcnt[4];
    const u64 last_mask = (k & 63) ? (1ull << (k & 63)) - 1 : ~0ull;
    popc_tile<false>(a, a, b, M, N, kw, m0, n0, last_mask, acc, gcnt);
    tile_outputs(M, N, m0, n0, [&](int i, int j, int m, int n) { out[(i64)m * N + n] = k - 2 * (int)acc[i][j]; });
}

// NumPy mirror: Backend.xnor_matmul_sign in bep_gpu/backends/base.py (xnor_matmul, then pack)
// As xnor_matmul, and sign: M x n_words(N) words, bit n of row m = out[m, n] >= 0 (padding bits 0). A block's 64
// columns are exactly one sign word, so the forward pass gets the next layer's input without a pack launch.
extern "C" __global__ void __launch_bounds__(BEP_TILE_THREADS, 4)
    xnor_matmul_sign(const u64* __restrict__ a, const u64* __restrict__ b, int* __restrict__ out,
                     u64* __restrict__ sign, int M, int N, int kw, int k) {
    const int m0 = blockIdx.y * BEP_TILE, n0 = blockIdx.x * BEP_TILE;
    u32 acc[4][4], gcnt[4];
    const u64 last_mask = (k & 63) ? (1ull << (k & 63)) - 1 : ~0ull;
    popc_tile<false>(a, a, b, M, N, kw, m0, n0, last_mask, acc, gcnt);
    const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
    bool bit[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int m = m0 + ty + 16 * i;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int n = n0 + tx + 16 * j, z = k - 2 * (int)acc[i][j];
            if (m < M && n < N) out[(i64)m * N + n] = z;
            bit[i][j] = n < N && z >= 0;  // sign(0) = +1
        }
    }
    popc_tile_store_bits(bit, sign, M, gridDim.x, m0, blockIdx.x);
}
