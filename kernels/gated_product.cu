// Targets of the layer below (docs/ALGORITHM.md section 4.3): bit j of row n is
// sign(sum_i g[n,i] t[n,i] wt[j,i]) = [popc(g[n]) - 2 popc((t[n] ^ wt[j]) & g[n]) >= 0], sign(0) = +1.
// Tiling: popc_tile.cuh with A = t, G = g, B = wt. A block's 64 output columns are exactly one output word,
// so the epilogue packs with ballots and never writes int32 sums.
#include "popc_tile.cuh"
#include "tc_gemm.cuh"

// NumPy mirror: NumpyBackend.gated_transposed_product in bep_gpu/backends/numpy_backend.py
// Grid (n_words(J), ceil(N / 64)), block 256. t, g: N x kw; wt: J x kw; out: N x n_words(J), padding bits 0.
extern "C" __global__ void __launch_bounds__(BEP_TILE_THREADS)
    gated_transposed_product(const u64* __restrict__ t, const u64* __restrict__ g, const u64* __restrict__ wt,
                             u64* __restrict__ out, int N, int J, int kw) {
    const int m0 = blockIdx.y * BEP_TILE, n0 = blockIdx.x * BEP_TILE;
    const int nwj = gridDim.x;
    u32 acc[4][4], gcnt[4];
    popc_tile<true>(t, g, wt, N, J, kw, m0, n0, ~0ull, acc, gcnt);
    const u32 bits = tile_bits(J, n0, [&](int i, int j) { return (int)gcnt[i] - 2 * (int)acc[i][j] >= 0; });
    popc_tile_store_bits(bits, out, N, nwj, m0, blockIdx.x);
}

// NumPy mirror: NumpyBackend.gated_transposed_product in bep_gpu/backends/numpy_backend.py
// The same bits on the b1 tensor cores (tc_gemm.cuh, gated form: A = t, G = g, B = wt), sm_80+; pops: popc(t & g)
// of the N rows, then popc(g) (row_popcounts.cu).
// Grid (ceil(J / 128), ceil(N / 64)), block 256, dynamic shared memory BEP_TCG_SMEM.
extern "C" __global__ void __launch_bounds__(BEP_TCG_THREADS, 2)
    gated_transposed_product_tc(const u64* __restrict__ t, const u64* __restrict__ g, const u64* __restrict__ wt,
                                const u32* __restrict__ pops, u64* __restrict__ out, int N, int J, int kw) {
    __shared__ u32 sHalf[4 * TcTile<true>::BM];
    TcTile<true> tile;
    tc_gemm<true>(t, g, wt, N, J, kw, 0, tile);
    const int m0 = blockIdx.y * TcTile<true>::BM;
    tc_store_bits<true>(out, N, J, sHalf, [&](int rl, int, int i, int j, int r) {
        const int n = min(m0 + rl, N - 1);  // rows past N are not stored
        return bep_tcg_gated_value(pops[n], pops[N + n], tile.acc[0][i][j][r], tile.acc[1][i][j][r]) >= 0;
    });
}
