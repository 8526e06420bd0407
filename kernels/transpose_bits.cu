// Bit-matrix transpose: (n_rows, n_words(n_cols)) -> (n_cols, n_words(n_rows)), the same bits packed along the
// other axis (W^T for the target pass; batch-packed operands of the update).
// A 256-thread block moves a 64-row x 256-column tile: the 64 x 4 input words go through shared memory
// (one barrier), then thread t gathers column t's 64 bits into one output word. All threads of a warp read the
// same shared word at each step (a broadcast), so the gather has no bank conflicts.
#include "bep_common.cuh"

#define BEP_TR_ROWS 64
#define BEP_TR_WORDS 4  // input words per tile row: 4 x 64 = 256 columns, one per thread

typedef u64 BepTrTile[BEP_TR_ROWS][BEP_TR_WORDS + 1];

// Rows r0 .. r0 + 63 and words w0 .. w0 + 3 of in (nwc words per row) into the tile; rows past n_rows and words
// past nwc read 0 (the padding of the output).
__device__ __forceinline__ void bep_tr_load(BepTrTile& tile, const u64* __restrict__ in, int n_rows, int nwc, int r0,
                                            int w0) {
    const int t = threadIdx.x, r = r0 + (t >> 2), w = w0 + (t & 3);
    tile[t >> 2][t & 3] = (r < n_rows && w < nwc) ? in[(i64)r * nwc + w] : 0ull;
}

// After a barrier: column threadIdx.x of the tile as one word (bit r = row r).
__device__ __forceinline__ u64 bep_tr_gather(const BepTrTile& tile) {
    const int t = threadIdx.x, word = t >> 6, bit = t & 63;
    u64 v = 0;
#pragma unroll 16
    for (int r = 0; r < BEP_TR_ROWS; ++r) v |= ((tile[r][word] >> bit) & 1ull) << r;
    return v;
}

// NumPy mirror: NumpyBackend.transpose_bits (bep_gpu.bits.transpose_bits) in bep_gpu/backends/numpy_backend.py
// Grid (n_words(n_rows), ceil(n_words(n_cols) / 4)), block 256.
extern "C" __global__ void __launch_bounds__(256)
    transpose_bits(const u64* __restrict__ in, u64* __restrict__ out, int n_rows, int n_cols) {
    __shared__ BepTrTile tile;
    const int w0 = blockIdx.y * BEP_TR_WORDS, col = w0 * 64 + threadIdx.x;
    bep_tr_load(tile, in, n_rows, (n_cols + 63) >> 6, blockIdx.x * BEP_TR_ROWS, w0);
    __syncthreads();
    if (col < n_cols) out[(i64)col * gridDim.x + blockIdx.x] = bep_tr_gather(tile);
}

// NumPy mirror: bep_gpu.bits.transpose_bits of sel, t and x; bep_gpu.bits.row_popcounts of selT & tT and of selT
// The weight update's batch-packed operands in one launch instead of three transposes (and a row_popcounts):
// selT, tT (K x n_words(N)) of sel, t (N x n_words(K)) and, unless J = 0, xT (J x n_words(N)) of x
// (N x n_words(J)). With count != 0 (the tensor-core update) it also adds popc(tT[k] & selT[k]) to pops[k] and
// popc(selT[k]) to pops[K + k] (pops: 2K uint32, zeroed by the caller; integer sums, exact in any order), so the
// row counts come from the words as they are made. Grid (n_words(N), ceil(n_words(K) / 4) + ceil(n_words(J) / 4)):
// the first column groups hold sel and t together (a thread has both words of its column), the rest x. Block 256.
extern "C" __global__ void __launch_bounds__(256)
    update_operands(const u64* __restrict__ sel, const u64* __restrict__ t, const u64* __restrict__ x,
                    u64* __restrict__ selT, u64* __restrict__ tT, u64* __restrict__ xT, int N, int K, int J,
                    int count, u32* __restrict__ pops) {
    __shared__ BepTrTile ts, tt;
    const int nwk = (K + 63) >> 6, gk = (nwk + BEP_TR_WORDS - 1) / BEP_TR_WORDS, nwn = gridDim.x;
    const int r0 = blockIdx.x * BEP_TR_ROWS;
    if ((int)blockIdx.y < gk) {  // uniform over the block: the barrier below is reached by every thread
        const int w0 = blockIdx.y * BEP_TR_WORDS, col = w0 * 64 + threadIdx.x;
        bep_tr_load(ts, sel, N, nwk, r0, w0);
        bep_tr_load(tt, t, N, nwk, r0, w0);
        __syncthreads();
        if (col < K) {
            const u64 s = bep_tr_gather(ts), v = bep_tr_gather(tt);
            selT[(i64)col * nwn + blockIdx.x] = s;
            tT[(i64)col * nwn + blockIdx.x] = v;
            if (count) {
                atomicAdd(&pops[col], (u32)__popcll(s & v));
                atomicAdd(&pops[K + col], (u32)__popcll(s));
            }
        }
    } else {
        const int w0 = (blockIdx.y - gk) * BEP_TR_WORDS, col = w0 * 64 + threadIdx.x;
        bep_tr_load(ts, x, N, (J + 63) >> 6, r0, w0);
        __syncthreads();
        if (col < J) xT[(i64)col * nwn + blockIdx.x] = bep_tr_gather(ts);
    }
}
