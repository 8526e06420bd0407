// Shared helpers of the BEP kernels. NVRTC has no standard headers, so no <cstdint>: fixed-width names are
// typedefs of the CUDA built-in types (unsigned long long is 64 bits, unsigned int 32 bits on every target).
#pragma once

typedef unsigned long long u64;
typedef unsigned int u32;
typedef long long i64;

#define BEP_FULL_MASK 0xffffffffu

// Counter RNG mixer of docs/ALGORITHM.md section 8 (SplitMix64 finaliser); uint64 arithmetic wraps.
// NumPy mirror: bep_gpu.rng.mix_array
__device__ __forceinline__ u64 bep_mix(u64 x) {
    u64 z = x + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Grid-stride loops count warps: every lane of a warp runs the same iterations, so warp intrinsics inside the
// loop always see the full warp (the emulator and __ballot_sync with a full mask both need that).
__device__ __forceinline__ i64 bep_global_warp() {
    return ((i64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
}
__device__ __forceinline__ i64 bep_warp_count() {
    return ((i64)gridDim.x * blockDim.x) >> 5;
}

// The reinforcement of docs/ALGORITHM.md section 4.6: entry f of a hidden matrix fires when u(f) =
// mix(key ^ f) >> 32 is below threshold (in [0, 2^32]: 0 never fires), and a firing entry v becomes
// clip(v + 2 sign(v)), sign(0) = +1. NumPy mirror: NumpyBackend.reinforce
__device__ __forceinline__ bool bep_reinforce_fires(u64 f, u64 key, u64 threshold) {
    return (bep_mix(key ^ f) >> 32) < threshold;
}
__device__ __forceinline__ int bep_reinforced(int v, int clip) {
    const int moved = v >= 0 ? v + 2 : v - 2;
    return min(max(moved, -clip), clip);
}

// The reinforcement key: `key` as given (rng_key of the host), or, with on_device, finished from the step held
// on the device, mix(mix(key ^ step[0]) ^ layer) with key = the stream key (a replayed CUDA graph advances step).
__device__ __forceinline__ u64 bep_reinforce_key(u64 key, const i64* __restrict__ step, u64 layer, int on_device) {
    return on_device ? bep_mix(bep_mix(key ^ (u64)step[0]) ^ layer) : key;
}
