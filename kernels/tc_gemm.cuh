// Main loop of the b1 tensor-core kernels (forward product, gated transposed product, weight update), all on
// mma.m16n8k256 .and.popc (mma_b1.cuh) with the XOR / gated-XOR forms rewritten as AND popcounts:
//   plain:  popc(a ^ b)       = popc(a) + popc(b) - 2 popc(a & b)
//   gated:  popc((t ^ w) & g) = popc(t & g) + popc(g & w) - 2 popc((t & g) & w)
// so a plain tile is one mma per 16 x 8 x 256 step and a gated tile two (g.w and u.w with u = t & g formed on
// the fragment registers: AND is bitwise, so the fragments of t and g combine lane by lane).
//
// Block: 256 threads = 8 warps as 2 (M) x 4 (N); warp tile WM m16 tiles x 4 n8 tiles (WM x 16 x 32). Plain:
// WM = 4, block tile 128 x 128; gated: WM = 2, block tile 64 x 128 (its A side holds t and g). K advances in
// slabs of 1024 bits (16 words, 4 mma k-steps) through a 3-stage ring in dynamic shared memory filled by
// cp.async (16-byte copies, or 8-byte ones when a row pitch is not a multiple of 16 bytes), zero-filled past
// the rows and words of the operands, so any M, N, K work without padding. A slab row is 128 bytes = eight
// 16-byte units; unit u of row r sits at unit u ^ (r & 7) (XOR swizzle), so the eight rows an ldmatrix phase
// reads, and the eight units a cp.async phase writes, fall into distinct bank groups.
// Fragments come from ldmatrix: the b1 8x8 blocks of 32-bit chunks are ldmatrix's b16 8x8 layout.
// Row popcounts (popc(a), popc(b); popc(t & g), popc(g)) come from row_popcounts.cu, counted once per operand
// rather than once per block tile. The plain form masks bits past k in the last word in shared memory (callers
// may leave padding bits set); the gated form counts full words, as its NumPy mirrors do.
#pragma once
#include "async_copy.cuh"
#include "mma_b1.cuh"

#define BEP_TCG_THREADS 256
#define BEP_TCG_BN 128
#define BEP_TCG_SLAB_WORDS 16
#define BEP_TCG_ROW_BYTES 128
#define BEP_TCG_STAGES 3
#define BEP_TCG_SIDE_ROWS 128  // A side (a, or t and g) and B side: 128 slab rows each per stage
#define BEP_TCG_STAGE_BYTES (2 * BEP_TCG_SIDE_ROWS * BEP_TCG_ROW_BYTES)
// Dynamic shared memory of a launch (96 KB: above the 48 KB default, so the launcher opts in).
#define BEP_TCG_SMEM (BEP_TCG_STAGES * BEP_TCG_STAGE_BYTES)

template <bool GATED>
struct TcTile {
    static constexpr int WM = GATED ? 2 : 4;  // m16 tiles per warp
    static constexpr int BM = 2 * 16 * WM;    // block rows: 128 plain, 64 gated
    int acc[GATED ? 2 : 1][WM][4][4];         // [g.w, u.w] or [a.b]; [m16][n8][register]
};

// Byte offset of 16-byte unit u of slab row r.
__device__ __forceinline__ int bep_tcg_unit(int r, int u) { return r * BEP_TCG_ROW_BYTES + ((u ^ (r & 7)) << 4); }

// This thread's share of a stage's copies: units e = t + 256 i (i < 4) of each side, row e / 8 (= t / 8 + 32 i)
// and unit t % 8 of it, so a warp writes four whole 128-byte rows. The source offsets of those rows (in words,
// at slab 0; side rows below rows_first come from the first pointer, the rest from the second as rows
// row - rows_first) are fixed for the whole loop. Rows past the operand copy its last row instead: they only
// feed outputs past M or N, which are never stored (row popcounts come from row_popcounts.cu), so they need no
// zero fill and no per-row predicate. Operands stay below 2^31 words (backend).
__device__ __forceinline__ void bep_tcg_offsets(int (&off)[4], int rows_first, int rows, int r0, int kw) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int t = threadIdx.x, sr = (t >> 3) + 32 * i;
        const int r = r0 + (sr < rows_first ? sr : sr - rows_first);
        off[i] = min(r, rows - 1) * kw + 2 * (t & 7);
    }
}

// One side of slab `slab` into shared `side`: words past kw are zero-filled. WIDE: one 16-byte copy per unit
// (rows 16-byte aligned), else two 8-byte ones.
template <bool WIDE>
__device__ __forceinline__ void bep_tcg_fill(unsigned char* side, const u64* __restrict__ p0, const u64* __restrict__ p1,
                                             int rows_first, const int (&off)[4], int kw, int slab) {
    const int u = threadIdx.x & 7, w = slab * BEP_TCG_SLAB_WORDS + 2 * u;
    // Words of this unit inside the row, the same for all four rows; past kw the source stays at the row start
    // (a valid address, nothing read).
    const int words = min(max(kw - w, 0), 2);
    const int adv = words ? slab * BEP_TCG_SLAB_WORDS : 0, second = words > 1;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int sr = (threadIdx.x >> 3) + 32 * i;
        const u64* src = (sr < rows_first ? p0 : p1) + off[i] + adv;
        unsigned char* dst = side + bep_tcg_unit(sr, u);
        if (WIDE) {
            bep_cp_async16(dst, src, 8 * words);
        } else {
            bep_cp_async8(dst, src, words ? 8 : 0);
            bep_cp_async8(dst + 8, src + second, 8 * second);
        }
    }
}

// Plain: acc[0] += popc(A & B) per output. Gated (A = t, G = g): acc[0] += popc(g & b), acc[1] += popc(t & g & b).
template <bool GATED, bool WIDE>
__device__ __forceinline__ void tc_gemm_loop(const u64* __restrict__ A, const u64* __restrict__ G,
                                             const u64* __restrict__ B, int M, int N, int kw, int k,
                                             TcTile<GATED>& tile) {
    constexpr int WM = TcTile<GATED>::WM, BM = TcTile<GATED>::BM;
    constexpr int FIRST = GATED ? BM : BEP_TCG_SIDE_ROWS;  // A-side rows from A; the rest (gated) from G
    unsigned char* ring = bep_dynamic_smem();
    const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
    const int wm0 = (warp >> 2) * 16 * WM, wn0 = (warp & 3) * 32;
    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BEP_TCG_BN;
    const int nslab = (kw + BEP_TCG_SLAB_WORDS - 1) / BEP_TCG_SLAB_WORDS;  // >= 1: never launched with kw == 0
    int off_a[4], off_b[4];
    bep_tcg_offsets(off_a, FIRST, M, m0, kw);
    bep_tcg_offsets(off_b, BEP_TCG_SIDE_ROWS, N, n0, kw);
    const u64* A1 = GATED ? G : A;
    auto fill = [&](int slab) {
        unsigned char* st = ring + (slab % BEP_TCG_STAGES) * BEP_TCG_STAGE_BYTES;
        bep_tcg_fill<WIDE>(st, A, A1, FIRST, off_a, kw, slab);
        bep_tcg_fill<WIDE>(st + BEP_TCG_SIDE_ROWS * BEP_TCG_ROW_BYTES, B, B, BEP_TCG_SIDE_ROWS, off_b, kw, slab);
    };
#pragma unroll
    for (int s = 0; s < BEP_TCG_STAGES - 1; ++s) {
        if (s < nslab) fill(s);
        bep_cp_async_commit();  // empty groups keep the group count = slab count
    }
    // ldmatrix lane roles: matrix mi = lane / 8, row rr = lane % 8 of it. A (x4 per m16 tile): rows + 8 (mi & 1),
    // units 2 ks + (mi >> 1) -> a[0..3] of mma_b1.cuh. B (x4 per n8 pair): columns + 8 (mi >> 1), units
    // 2 ks + (mi & 1) -> b[0..1] of both tiles. Since row % 8 = rr and 2 ks is even, the swizzled unit is
    // (2 ks) ^ key with a per-lane key.
    const int mi = lane >> 3, rr = lane & 7;
    const int a_off = (wm0 + rr + 8 * (mi & 1)) * BEP_TCG_ROW_BYTES, a_key = (mi >> 1) ^ rr;
    const int b_off = (BEP_TCG_SIDE_ROWS + wn0 + rr + 8 * (mi >> 1)) * BEP_TCG_ROW_BYTES, b_key = (mi & 1) ^ rr;
    const u64 last_mask = (k & 63) ? (1ull << (k & 63)) - 1 : ~0ull;

    for (int s = 0; s < nslab; ++s) {
        bep_cp_async_wait<BEP_TCG_STAGES - 2>();
        __syncthreads();  // slab s visible to all; every warp is done with slab s - 1, whose slot is refilled now
        if (s + BEP_TCG_STAGES - 1 < nslab) fill(s + BEP_TCG_STAGES - 1);
        bep_cp_async_commit();
        unsigned char* st = ring + (s % BEP_TCG_STAGES) * BEP_TCG_STAGE_BYTES;
        const int kw_left = kw - s * BEP_TCG_SLAB_WORDS;
        if (!GATED && s == nslab - 1 && (k & 63)) {
            // Bits past k in the last word: one thread per slab row clears them before anything reads them.
            const int lw = kw_left - 1;
            u64* word = reinterpret_cast<u64*>(st + bep_tcg_unit(t, lw >> 1)) + (lw & 1);
            *word &= last_mask;
            __syncthreads();
        }
#pragma unroll
        for (int ks = 0; ks < BEP_TCG_SLAB_WORDS / 4; ++ks) {
            if (4 * ks >= kw_left) break;  // an all-padding k-step (uniform over the block)
            const unsigned char* pa = st + a_off + (((2 * ks) ^ a_key) << 4);
            const unsigned char* pb = st + b_off + (((2 * ks) ^ b_key) << 4);
            u32 bf[2][4];
#pragma unroll
            for (int jj = 0; jj < 2; ++jj) bep_ldmatrix(bf[jj], pb + 16 * jj * BEP_TCG_ROW_BYTES);
#pragma unroll
            for (int i = 0; i < WM; ++i) {
                u32 af[4];
                bep_ldmatrix(af, pa + 16 * i * BEP_TCG_ROW_BYTES);
                if constexpr (GATED) {
                    u32 gf[4];
                    bep_ldmatrix(gf, pa + (BM + 16 * i) * BEP_TCG_ROW_BYTES);
#pragma unroll
                    for (int r = 0; r < 4; ++r) af[r] &= gf[r];  // u = t & g
#pragma unroll
                    for (int j = 0; j < 4; ++j) {
                        const u32 b2[2] = {bf[j >> 1][2 * (j & 1)], bf[j >> 1][2 * (j & 1) + 1]};
                        bep_mma_b1_and_popc(tile.acc[0][i][j], gf, b2);
                        bep_mma_b1_and_popc(tile.acc[1][i][j], af, b2);
                    }
                } else {
#pragma unroll
                    for (int j = 0; j < 4; ++j) {
                        const u32 b2[2] = {bf[j >> 1][2 * (j & 1)], bf[j >> 1][2 * (j & 1) + 1]};
                        bep_mma_b1_and_popc(tile.acc[0][i][j], af, b2);
                    }
                }
            }
        }
    }
    bep_cp_async_wait<0>();  // only empty groups remain; nothing is left in flight at exit
}

// tc_gemm_loop with the copy width the operands allow: 16-byte copies need 16-byte aligned rows, i.e. an even
// word count and aligned bases (uniform over the grid). ACCUMULATE: add to the tile's accumulators (a second
// product into the same tile, after a barrier: the two share the ring) instead of starting from 0.
template <bool GATED, bool ACCUMULATE = false>
__device__ __forceinline__ void tc_gemm(const u64* __restrict__ A, const u64* __restrict__ G, const u64* __restrict__ B,
                                        int M, int N, int kw, int k, TcTile<GATED>& tile) {
#pragma unroll
    for (int s = 0; s < (GATED ? 2 : 1); ++s)
#pragma unroll
        for (int i = 0; i < TcTile<GATED>::WM; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j)
#pragma unroll
                for (int r = 0; r < 4; ++r) tile.acc[s][i][j][r] = ACCUMULATE ? tile.acc[s][i][j][r] : 0;
    const bool wide = !(kw & 1) && !(((unsigned long long)A | (unsigned long long)B |
                                      (unsigned long long)(GATED ? G : A)) & 15ull);
    if (wide) tc_gemm_loop<GATED, true>(A, G, B, M, N, kw, k, tile);
    else tc_gemm_loop<GATED, false>(A, G, B, M, N, kw, k, tile);
}

// Calls f(row, col, i, j, r) (block-local row and column) for accumulator register r of mma tile (i, j) of this
// lane: row wm0 + 16 i + g + 8 (r / 2), column wn0 + 8 j + 2 q + r % 2.
template <bool GATED, class F>
__device__ __forceinline__ void tc_for_each(F f) {
    constexpr int WM = TcTile<GATED>::WM;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, q = lane & 3;
    const int wm0 = (warp >> 2) * 16 * WM, wn0 = (warp & 3) * 32;
#pragma unroll
    for (int i = 0; i < WM; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int r = 0; r < 4; ++r) f(wm0 + 16 * i + g + 8 * (r >> 1), wn0 + 8 * j + 2 * q + (r & 1), i, j, r);
}

// Packs bit(row, col, i, j, r) (block-local row and column, as tc_for_each; columns >= N give 0) into the
// output words of the block: rows m0 .. m0 + BM - 1 below M, words 2 blockIdx.x, + 1 below nw. Each warp holds
// 32 columns of its rows: the lanes of a row group OR their bits, then the half-words meet in shared memory
// `half` (BM x 4 u32).
template <bool GATED, class Bit>
__device__ __forceinline__ void tc_store_bits(u64* __restrict__ out, int M, int N, u32* half, Bit bit) {
    constexpr int WM = TcTile<GATED>::WM, BM = TcTile<GATED>::BM;
    const int t = threadIdx.x, lane = t & 31, warp = t >> 5, g = lane >> 2, q = lane & 3;
    const int wm0 = (warp >> 2) * 16 * WM, wn0 = (warp & 3) * 32, n0 = blockIdx.x * BEP_TCG_BN;
    const int nw = (N + 63) >> 6;
#pragma unroll
    for (int i = 0; i < WM; ++i) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int row = wm0 + 16 * i + g + 8 * h;
            u32 bits = 0;
#pragma unroll
            for (int j = 0; j < 4; ++j)
#pragma unroll
                for (int c = 0; c < 2; ++c) {
                    const int col = wn0 + 8 * j + 2 * q + c;
                    bits |= (u32)(n0 + col < N && bit(row, col, i, j, 2 * h + c)) << (col - wn0);
                }
            bits |= __shfl_xor_sync(BEP_FULL_MASK, bits, 1);
            bits |= __shfl_xor_sync(BEP_FULL_MASK, bits, 2);
            if (q == 0) half[row * 4 + (warp & 3)] = bits;
        }
    }
    __syncthreads();
    const int m0 = blockIdx.y * BM;
    for (int e = t; e < 2 * BM; e += BEP_TCG_THREADS) {
        const int r = e >> 1, w = 2 * blockIdx.x + (e & 1);
        if (m0 + r < M && w < nw)
            out[(i64)(m0 + r) * nw + w] = (u64)half[4 * r + 2 * (e & 1)] | ((u64)half[4 * r + 2 * (e & 1) + 1] << 32);
    }
}

// The value of a gated output from the accumulators and row counts (pu = popc(t & g), pg = popc(g) of the row):
// sum over the gate of (+-1 t)(+-1 w) = popc(g) - 2 popc((t ^ w) & g), in uint32 arithmetic (exact: < 2^31).
__device__ __forceinline__ int bep_tcg_gated_value(u32 pu, u32 pg, int gw, int uw) {
    return (int)(pg - 2u * pu - 2u * (u32)gw + 4u * (u32)uw);
}
