// Counter RNG of docs/ALGORITHM.md section 8 and the reinforcement of section 4.6, computed in-kernel in uint64:
// u(i) = mix(key ^ i) >> 32 with key = rng_key(seed, stream, step, layer) computed on the host (or, for
// reinforce_at_step, finished on the device from the step held there).
#include "bep_common.cuh"

// NumPy mirror: NumpyBackend.counter_uniform (bep_gpu.rng.counter_uniform) in bep_gpu/backends/numpy_backend.py
// Grid-stride, block 256.
extern "C" __global__ void __launch_bounds__(256) counter_uniform(u32* __restrict__ out, i64 n, u64 key) {
    const i64 stride = (i64)gridDim.x * blockDim.x;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        out[i] = (u32)(bep_mix(key ^ (u64)i) >> 32);
}

__device__ __forceinline__ void reinforce_entries(short* __restrict__ h, i64 n, u64 key, u64 threshold, int clip) {
    const i64 stride = (i64)gridDim.x * blockDim.x;
    for (i64 f = (i64)blockIdx.x * blockDim.x + threadIdx.x; f < n; f += stride) {
        if (bep_reinforce_fires((u64)f, key, threshold)) h[f] = (short)bep_reinforced(h[f], clip);
    }
}

// NumPy mirror: NumpyBackend.reinforce in bep_gpu/backends/numpy_backend.py
// Entry f of h (flat index) with u(f) < threshold becomes clip(h + 2 sign(h)), sign(0) = +1. threshold is in
// [0, 2^32], hence 64-bit. active[0] == 0 (read on the device) skips the whole update. Grid-stride, block 256.
extern "C" __global__ void __launch_bounds__(256)
    reinforce(short* __restrict__ h, i64 n, u64 key, u64 threshold, int clip, const i64* __restrict__ active) {
    if (active[0] == 0) return;
    reinforce_entries(h, n, key, threshold, clip);
}

// NumPy mirror: NumpyBackend.reinforce in bep_gpu/backends/numpy_backend.py (step given as an array)
// As reinforce, with the step read on the device: key = mix(mix(stream_key ^ step[0]) ^ layer) (rng_key with
// stream_key = mix(mix(seed) ^ stream) from the host), so a captured CUDA graph replays it step after step.
extern "C" __global__ void __launch_bounds__(256)
    reinforce_at_step(short* __restrict__ h, i64 n, u64 stream_key, const i64* __restrict__ step, u64 layer,
                      u64 threshold, int clip, const i64* __restrict__ active) {
    if (active[0] == 0) return;
    reinforce_entries(h, n, bep_reinforce_key(stream_key, step, layer, 1), threshold, clip);
}
