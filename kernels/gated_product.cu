// Targets of the layer below (docs/ALGORITHM.md section 4.3): bit j of row n is
// sign(sum_i g[n,i] t[n,i] wt[j,i]) = [popc(g[n]) - 2 popc((t[n] ^ wt[j]) & g[n]) >= 0], sign(0) = +1.
// Tiling: popc_tile.cuh with A = t, G = g, B = wt. A block's 64 output columns are exactly one output word,
// so the epilogue packs with ballots and never writes int32 sums.
#include "popc_tile.cuh"

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
