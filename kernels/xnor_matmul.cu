// +-1 matrix product on packed bits: out[m, n] = k - 2 popc(a[m] ^ b[n]) (docs/ALGORITHM.md section 1).
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

// As xnor_matmul, and sign: M x n_words(N) words, bit n of row m = out[m, n] >= 0 (padding bits 0); with GATE
// also gate: the same layout, bit = |out[m, n]| <= thr, the gate bits the backward pass reads (gate_pack); with
// ADD the product is added to what out holds (in place, wrapping like NumPy's int32 +=), as a recurrent step adds
// W_ss s_{t-1} to its input product. A block's 64 columns are exactly one word, so the forward pass gets the next
// layer's input and the backward pass its gates without a pack launch re-reading z.
// With a2 (DUAL), a second product over k2 bits of a2 (M x kw2) and b2 (N x kw2) is summed into the same tile:
// z = (k - 2 popc(a ^ b)) + (k2 - 2 popc(a2 ^ b2)), the two products of a recurrent step in one kernel, z written
// once and the first product never stored.
template <bool GATE, bool ADD, bool DUAL = false>
__device__ __forceinline__ void xnor_sign_tile(const u64* __restrict__ a, const u64* __restrict__ b,
                                               int* __restrict__ out, u64* __restrict__ sign, u64* __restrict__ gate,
                                               int M, int N, int kw, int k, int thr, const u64* __restrict__ a2 = nullptr,
                                               const u64* __restrict__ b2 = nullptr, int kw2 = 0, int k2 = 0) {
    const int m0 = blockIdx.y * BEP_TILE, n0 = blockIdx.x * BEP_TILE;
    u32 acc[4][4], gcnt[4];
    const u64 last_mask = (k & 63) ? (1ull << (k & 63)) - 1 : ~0ull;
    popc_tile<false>(a, a, b, M, N, kw, m0, n0, last_mask, acc, gcnt);
    if (DUAL) {
        __syncthreads();  // every thread is done with the staging buffers the second product refills
        const u64 last2 = (k2 & 63) ? (1ull << (k2 & 63)) - 1 : ~0ull;
        popc_tile<false>(a2, a2, b2, M, N, kw2, m0, n0, last2, acc, gcnt, true);
    }
    // acc becomes z (as uint32 bits) for every in-range output; the bit masks below ignore the others.
    tile_outputs(M, N, m0, n0, [&](int i, int j, int m, int n) {
        const i64 f = (i64)m * N + n;
        const u32 z = (u32)k + (u32)k2 - 2u * acc[i][j] + (ADD ? (u32)out[f] : 0u);
        out[f] = (int)z;
        acc[i][j] = z;
    });
    // Both bit sets as 16-bit masks first, so acc is dead before the ballots (no spills in the gated variant).
    const u32 sbits = tile_bits(N, n0, [&](int i, int j) { return (int)acc[i][j] >= 0; });  // sign(0) = +1
    const u32 gbits = GATE ? tile_bits(N, n0, [&](int i, int j) {
        const int z = (int)acc[i][j];  // |z| <= k < 2^31: no overflow
        return (z < 0 ? -z : z) <= thr;
    }) : 0u;
    popc_tile_store_bits(sbits, sign, M, gridDim.x, m0, blockIdx.x);
    if (GATE) popc_tile_store_bits(gbits, gate, M, gridDim.x, m0, blockIdx.x);
}

// NumPy mirror: Backend.xnor_matmul_sign in bep_gpu/backends/base.py (xnor_matmul, then pack)
// Grid and operands as xnor_matmul; sign: M x n_words(N) words.
extern "C" __global__ void __launch_bounds__(BEP_TILE_THREADS, 4)
    xnor_matmul_sign(const u64* __restrict__ a, const u64* __restrict__ b, int* __restrict__ out,
                     u64* __restrict__ sign, int M, int N, int kw, int k) {
    xnor_sign_tile<false, false>(a, b, out, sign, nullptr, M, N, kw, k, 0);
}

// NumPy mirror: Backend.xnor_matmul_sign in bep_gpu/backends/base.py with gate (xnor_matmul, pack, gate_pack)
// As xnor_matmul_sign, and gate: M x n_words(N) words of |out| <= thr.
extern "C" __global__ void __launch_bounds__(BEP_TILE_THREADS, 4)
    xnor_matmul_sign_gate(const u64* __restrict__ a, const u64* __restrict__ b, int* __restrict__ out,
                          u64* __restrict__ sign, u64* __restrict__ gate, int M, int N, int kw, int k, int thr) {
    xnor_sign_tile<true, false>(a, b, out, sign, gate, M, N, kw, k, thr);
}

// NumPy mirror: Backend.xnor_matmul_sign in bep_gpu/backends/base.py with add (add += xnor_matmul, then pack)
// As xnor_matmul_sign, with out read first: out (in place) = out + the product.
extern "C" __global__ void __launch_bounds__(BEP_TILE_THREADS, 4)
    xnor_matmul_sign_add(const u64* __restrict__ a, const u64* __restrict__ b, int* __restrict__ out,
                         u64* __restrict__ sign, int M, int N, int kw, int k) {
    xnor_sign_tile<false, true>(a, b, out, sign, nullptr, M, N, kw, k, 0);
}

// NumPy mirror: Backend.sign_recurrence in bep_gpu/backends/base.py (one step: xnor_matmul + xnor_matmul, pack)
// One step of a sign recurrence: out = xnor(a, b, k) + xnor(a2, b2, k2) (a = x_t, b = W_in; a2 = s_{t-1},
// b2 = W_rec), sign = its packed signs. Grid as xnor_matmul (N = the rows of b and b2).
extern "C" __global__ void __launch_bounds__(BEP_TILE_THREADS, 4)
    xnor_matmul2_sign(const u64* __restrict__ a, const u64* __restrict__ b, const u64* __restrict__ a2,
                      const u64* __restrict__ b2, int* __restrict__ out, u64* __restrict__ sign, int M, int N, int kw,
                      int k, int kw2, int k2) {
    xnor_sign_tile<false, false, true>(a, b, out, sign, nullptr, M, N, kw, k, 0, a2, b2, kw2, k2);
}

// NumPy mirror: Backend.sign_recurrence in bep_gpu/backends/base.py with gate (the step, then gate_pack)
// As xnor_matmul2_sign, and gate: M x n_words(N) words of |out| <= thr.
extern "C" __global__ void __launch_bounds__(BEP_TILE_THREADS, 4)
    xnor_matmul2_sign_gate(const u64* __restrict__ a, const u64* __restrict__ b, const u64* __restrict__ a2,
                           const u64* __restrict__ b2, int* __restrict__ out, u64* __restrict__ sign,
                           u64* __restrict__ gate, int M, int N, int kw, int k, int kw2, int k2, int thr) {
    xnor_sign_tile<true, false, true>(a, b, out, sign, gate, M, N, kw, k, thr, a2, b2, kw2, k2);
}
