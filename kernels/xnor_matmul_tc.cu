// +-1 matrix product on the b1 tensor cores (sm_80+): out[m, n] = k - 2 popc(a[m] ^ b[n]) (docs/ALGORITHM.md section 1),
// bit-identical to xnor_matmul (xnor_matmul.cu), optionally also writing the packed signs of out.
//
// XOR via AND (profiling/README.md, "H200 ceilings"): with zero padding, popc(a ^ b) = popc(a) + popc(b) - 2 popc(a & b), so
//     out = k - 2 popc(a) - 2 popc(b) + 4 popc(a & b).
// popc(a & b) comes from mma.m16n8k256 ... .and.popc (mma_b1.cuh); the row popcounts popc(a), popc(b) are counted
// from the words as they are staged (each word is fetched once per block), independent of the fragment layout.
//
// Tiling: a 128-thread block (4 warps) owns a 64 x 64 output tile; warp w owns rows 32 (w / 2) .. + 32 and
// columns 32 (w % 2) .. + 32, i.e. 2 x 4 mma tiles of 16 x 8 (32 int32 accumulators per lane). K advances in
// slabs of 8 words (512 bits = two mma k-steps), double-buffered through shared memory like popc_tile.cuh: the
// next slab is fetched into registers while the current one feeds the tensor cores. Padding: words past kw and
// rows past M or N are staged as zeros and the bits past k in the last word are masked off at the fetch, so any
// K (1 bit upwards) and any M, N work without the caller padding anything; a k-step entirely past kw is skipped.
//
// Shared layout: a 256-bit k-step of a row is stored as four 64-bit "pairs", pair q = (chunk q, chunk q + 4)
// (chunk = 32 bits of K), because lane (g, q) needs exactly chunks q and q + 4 of a row (mma_b1.cuh): one 64-bit
// load per fragment row. Rows are 12 words (8 data + 4 padding, 96 bytes), which puts the 4 rows a half-warp reads
// into the 4 distinct 32-byte bank groups: conflict-free fragment loads.
#include "mma_b1.cuh"

#define BEP_TC_TILE 64
#define BEP_TC_THREADS 128
#define BEP_TC_SLAB 8
#define BEP_TC_SROW 12

__device__ __forceinline__ u64 bep_tc_word(const u64* __restrict__ p, int rows, int kw, int r, int w, u64 last_mask) {
    if (r >= rows || w >= kw) return 0ull;
    const u64 v = p[(i64)r * kw + w];
    return w == kw - 1 ? v & last_mask : v;  // padding bits are ignored even if a caller left them set
}

// SIGN: also write the packed signs of out; GATE (with SIGN): also the packed gate bits |out| <= thr; ADD: add
// the product to what out holds (in place, wrapping like NumPy's int32 +=).
template <bool SIGN, bool GATE, bool ADD>
__device__ __forceinline__ void xnor_tc(const u64* __restrict__ A, const u64* __restrict__ B, int* __restrict__ out,
                                        u64* __restrict__ sign, u64* __restrict__ gate, int M, int N, int kw, int k,
                                        int thr) {
    __shared__ u64 sA[2][BEP_TC_TILE][BEP_TC_SROW];
    __shared__ u64 sB[2][BEP_TC_TILE][BEP_TC_SROW];
    __shared__ u32 sPopA[BEP_TC_TILE], sPopB[BEP_TC_TILE];
    __shared__ u64 sSign[2][SIGN ? BEP_TC_TILE : 1];
    __shared__ u64 sGate[2][GATE ? BEP_TC_TILE : 1];
    const int t = threadIdx.x, lane = t & 31, warp = t >> 5, g = lane >> 2, q = lane & 3;
    const int wm = (warp >> 1) * 32, wn = (warp & 1) * 32;
    const int m0 = blockIdx.y * BEP_TC_TILE, n0 = blockIdx.x * BEP_TC_TILE;
    const u64 last_mask = (k & 63) ? (1ull << (k & 63)) - 1 : ~0ull;

    int acc[2][4][4];
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int r = 0; r < 4; ++r) acc[i][j][r] = 0;

    // Staging unit e = t + 128 u (u < 2): row e / 4, k-step (e / 2) % 2, word j = e % 2 of it together with word
    // j + 2, which hold chunks 2j, 2j + 1 and 2j + 4, 2j + 5: exactly pairs 2j and 2j + 1. Four threads cover a
    // row's 64 bytes. Rows of unit u are t / 4 + 32 u, so each thread keeps its rows' popcounts in registers.
    u64 ra[2][2], rb[2][2];
    u32 popa[2] = {0u, 0u}, popb[2] = {0u, 0u};
#define BEP_TC_FETCH(K0)                                                               \
    _Pragma("unroll") for (int u = 0; u < 2; ++u) {                                    \
        const int e = t + BEP_TC_THREADS * u, r = e >> 2;                              \
        const int w = (K0) + 4 * ((e >> 1) & 1) + (e & 1);                             \
        ra[u][0] = bep_tc_word(A, M, kw, m0 + r, w, last_mask);                        \
        ra[u][1] = bep_tc_word(A, M, kw, m0 + r, w + 2, last_mask);                    \
        rb[u][0] = bep_tc_word(B, N, kw, n0 + r, w, last_mask);                        \
        rb[u][1] = bep_tc_word(B, N, kw, n0 + r, w + 2, last_mask);                    \
        popa[u] += __popcll(ra[u][0]) + __popcll(ra[u][1]);                            \
        popb[u] += __popcll(rb[u][0]) + __popcll(rb[u][1]);                            \
    }
#define BEP_TC_STORE(BUF)                                                              \
    _Pragma("unroll") for (int u = 0; u < 2; ++u) {                                    \
        const int e = t + BEP_TC_THREADS * u, r = e >> 2;                              \
        const int p = 4 * ((e >> 1) & 1) + 2 * (e & 1);                                \
        sA[BUF][r][p] = (ra[u][0] & 0xffffffffull) | (ra[u][1] << 32);                 \
        sA[BUF][r][p + 1] = (ra[u][0] >> 32) | (ra[u][1] & 0xffffffff00000000ull);     \
        sB[BUF][r][p] = (rb[u][0] & 0xffffffffull) | (rb[u][1] << 32);                 \
        sB[BUF][r][p + 1] = (rb[u][0] >> 32) | (rb[u][1] & 0xffffffff00000000ull);     \
    }
    const int nslab = (kw + BEP_TC_SLAB - 1) / BEP_TC_SLAB;  // >= 1: the backend never launches kw == 0
    BEP_TC_FETCH(0)
    BEP_TC_STORE(0)
    __syncthreads();
    for (int s = 0; s < nslab; ++s) {
        const int buf = s & 1;
        const bool more = s + 1 < nslab;
        if (more) { BEP_TC_FETCH((s + 1) * BEP_TC_SLAB) }
#pragma unroll
        for (int ks = 0; ks < 2; ++ks) {
            if (s * BEP_TC_SLAB + 4 * ks >= kw) break;  // all-padding k-step (uniform over the block)
            u32 af[2][4], bf[4][2];
#pragma unroll
            for (int i = 0; i < 2; ++i) {
                const u64 lo = sA[buf][wm + 16 * i + g][4 * ks + q], hi = sA[buf][wm + 16 * i + g + 8][4 * ks + q];
                af[i][0] = (u32)lo;
                af[i][1] = (u32)hi;
                af[i][2] = (u32)(lo >> 32);
                af[i][3] = (u32)(hi >> 32);
            }
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const u64 v = sB[buf][wn + 8 * j + g][4 * ks + q];
                bf[j][0] = (u32)v;
                bf[j][1] = (u32)(v >> 32);
            }
#pragma unroll
            for (int i = 0; i < 2; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) bep_mma_b1_and_popc(acc[i][j], af[i], bf[j]);
        }
        // Buffer buf ^ 1 was last read before the previous barrier, so it can be refilled now.
        if (more) { BEP_TC_STORE(buf ^ 1) }
        __syncthreads();
    }
#undef BEP_TC_FETCH
#undef BEP_TC_STORE

    // Row popcounts: the four threads of a row hold its partial counts in adjacent lanes.
#pragma unroll
    for (int u = 0; u < 2; ++u) {
        popa[u] += __shfl_xor_sync(BEP_FULL_MASK, popa[u], 1);
        popa[u] += __shfl_xor_sync(BEP_FULL_MASK, popa[u], 2);
        popb[u] += __shfl_xor_sync(BEP_FULL_MASK, popb[u], 1);
        popb[u] += __shfl_xor_sync(BEP_FULL_MASK, popb[u], 2);
        if ((t & 3) == 0) {
            sPopA[(t >> 2) + 32 * u] = popa[u];
            sPopB[(t >> 2) + 32 * u] = popb[u];
        }
    }
    __syncthreads();

    // Epilogue: accumulator r of mma tile (i, j) is row wm + 16 i + g + 8 (r / 2), column wn + 8 j + 2 q + r % 2.
    // Arithmetic in uint32 so intermediate terms wrap exactly as the int32 result does.
#pragma unroll
    for (int i = 0; i < 2; ++i) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int rl = wm + 16 * i + g + 8 * h, m = m0 + rl;
            const u32 pa = sPopA[rl];
            u64 row_bits = 0, gate_bits = 0;
#pragma unroll
            for (int j = 0; j < 4; ++j) {
#pragma unroll
                for (int c = 0; c < 2; ++c) {
                    const int cl = wn + 8 * j + 2 * q + c, n = n0 + cl;
                    const bool in = m < M && n < N;
                    const int z = (int)((u32)k - 2u * (pa + sPopB[cl]) + 4u * (u32)acc[i][j][2 * h + c] +
                                        (ADD && in ? (u32)out[(i64)m * N + n] : 0u));
                    if (in) out[(i64)m * N + n] = z;
                    if (SIGN) row_bits |= (u64)(n < N && z >= 0) << cl;  // sign(0) = +1; padding bits 0
                    if (GATE) gate_bits |= (u64)(n < N && (z < 0 ? -z : z) <= thr) << cl;
                }
            }
            if (SIGN) {
                // The four lanes of a row group (adjacent lanes) hold disjoint columns: OR them together.
                row_bits |= __shfl_xor_sync(BEP_FULL_MASK, row_bits, 1);
                row_bits |= __shfl_xor_sync(BEP_FULL_MASK, row_bits, 2);
                if (q == 0) sSign[warp & 1][rl] = row_bits;
            }
            if (GATE) {
                gate_bits |= __shfl_xor_sync(BEP_FULL_MASK, gate_bits, 1);
                gate_bits |= __shfl_xor_sync(BEP_FULL_MASK, gate_bits, 2);
                if (q == 0) sGate[warp & 1][rl] = gate_bits;
            }
        }
    }
    if (SIGN) {
        // The block's 64 columns are exactly output word blockIdx.x; the two column warps fill its two halves.
        __syncthreads();
        if (t < BEP_TC_TILE && m0 + t < M) sign[(i64)(m0 + t) * gridDim.x + blockIdx.x] = sSign[0][t] | sSign[1][t];
        if (GATE && t < BEP_TC_TILE && m0 + t < M)
            gate[(i64)(m0 + t) * gridDim.x + blockIdx.x] = sGate[0][t] | sGate[1][t];
    }
}

// NumPy mirror: NumpyBackend.xnor_matmul in bep_gpu/backends/numpy_backend.py
// Grid (ceil(N / 64), ceil(M / 64)), block 128. a: M x kw, b: N x kw words; out: int32 M x N. sm_80+.
extern "C" __global__ void __launch_bounds__(BEP_TC_THREADS, 4)
    xnor_matmul_tc(const u64* __restrict__ a, const u64* __restrict__ b, int* __restrict__ out, int M, int N, int kw,
                   int k) {
    xnor_tc<false, false, false>(a, b, out, nullptr, nullptr, M, N, kw, k, 0);
}

// NumPy mirror: Backend.xnor_matmul_sign in bep_gpu/backends/base.py (xnor_matmul, then pack)
// As xnor_matmul_tc, and sign: M x n_words(N) words, bit n of row m = out[m, n] >= 0 (padding bits 0).
extern "C" __global__ void __launch_bounds__(BEP_TC_THREADS, 4)
    xnor_matmul_sign_tc(const u64* __restrict__ a, const u64* __restrict__ b, int* __restrict__ out,
                        u64* __restrict__ sign, int M, int N, int kw, int k) {
    xnor_tc<true, false, false>(a, b, out, sign, nullptr, M, N, kw, k, 0);
}

// NumPy mirror: Backend.xnor_matmul_sign in bep_gpu/backends/base.py with add (add += xnor_matmul, then pack)
// As xnor_matmul_sign_tc, with out read first: out (in place) = out + the product.
extern "C" __global__ void __launch_bounds__(BEP_TC_THREADS, 4)
    xnor_matmul_sign_add_tc(const u64* __restrict__ a, const u64* __restrict__ b, int* __restrict__ out,
                            u64* __restrict__ sign, int M, int N, int kw, int k) {
    xnor_tc<true, false, true>(a, b, out, sign, nullptr, M, N, kw, k, 0);
}

// NumPy mirror: Backend.xnor_matmul_sign in bep_gpu/backends/base.py with gate (xnor_matmul, pack, gate_pack)
// As xnor_matmul_sign_tc, and gate: M x n_words(N) words of |out| <= thr.
extern "C" __global__ void __launch_bounds__(BEP_TC_THREADS, 4)
    xnor_matmul_sign_gate_tc(const u64* __restrict__ a, const u64* __restrict__ b, int* __restrict__ out,
                             u64* __restrict__ sign, u64* __restrict__ gate, int M, int N, int kw, int k,
                             int thr) {
    xnor_tc<true, true, false>(a, b, out, sign, gate, M, N, kw, k, thr);
}
