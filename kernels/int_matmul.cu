// Integer product of +-1 bits with int16 hidden weights (the "hidden" stability score of docs/ALGORITHM.md section 4.4):
// out[n, k] = sum_j (2 bit(x[n], j) - 1) h[k, j], exact in int32 (|out| <= 32768 J; the launcher admits J <= 65535).
// A 256-thread block owns a 64 (n) x 64 (k) tile, 4 x 4 per thread (rows ty + 16 i, columns tx + 16 j); J
// advances one x word (64 columns of h) at a time: the 64 x words and a 64 x 64 block of h, stored transposed
// as int32 with a padded row (stride 65: conflict-free stores and broadcast/consecutive loads), sit in shared
// memory.
#include "bep_common.cuh"

#define BEP_IM_TILE 64

// NumPy mirror: NumpyBackend.int_matmul in bep_gpu/backends/numpy_backend.py
// Grid (ceil(K / 64), ceil(N / 64)), block 256. x: N x nwj words; h: int16 K x J; out: int32 N x K.
extern "C" __global__ void __launch_bounds__(256)
    int_matmul(const u64* __restrict__ x, const short* __restrict__ h, int* __restrict__ out, int N, int K, int J) {
    __shared__ u64 sx[BEP_IM_TILE];
    __shared__ int sh[BEP_IM_TILE][BEP_IM_TILE + 1];
    const int nwj = (J + 63) >> 6;
    const int t = threadIdx.x, tx = t & 15, ty = t >> 4;
    const int n0 = blockIdx.y * BEP_IM_TILE, k0 = blockIdx.x * BEP_IM_TILE;
    int acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = 0;
    for (int s = 0; s < nwj; ++s) {
        if (t < BEP_IM_TILE) {
            const int n = n0 + t;
            sx[t] = n < N ? x[(i64)n * nwj + s] : 0ull;
        }
        // Element e = t + 256 q is h[k0 + e / 64, 64 s + e % 64]: a warp reads 64 contiguous bytes of a row.
#pragma unroll
        for (int q = 0; q < (BEP_IM_TILE * BEP_IM_TILE) / 256; ++q) {
            const int e = t + 256 * q, kk = e >> 6, jj = e & 63;
            const int k = k0 + kk, c = s * 64 + jj;
            sh[jj][kk] = (k < K && c < J) ? (int)h[(i64)k * J + c] : 0;  // padding columns: weight 0
        }
        __syncthreads();
        u64 xr[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) xr[i] = sx[ty + 16 * i];
#pragma unroll 8
        for (int jj = 0; jj < 64; ++jj) {
            int hv[4];
#pragma unroll
            for (int j = 0; j < 4; ++j) hv[j] = sh[jj][tx + 16 * j];
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const bool plus = (xr[i] >> jj) & 1ull;
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] += plus ? hv[j] : -hv[j];
            }
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int n = n0 + ty + 16 * i;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int k = k0 + tx + 16 * j;
            if (n < N && k < K) out[(i64)n * K + k] = acc[i][j];
        }
    }
}
