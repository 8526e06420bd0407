// Shared main loop of the three popcount GEMMs (xnor_matmul, gated_transposed_product, batch_update).
// All operands are K-contiguous ("TN"): A and G are M x kw words, B is N x kw words, zero padded.
// A 256-thread block owns a 64 x 64 output tile; thread t owns rows ty + 16 i (ty = t / 16) and columns
// tx + 16 j (tx = t % 16), i, j < 4: a 4 x 4 register block. K advances in slabs of 8 words (512 bits) staged
// through double-buffered shared memory by cp.async, so one __syncthreads per slab; the next slab is in flight
// while the current one is consumed.
#pragma once
#include "async_copy.cuh"

#define BEP_TILE 64
#define BEP_SLAB 8
#define BEP_TILE_THREADS 256
// Staged words per thread and operand: 64 rows x 8 words / 256 threads.
#define BEP_STAGE ((BEP_TILE * BEP_SLAB) / BEP_TILE_THREADS)
// One word of padding per shared row spreads the transposed stores over banks.
#define BEP_SROW (BEP_TILE + 1)

// acc[i][j] = sum over words of popc((a ^ b) & g) and, when GATED, gcnt[i] = popc of the gate row: the masked
// +-1 dot product is then gcnt - 2 acc. The gate rows are counted once, from the words each thread stages (eight
// threads per row), not by every thread that reads them. Without a gate, both operands' last words are AND-ed with last_mask as
// they are fetched, so padding bits are ignored even if a caller left them set (NumPy's unpack ignores them too).
// The gated kernels pass ~0: their NumPy mirrors count full words and the zero gate padding masks them.
// accumulate: add to acc instead of starting from 0 (a second product into the same tile; a runtime flag, so
// both calls are one function with one set of staging buffers, and the caller puts a barrier between them).
template <bool GATED>
__device__ __forceinline__ void popc_tile(const u64* __restrict__ A, const u64* __restrict__ G,
                                          const u64* __restrict__ B, int M, int N, int kw, int m0, int n0,
                                          u64 last_mask, u32 (&acc)[4][4], u32 (&gcnt)[4],
                                          bool accumulate = false) {
    __shared__ u64 sA[2][BEP_SLAB][BEP_SROW];
    __shared__ u64 sG[2][GATED ? BEP_SLAB : 1][BEP_SROW];
    __shared__ u64 sB[2][BEP_SLAB][BEP_SROW];
    __shared__ u32 sGcnt[GATED ? BEP_TILE : 1];
    const int t = threadIdx.x, tx = t & 15, ty = t >> 4;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        gcnt[i] = 0;
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = accumulate ? acc[i][j] : 0u;
    }
    const int nslab = (kw + BEP_SLAB - 1) / BEP_SLAB;
    if (nslab == 0) return;  // uniform over the block: no barrier is skipped by part of it

    // Staging element e = t + 256 q sits at row e / 8, word e % 8: eight threads read one row's 64 bytes. The
    // next slab is copied by cp.async straight into the other buffer while this one is consumed (a prefetch the
    // compiler cannot sink, unlike a register one); words past kw and rows past M / N are zero-filled.
    u32 gpart[BEP_STAGE] = {};  // popc of the gate words this thread staged (rows t / 8 + 32 q)
    auto issue = [&](int k0, int buf) {
#pragma unroll
        for (int q = 0; q < BEP_STAGE; ++q) {
            const int e = t + BEP_TILE_THREADS * q, r = e >> 3, wl = e & 7, w = k0 + wl;
            const bool in_a = m0 + r < M && w < kw, in_b = n0 + r < N && w < kw;
            bep_cp_async8(&sA[buf][wl][r], in_a ? A + (i64)(m0 + r) * kw + w : A, in_a ? 8 : 0);
            if (GATED) bep_cp_async8(&sG[buf][GATED ? wl : 0][r], in_a ? G + (i64)(m0 + r) * kw + w : G, in_a ? 8 : 0);
            bep_cp_async8(&sB[buf][wl][r], in_b ? B + (i64)(n0 + r) * kw + w : B, in_b ? 8 : 0);
        }
        bep_cp_async_commit();
    };
    issue(0, 0);
    for (int s = 0; s < nslab; ++s) {
        const int buf = s & 1;
        bep_cp_async_wait<0>();
        __syncthreads();  // slab s visible to all; every thread is done with buffer buf ^ 1 (slab s - 1)
        if (s + 1 < nslab) issue((s + 1) * BEP_SLAB, buf ^ 1);
        if (!GATED && s == nslab - 1 && last_mask != ~0ull) {
            // Padding bits of the last word, ignored even if a caller left them set: clear them in place.
            const int lw = (kw - 1) % BEP_SLAB;
            if (t < BEP_TILE) sA[buf][lw][t] &= last_mask;
            else if (t < 2 * BEP_TILE) sB[buf][lw][t - BEP_TILE] &= last_mask;
            __syncthreads();
        }
        if (GATED) {
#pragma unroll
            for (int q = 0; q < BEP_STAGE; ++q) {
                const int e = t + BEP_TILE_THREADS * q;
                gpart[q] += __popcll(sG[buf][GATED ? e & 7 : 0][e >> 3]);
            }
        }
#pragma unroll
        for (int w = 0; w < BEP_SLAB; ++w) {
            u64 a[4], g[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                a[i] = sA[buf][w][ty + 16 * i];
                g[i] = GATED ? sG[buf][GATED ? w : 0][ty + 16 * i] : ~0ull;
                b[i] = sB[buf][w][tx + 16 * i];
            }
#pragma unroll
            for (int i = 0; i < 4; ++i) {
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] += __popcll((a[i] ^ b[j]) & g[i]);  // XOR form: one LOP3
            }
        }
    }
    if (GATED) {
        // The eight stagers of a row are adjacent lanes: reduce, publish, read back by output row.
#pragma unroll
        for (int q = 0; q < BEP_STAGE; ++q) {
            u32 c = gpart[q];
            c += __shfl_xor_sync(BEP_FULL_MASK, c, 1);
            c += __shfl_xor_sync(BEP_FULL_MASK, c, 2);
            c += __shfl_xor_sync(BEP_FULL_MASK, c, 4);
            if ((t & 7) == 0) sGcnt[(t >> 3) + 32 * q] = c;
        }
        __syncthreads();
#pragma unroll
        for (int i = 0; i < 4; ++i) gcnt[i] = sGcnt[ty + 16 * i];
    }
}

// Bit 4 i + j set where pred(i, j) holds for this thread's output (row ty + 16 i, column n0 + tx + 16 j) and the
// column is below N: a 4 x 4 block of bits in one register (padding columns 0), for popc_tile_store_bits.
template <class P>
__device__ __forceinline__ u32 tile_bits(int N, int n0, P pred) {
    const int tx = threadIdx.x & 15;
    u32 bits = 0;
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
            if (n0 + tx + 16 * j < N && pred(i, j)) bits |= 1u << (4 * i + j);
    return bits;
}

// Packs the bits of a 64 x 64 tile, bit 4 i + j of `bits` for row ty + 16 i and column tx + 16 j (the popc_tile
// thread layout), into one 64-bit word per row: out[row * nw + word] for rows m0 .. m0 + 63 below `rows`. Warp w
// holds rows 2w + 16 i (lanes 0-15) and 2w + 1 + 16 i (lanes 16-31); lane bit tx of a ballot is column tx + 16 j,
// so four ballots assemble a row's word.
__device__ __forceinline__ void popc_tile_store_bits(u32 bits, u64* __restrict__ out, int rows, int nw, int m0,
                                                     int word) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        u64 even = 0, odd = 0;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const u32 v = __ballot_sync(BEP_FULL_MASK, (bits >> (4 * i + j)) & 1u);
            even |= (u64)(v & 0xffffu) << (16 * j);
            odd |= (u64)(v >> 16) << (16 * j);
        }
        const int row = m0 + 2 * warp + 16 * i;
        if (lane == 0 && row < rows) out[(i64)row * nw + word] = even;
        if (lane == 1 && row + 1 < rows) out[(i64)(row + 1) * nw + word] = odd;
    }
}

// Calls f(i, j, row, col) for each in-range output of this thread's 4 x 4 register block of the tile at (m0, n0)
// of an M x N result: rows m0 + ty + 16 i, columns n0 + tx + 16 j, the layout every 64 x 64 tile kernel uses.
template <class F>
__device__ __forceinline__ void tile_outputs(int M, int N, int m0, int n0, F f) {
    const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int r = m0 + ty + 16 * i, c = n0 + tx + 16 * j;
            if (r < M && c < N) f(i, j, r, c);
        }
    }
}
