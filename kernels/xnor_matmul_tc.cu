// +-1 matrix product on the b1 tensor cores (sm_80+): out[m, n] = k - 2 popc(a[m] ^ b[n]) (docs/ALGORITHM.md section 1),
// bit-identical to xnor_matmul (xnor_matmul.cu), optionally also writing the packed signs (and gate bits) of out
// or adding the product to out. Main loop: tc_gemm.cuh (128 x 128 block tile, cp.async ring, ldmatrix);
// out = k - 2 popc(a) - 2 popc(b) + 4 popc(a & b) (XOR via AND, profiling/README.md), with pops = the row popcounts
// of a (M) then b (N), bits past k ignored (row_popcounts.cu).
#include "tc_gemm.cuh"

// SIGN: also write the packed signs of out; GATE (with SIGN): also the packed gate bits |out| <= thr; ADD: add
// the product to what out holds (in place, wrapping like NumPy's int32 +=).
// DUAL: a second product of A2 (M x kw2) and B2 (N x kw2) over k2 bits into the same tile, z = both products'
// sum (a recurrent step's input and state products), pops then holding popc(a) + popc(a2) per row of out and
// popc(b) + popc(b2) per column (row_popcounts_pair).
template <bool SIGN, bool GATE, bool ADD, bool DUAL = false>
__device__ __forceinline__ void xnor_tc(const u64* __restrict__ A, const u64* __restrict__ B, int* __restrict__ out,
                                        u64* __restrict__ sign, u64* __restrict__ gate, const u32* __restrict__ pops,
                                        int M, int N, int kw, int k, int thr, const u64* __restrict__ A2 = nullptr,
                                        const u64* __restrict__ B2 = nullptr, int kw2 = 0, int k2 = 0) {
    __shared__ u32 sHalf[SIGN ? 4 * BEP_TCG_SIDE_ROWS : 1];
    __shared__ u32 sHalfG[GATE ? 4 * BEP_TCG_SIDE_ROWS : 1];
    TcTile<false> tile;
    tc_gemm<false>(A, nullptr, B, M, N, kw, k, tile);
    if (DUAL) {
        __syncthreads();  // every warp is done with the ring the second product refills
        tc_gemm<false, true>(A2, nullptr, B2, M, N, kw2, k2, tile);
    }
    const int m0 = blockIdx.y * TcTile<false>::BM, n0 = blockIdx.x * BEP_TCG_BN;
    // acc becomes z (as int bits) for every output; the bit masks below ignore those outside M x N.
    tc_for_each<false>([&](int rl, int cl, int i, int j, int r) {
        const int m = m0 + rl, n = n0 + cl;
        const bool in = m < M && n < N;
        const u32 pa = m < M ? pops[m] : 0u, pb = n < N ? pops[M + n] : 0u;
        const int z = (int)((u32)k + (u32)k2 - 2u * (pa + pb) + 4u * (u32)tile.acc[0][i][j][r] +
                            (ADD && in ? (u32)out[(i64)m * N + n] : 0u));
        if (in) out[(i64)m * N + n] = z;
        tile.acc[0][i][j][r] = z;
    });
    if (SIGN) tc_store_bits<false>(sign, M, N, sHalf, [&](int, int, int i, int j, int r) { return tile.acc[0][i][j][r] >= 0; });
    if (GATE) {
        tc_store_bits<false>(gate, M, N, sHalfG, [&](int, int, int i, int j, int r) {
            const int z = tile.acc[0][i][j][r];  // |z| <= k < 2^31: no overflow
            return (z < 0 ? -z : z) <= thr;
        });
    }
}

// NumPy mirror: NumpyBackend.xnor_matmul in bep_gpu/backends/numpy_backend.py
// Grid (ceil(N / 128), ceil(M / 128)), block 256, dynamic shared memory BEP_TCG_SMEM. a: M x kw, b: N x kw
// words; pops: M + N row popcounts; out: int32 M x N. sm_80+.
extern "C" __global__ void __launch_bounds__(BEP_TCG_THREADS, 2)
    xnor_matmul_tc(const u64* __restrict__ a, const u64* __restrict__ b, int* __restrict__ out,
                   const u32* __restrict__ pops, int M, int N, int kw, int k) {
    xnor_tc<false, false, false>(a, b, out, nullptr, nullptr, pops, M, N, kw, k, 0);
}

// NumPy mirror: Backend.xnor_matmul_sign in bep_gpu/backends/base.py (xnor_matmul, then pack)
// As xnor_matmul_tc, and sign: M x n_words(N) words, bit n of row m = out[m, n] >= 0 (padding bits 0).
extern "C" __global__ void __launch_bounds__(BEP_TCG_THREADS, 2)
    xnor_matmul_sign_tc(const u64* __restrict__ a, const u64* __restrict__ b, int* __restrict__ out,
                        u64* __restrict__ sign, const u32* __restrict__ pops, int M, int N, int kw, int k) {
    xnor_tc<true, false, false>(a, b, out, sign, nullptr, pops, M, N, kw, k, 0);
}

// NumPy mirror: Backend.xnor_matmul_sign in bep_gpu/backends/base.py with add (add += xnor_matmul, then pack)
// As xnor_matmul_sign_tc, with out read first: out (in place) = out + the product.
extern "C" __global__ void __launch_bounds__(BEP_TCG_THREADS, 2)
    xnor_matmul_sign_add_tc(const u64* __restrict__ a, const u64* __restrict__ b, int* __restrict__ out,
                            u64* __restrict__ sign, const u32* __restrict__ pops, int M, int N, int kw, int k) {
    xnor_tc<true, false, true>(a, b, out, sign, nullptr, pops, M, N, kw, k, 0);
}

// NumPy mirror: Backend.xnor_matmul_sign in bep_gpu/backends/base.py with gate (xnor_matmul, pack, gate_pack)
// As xnor_matmul_sign_tc, and gate: M x n_words(N) words of |out| <= thr.
extern "C" __global__ void __launch_bounds__(BEP_TCG_THREADS, 2)
    xnor_matmul_sign_gate_tc(const u64* __restrict__ a, const u64* __restrict__ b, int* __restrict__ out,
                             u64* __restrict__ sign, u64* __restrict__ gate, const u32* __restrict__ pops, int M,
                             int N, int kw, int k, int thr) {
    xnor_tc<true, true, false>(a, b, out, sign, gate, pops, M, N, kw, k, thr);
}

// NumPy mirror: Backend.sign_recurrence in bep_gpu/backends/base.py (one step: xnor_matmul + xnor_matmul, pack)
// One step of a sign recurrence on the tensor cores: out = xnor(a, b, k) + xnor(a2, b2, k2), sign = its packed
// signs; pops: M + N sums of row popcounts (row_popcounts_pair). Grid as xnor_matmul_tc. sm_80+.
extern "C" __global__ void __launch_bounds__(BEP_TCG_THREADS, 2)
    xnor_matmul2_sign_tc(const u64* __restrict__ a, const u64* __restrict__ b, const u64* __restrict__ a2,
                         const u64* __restrict__ b2, int* __restrict__ out, u64* __restrict__ sign,
                         const u32* __restrict__ pops, int M, int N, int kw, int k, int kw2, int k2) {
    xnor_tc<true, false, false, true>(a, b, out, sign, nullptr, pops, M, N, kw, k, 0, a2, b2, kw2, k2);
}

// NumPy mirror: Backend.sign_recurrence in bep_gpu/backends/base.py with gate (the step, then gate_pack)
// As xnor_matmul2_sign_tc, and gate: M x n_words(N) words of |out| <= thr.
extern "C" __global__ void __launch_bounds__(BEP_TCG_THREADS, 2)
    xnor_matmul2_sign_gate_tc(const u64* __restrict__ a, const u64* __restrict__ b, const u64* __restrict__ a2,
                              const u64* __restrict__ b2, int* __restrict__ out, u64* __restrict__ sign,
                              u64* __restrict__ gate, const u32* __restrict__ pops, int M, int N, int kw, int k,
                              int kw2, int k2, int thr) {
    xnor_tc<true, true, false, true>(a, b, out, sign, gate, pops, M, N, kw, k, thr, a2, b2, kw2, k2);
}
