// Hidden-weight update of BEP_SPEC.md section 4.5: h[k, j] = clip(h + 2 sum_n sel[n,k] t[n,k] x[n,j], -C, C).
// The backend transposes sel, t and x to batch-packed rows, so the sum over samples is a gated popcount over
// words of samples: sum = popc(selT[k]) - 2 popc((tT[k] ^ xT[j]) & selT[k]), exact in int32, then ONE clip.
// Tiling: popc_tile.cuh with A = tT, G = selT, B = xT (K and J rows of n_words(N) words).
#include "popc_tile.cuh"

// NumPy mirror: NumpyBackend.batch_update in bep_gpu/backends/numpy_backend.py
// Grid (ceil(J / 64), ceil(K / 64)), block 256. h: int16 K x J, updated in place.
extern "C" __global__ void __launch_bounds__(BEP_TILE_THREADS)
    batch_update(short* __restrict__ h, const u64* __restrict__ selT, const u64* __restrict__ tT,
                 const u64* __restrict__ xT, int K, int J, int nwn, int clip) {
    const int m0 = blockIdx.y * BEP_TILE, n0 = blockIdx.x * BEP_TILE;
    u32 acc[4][4], gcnt[4];
    popc_tile<true>(tT, selT, xT, K, J, nwn, m0, n0, ~0ull, acc, gcnt);
    tile_outputs(K, J, m0, n0, [&](int i, int j, int k, int c) {
        const i64 f = (i64)k * J + c;
        const int v = (int)h[f] + 2 * ((int)gcnt[i] - 2 * (int)acc[i][j]);
        h[f] = (short)min(max(v, -clip), clip);  // np.clip order: minimum(maximum(v, lo), hi)
    });
}

// NumPy mirror: NumpyBackend.update_delta in bep_gpu/backends/numpy_backend.py
// batch_update's sum alone, not doubled and not clipped, as int32 K x J: partial sums of data-parallel ranks
// then add up exactly before one apply. Same grid and operands as batch_update.
extern "C" __global__ void __launch_bounds__(BEP_TILE_THREADS)
    update_delta(int* __restrict__ out, const u64* __restrict__ selT, const u64* __restrict__ tT,
                 const u64* __restrict__ xT, int K, int J, int nwn) {
    const int m0 = blockIdx.y * BEP_TILE, n0 = blockIdx.x * BEP_TILE;
    u32 acc[4][4], gcnt[4];
    popc_tile<true>(tT, selT, xT, K, J, nwn, m0, n0, ~0ull, acc, gcnt);
    tile_outputs(K, J, m0, n0,
                 [&](int i, int j, int k, int c) { out[(i64)k * J + c] = (int)gcnt[i] - 2 * (int)acc[i][j]; });
}
