// Sign + pack along the last axis (docs/ALGORITHM.md section 1) and the gate bits |z| <= G of section 4.3.
// One warp builds one uint64 word with two ballots (lanes 0-31: bits 0-31, then bits 32-63), so a warp reads 64
// consecutive elements of a row (coalesced) and writes one word. Bits past n are 0 because their predicate is false.
#include "bep_common.cuh"

template <typename T>
struct SignBit {
    __device__ __forceinline__ bool operator()(T v) const { return v >= 0; }  // sign(0) = +1; NaN -> 0 as NumPy
};
struct NonzeroBit {
    __device__ __forceinline__ bool operator()(unsigned char v) const { return v != 0; }  // bool input
};
struct GateBit {
    i64 threshold;
    // |z| with the int32 wrap of np.abs (|INT_MIN| = INT_MIN), so even that corner matches the NumPy mirror.
    __device__ __forceinline__ bool operator()(int v) const {
        int a = v < 0 ? (int)(0u - (u32)v) : v;
        return (i64)a <= threshold;
    }
};

// x: rows x n elements (row-major); out: rows x nw words.
template <typename T, typename Pred>
__device__ __forceinline__ void pack_rows(const T* __restrict__ x, u64* __restrict__ out, i64 rows, int n, int nw,
                                          Pred pred) {
    const int lane = threadIdx.x & 31;
    const i64 total = rows * nw;
    for (i64 wi = bep_global_warp(); wi < total; wi += bep_warp_count()) {
        const i64 r = wi / nw;
        const int c = (int)(wi - r * nw) * 64 + lane;
        const T* row = x + r * n;
        const bool lo = c < n && pred(row[c]);
        const bool hi = c + 32 < n && pred(row[c + 32]);
        const u32 blo = __ballot_sync(BEP_FULL_MASK, lo);
        const u32 bhi = __ballot_sync(BEP_FULL_MASK, hi);
        if (lane == 0) out[wi] = ((u64)bhi << 32) | blo;
    }
}

// Sign + pack per input dtype (bool: nonzero -> 1). Grid-stride over warps, block 256.
// NumPy mirror: NumpyBackend.pack (bep_gpu.bits.pack_bits) in bep_gpu/backends/numpy_backend.py
extern "C" __global__ void __launch_bounds__(256)
    pack_b1(const unsigned char* __restrict__ x, u64* __restrict__ out, i64 rows, int n, int nw) {
    pack_rows<unsigned char>(x, out, rows, n, nw, NonzeroBit());
}
// NumPy mirror: NumpyBackend.pack (bep_gpu.bits.pack_bits) in bep_gpu/backends/numpy_backend.py
extern "C" __global__ void __launch_bounds__(256)
    pack_i8(const signed char* __restrict__ x, u64* __restrict__ out, i64 rows, int n, int nw) {
    pack_rows<signed char>(x, out, rows, n, nw, SignBit<signed char>());
}
// NumPy mirror: NumpyBackend.pack (bep_gpu.bits.pack_bits) in bep_gpu/backends/numpy_backend.py
extern "C" __global__ void __launch_bounds__(256)
    pack_i16(const short* __restrict__ x, u64* __restrict__ out, i64 rows, int n, int nw) {
    pack_rows<short>(x, out, rows, n, nw, SignBit<short>());
}
// NumPy mirror: NumpyBackend.pack (bep_gpu.bits.pack_bits) in bep_gpu/backends/numpy_backend.py
extern "C" __global__ void __launch_bounds__(256)
    pack_i32(const int* __restrict__ x, u64* __restrict__ out, i64 rows, int n, int nw) {
    pack_rows<int>(x, out, rows, n, nw, SignBit<int>());
}
// NumPy mirror: NumpyBackend.pack (bep_gpu.bits.pack_bits) in bep_gpu/backends/numpy_backend.py
extern "C" __global__ void __launch_bounds__(256)
    pack_i64(const i64* __restrict__ x, u64* __restrict__ out, i64 rows, int n, int nw) {
    pack_rows<i64>(x, out, rows, n, nw, SignBit<i64>());
}
// NumPy mirror: NumpyBackend.pack (bep_gpu.bits.pack_bits) in bep_gpu/backends/numpy_backend.py
extern "C" __global__ void __launch_bounds__(256)
    pack_f32(const float* __restrict__ x, u64* __restrict__ out, i64 rows, int n, int nw) {
    pack_rows<float>(x, out, rows, n, nw, SignBit<float>());
}
// NumPy mirror: NumpyBackend.pack (bep_gpu.bits.pack_bits) in bep_gpu/backends/numpy_backend.py
extern "C" __global__ void __launch_bounds__(256)
    pack_f64(const double* __restrict__ x, u64* __restrict__ out, i64 rows, int n, int nw) {
    pack_rows<double>(x, out, rows, n, nw, SignBit<double>());
}

// NumPy mirror: NumpyBackend.gate_pack in bep_gpu/backends/numpy_backend.py
extern "C" __global__ void __launch_bounds__(256)
    gate_pack_i32(const int* __restrict__ z, u64* __restrict__ out, i64 rows, int n, int nw, i64 threshold) {
    pack_rows<int>(z, out, rows, n, nw, GateBit{threshold});
}

// Sign + pack of a 2-D x (rows x n) along both axes in one pass: out (rows x n_words(n)) as pack_rows, and
// out_t (n x n_words(rows)), bit r of word (c, r / 64) = x[r, c] >= 0 (W and W^T of a layer from its hidden
// weights). A block packs a 64 x 64 tile: each warp builds 8 row words with ballots (coalesced reads), then 64
// threads gather the tile's columns from those words in shared memory (a broadcast per step). Rows and columns
// past the matrix give 0 bits.
template <typename T>
__device__ __forceinline__ void pack_both_tile(const T* __restrict__ x, u64* __restrict__ out, u64* __restrict__ out_t,
                                               int rows, int n) {
    __shared__ u64 words[64];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, r0 = blockIdx.y * 64, c0 = blockIdx.x * 64;
    const int c = c0 + lane;
    for (int i = warp; i < 64; i += 8) {  // warp-uniform: the ballots see the full warp
        const int r = r0 + i;
        const T* row = x + (i64)r * n;
        const bool lo = r < rows && c < n && SignBit<T>()(row[c]);
        const bool hi = r < rows && c + 32 < n && SignBit<T>()(row[c + 32]);
        const u64 w = ((u64)__ballot_sync(BEP_FULL_MASK, hi) << 32) | __ballot_sync(BEP_FULL_MASK, lo);
        if (lane == 0) {
            words[i] = w;
            if (r < rows) out[(i64)r * gridDim.x + blockIdx.x] = w;
        }
    }
    __syncthreads();
    const int t = threadIdx.x;
    if (t < 64 && c0 + t < n) {
        u64 v = 0;
#pragma unroll 16
        for (int r = 0; r < 64; ++r) v |= ((words[r] >> t) & 1ull) << r;
        out_t[(i64)(c0 + t) * gridDim.y + blockIdx.y] = v;
    }
}

// NumPy mirror: Backend.pack_both in bep_gpu/backends/base.py (pack, then transpose_bits)
// Grid (n_words(n), n_words(rows)), block 256.
extern "C" __global__ void __launch_bounds__(256)
    pack_both_i16(const short* __restrict__ x, u64* __restrict__ out, u64* __restrict__ out_t, int rows, int n) {
    pack_both_tile<short>(x, out, out_t, rows, n);
}
