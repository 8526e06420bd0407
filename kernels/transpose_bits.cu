// Bit-matrix transpose: (n_rows, n_words(n_cols)) -> (n_cols, n_words(n_rows)), the same bits packed along the
// other axis (W^T for the target pass; batch-packed operands of the update).
// A 256-thread block moves a 64-row x 256-column tile: the 64 x 4 input words go through shared memory
// (one barrier), then thread t gathers column t's 64 bits into one output word. All threads of a warp read the
// same shared word at each step (a broadcast), so the gather has no bank conflicts.
#include "bep_common.cuh"

#define BEP_TR_ROWS 64
#define BEP_TR_WORDS 4  // input words per tile row: 4 x 64 = 256 columns, one per thread

// NumPy mirror: NumpyBackend.transpose_bits (bep_gpu.bits.transpose_bits) in bep_gpu/backends/numpy_backend.py
// Grid (n_words(n_rows), ceil(n_words(n_cols) / 4)), block 256.
extern "C" __global__ void __launch_bounds__(256)
    transpose_bits(const u64* __restrict__ in, u64* __restrict__ out, int n_rows, int n_cols) {
    __shared__ u64 tile[BEP_TR_ROWS][BEP_TR_WORDS + 1];
    const int nwc = (n_cols + 63) >> 6, nwr = gridDim.x;
    const int t = threadIdx.x;
    const int r0 = blockIdx.x * BEP_TR_ROWS, w0 = blockIdx.y * BEP_TR_WORDS;
    {
        const int r = r0 + (t >> 2), w = w0 + (t & 3);
        tile[t >> 2][t & 3] = (r < n_rows && w < nwc) ? in[(i64)r * nwc + w] : 0ull;  // rows past n_rows: padding 0
    }
    __syncthreads();
    const int col = w0 * 64 + t, word = t >> 6, bit = t & 63;
    if (col < n_cols) {
        u64 v = 0;
#pragma unroll 16
        for (int r = 0; r < BEP_TR_ROWS; ++r) v |= ((tile[r][word] >> bit) & 1ull) << r;
        out[(i64)col * nwr + blockIdx.x] = v;
    }
}
