// Hidden-weight update of docs/ALGORITHM.md section 4.5: h[k, j] = clip(h + 2 sum_n sel[n,k] t[n,k] x[n,j], -C, C),
// and the reinforcement of section 4.6 in the same store (BepReinforce below).
// The backend transposes sel, t and x to batch-packed rows, so the sum over samples is a gated popcount over
// words of samples: sum = popc(selT[k]) - 2 popc((tT[k] ^ xT[j]) & selT[k]), exact in int32, then ONE clip.
// Tiling: popc_tile.cuh with A = tT, G = selT, B = xT (K and J rows of n_words(N) words).
#include "popc_tile.cuh"
#include "tc_gemm.cuh"

// The reinforcement of the updated matrix (docs/ALGORITHM.md section 4.6) fused into batch_update's store, so the
// step needs no reinforce launch and no second pass over h: entry f fires as in reinforce.cu, on the value the
// update just clipped. threshold 0 (the host's "none"), or active[0] == 0 read on the device, fires nothing.
// Kernel parameters (after clip): key (rng_key, or the stream key with on_device), step (one int64 on the device,
// read only with on_device), layer, on_device, threshold (in [0, 2^32]), active (one int64).
struct BepReinforce {
    u64 key = 0, threshold = 0;
    bool on = false;
    BepReinforce() = default;
    __device__ BepReinforce(u64 k, const i64* __restrict__ step, u64 layer, int on_device, u64 thr,
                            const i64* __restrict__ active)
        : key(thr ? bep_reinforce_key(k, step, layer, on_device) : 0), threshold(thr), on(thr && active[0]) {}
    __device__ __forceinline__ int operator()(int v, i64 f, int clip) const {
        return on && bep_reinforce_fires((u64)f, key, threshold) ? bep_reinforced(v, clip) : v;
    }
};

// NumPy mirror: NumpyBackend.batch_update, then NumpyBackend.reinforce, in bep_gpu/backends/numpy_backend.py
// Grid (ceil(J / 64), ceil(K / 64)), block 256. h: int16 K x J, updated (and reinforced) in place. Four resident
// blocks per SM, as update_delta (<= 64 registers).
extern "C" __global__ void __launch_bounds__(BEP_TILE_THREADS, 4)
    batch_update(short* __restrict__ h, const u64* __restrict__ selT, const u64* __restrict__ tT,
                 const u64* __restrict__ xT, int K, int J, int nwn, int clip, u64 rkey, const i64* __restrict__ rstep,
                 u64 rlayer, int ron_device, u64 rthreshold, const i64* __restrict__ ractive) {
    const int m0 = blockIdx.y * BEP_TILE, n0 = blockIdx.x * BEP_TILE;
    const BepReinforce reinforce = BepReinforce(rkey, rstep, rlayer, ron_device, rthreshold, ractive);
    u32 acc[4][4], gcnt[4];
    popc_tile<true>(tT, selT, xT, K, J, nwn, m0, n0, ~0ull, acc, gcnt);
    tile_outputs(K, J, m0, n0, [&](int i, int j, int k, int c) {
        const i64 f = (i64)k * J + c;
        const int v = (int)h[f] + 2 * ((int)gcnt[i] - 2 * (int)acc[i][j]);
        h[f] = (short)reinforce(min(max(v, -clip), clip), f, clip);  // np.clip order: minimum(maximum(v, lo), hi)
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

// batch_update and update_delta on the b1 tensor cores (tc_gemm.cuh, gated form: A = tT, G = selT, B = xT):
// sum = bep_tcg_gated_value (pops: popc(tT & selT) of the K rows, then popc(selT); row_popcounts.cu), then the
// same clip or int32 store. Grid (ceil(J / 128), ceil(K / 64)), block 256,
// dynamic shared memory BEP_TCG_SMEM; sm_80+. OUT is short (h, updated with the clip) or int (the delta).
template <class OUT>
__device__ __forceinline__ void update_tc(OUT* __restrict__ out, const u64* __restrict__ selT, const u64* __restrict__ tT,
                                          const u64* __restrict__ xT, const u32* __restrict__ pops, int K, int J,
                                          int nwn, int clip, const BepReinforce& reinforce) {
    TcTile<true> tile;
    tc_gemm<true>(tT, selT, xT, K, J, nwn, 0, tile);
    const int m0 = blockIdx.y * TcTile<true>::BM, n0 = blockIdx.x * BEP_TCG_BN;
    tc_for_each<true>([&](int rl, int cl, int i, int j, int r) {
        const int k = m0 + rl, c = n0 + cl;
        if (k >= K || c >= J) return;
        const i64 f = (i64)k * J + c;
        const int sum = bep_tcg_gated_value(pops[k], pops[K + k], tile.acc[0][i][j][r], tile.acc[1][i][j][r]);
        if constexpr (sizeof(OUT) == 2) {
            const int v = (int)out[f] + 2 * sum;
            out[f] = (short)reinforce(min(max(v, -clip), clip), f, clip);  // np.clip order, as batch_update
        } else {
            out[f] = sum;
        }
    });
}

// NumPy mirror: NumpyBackend.batch_update, then NumpyBackend.reinforce, in bep_gpu/backends/numpy_backend.py
// batch_update on the tensor cores (update_tc above); same operands plus pops.
extern "C" __global__ void __launch_bounds__(BEP_TCG_THREADS, 2)
    batch_update_tc(short* __restrict__ h, const u64* __restrict__ selT, const u64* __restrict__ tT,
                    const u64* __restrict__ xT, const u32* __restrict__ pops, int K, int J, int nwn, int clip,
                    u64 rkey, const i64* __restrict__ rstep, u64 rlayer, int ron_device, u64 rthreshold,
                    const i64* __restrict__ ractive) {
    update_tc<short>(h, selT, tT, xT, pops, K, J, nwn, clip,
                     BepReinforce(rkey, rstep, rlayer, ron_device, rthreshold, ractive));
}

// NumPy mirror: NumpyBackend.update_delta in bep_gpu/backends/numpy_backend.py
// update_delta on the tensor cores (update_tc above); same operands plus pops.
extern "C" __global__ void __launch_bounds__(BEP_TCG_THREADS, 2)
    update_delta_tc(int* __restrict__ out, const u64* __restrict__ selT, const u64* __restrict__ tT,
                    const u64* __restrict__ xT, const u32* __restrict__ pops, int K, int J, int nwn) {
    update_tc<int>(out, selT, tT, xT, pops, K, J, nwn, 0, BepReinforce());
}

// Sparse form of the same sum (the backend's update="sparse"). A sample selects at most one unit per group of
// gamma, so row k of selT has few bits (about N / gamma): each output row visits only the samples that selected
// it (find-first-set over its words), instead of popcounting all N. x stays packed along J (row n of x is read
// for each of its selections); no atomics, so the sum is in a fixed order, and the clip is fused as above.
// Every thread of a block walks the same row, so the loop is uniform and the selT/tT loads are broadcasts.
__device__ __forceinline__ int sparse_row_sum(const u64* __restrict__ selT, const u64* __restrict__ tT,
                                              const u64* __restrict__ x, int k, int c, int nwn, int jw) {
    const u64* srow = selT + (i64)k * nwn;
    const u64* trow = tT + (i64)k * nwn;
    const int cw = c >> 6, cb = c & 63;
    int acc = 0;
    for (int w = 0; w < nwn; ++w) {
        u64 s = srow[w];
        const u64 tw = trow[w];
        while (s) {
            const int b = __ffsll((long long)s) - 1;
            s &= s - 1;
            const u64 xb = x[((i64)w * 64 + b) * jw + cw] >> cb;
            acc += (((xb ^ (tw >> b)) & 1ull) ? -1 : 1);  // +1 where the target bit equals the input bit
        }
    }
    return acc;
}

// NumPy mirror: NumpyBackend.batch_update (update="sparse": _sparse_delta), then NumpyBackend.reinforce
// Grid (ceil(J / 256), min(K, 65535)) striding over rows, block 256: one thread per column c of row k.
extern "C" __global__ void __launch_bounds__(256)
    batch_update_sparse(short* __restrict__ h, const u64* __restrict__ selT, const u64* __restrict__ tT,
                        const u64* __restrict__ x, int K, int J, int nwn, int jw, int clip, u64 rkey,
                        const i64* __restrict__ rstep, u64 rlayer, int ron_device, u64 rthreshold,
                        const i64* __restrict__ ractive) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= J) return;
    const BepReinforce reinforce = BepReinforce(rkey, rstep, rlayer, ron_device, rthreshold, ractive);
    for (int k = blockIdx.y; k < K; k += gridDim.y) {
        const i64 f = (i64)k * J + c;
        const int v = (int)h[f] + 2 * sparse_row_sum(selT, tT, x, k, c, nwn, jw);
        h[f] = (short)reinforce(min(max(v, -clip), clip), f, clip);
    }
}

// NumPy mirror: NumpyBackend.update_delta in bep_gpu/backends/numpy_backend.py (update="sparse": _sparse_delta)
// update_delta's int32 sum in the sparse form; same grid and operands as batch_update_sparse.
extern "C" __global__ void __launch_bounds__(256)
    update_delta_sparse(int* __restrict__ out, const u64* __restrict__ selT, const u64* __restrict__ tT,
                        const u64* __restrict__ x, int K, int J, int nwn, int jw) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= J) return;
    for (int k = blockIdx.y; k < K; k += gridDim.y) out[(i64)k * J + c] = sparse_row_sum(selT, tT, x, k, c, nwn, jw);
}
