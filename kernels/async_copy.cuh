// The sm_80+ data movers of the tensor-core kernels: cp.async (global -> shared without registers, zero fill)
// and ldmatrix (shared -> mma fragments), plus the dynamic shared memory they fill. The CPU emulator
// (tests/emu/cuda_emu.h) supplies C++ stand-ins with the same semantics, selected by BEP_EMULATION.
#pragma once
#include "bep_common.cuh"

#ifdef BEP_EMULATION
__device__ __forceinline__ unsigned char* bep_dynamic_smem() { return emu::dynamic_smem(); }
__device__ __forceinline__ void bep_cp_async16(void* dst, const void* src, int src_bytes) {
    emu::cp_async(dst, src, 16, src_bytes);
}
__device__ __forceinline__ void bep_cp_async8(void* dst, const void* src, int src_bytes) {
    emu::cp_async(dst, src, 8, src_bytes);
}
__device__ __forceinline__ void bep_cp_async_commit() { emu::cp_async_commit(); }
template <int N>
__device__ __forceinline__ void bep_cp_async_wait() { emu::cp_async_wait(N); }
template <int N>
__device__ __forceinline__ void bep_ldmatrix(u32 (&r)[N], const void* row) { emu::ldmatrix(r, row); }
#else
__device__ __forceinline__ unsigned char* bep_dynamic_smem() {
    extern __shared__ __align__(128) unsigned char bep_smem[];
    return bep_smem;
}
__device__ __forceinline__ u32 bep_smem_addr(const void* p) { return (u32)__cvta_generic_to_shared(p); }
#if __CUDA_ARCH__ >= 800
// 16 bytes from src (16-byte aligned) to shared dst, bytes past src_bytes (0..16) zero; .cg: through L2 only.
__device__ __forceinline__ void bep_cp_async16(void* dst, const void* src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(bep_smem_addr(dst)), "l"(src),
                 "r"(src_bytes)
                 : "memory");
}
// 8 bytes (8-byte aligned) likewise, for rows whose pitch is not a multiple of 16 bytes; .ca: the only 8-byte form.
__device__ __forceinline__ void bep_cp_async8(void* dst, const void* src, int src_bytes) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(bep_smem_addr(dst)), "l"(src),
                 "r"(src_bytes)
                 : "memory");
}
__device__ __forceinline__ void bep_cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void bep_cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }
#else
// Before sm_80 (the CUDA-core kernels still run there): the same copies done at once, which every caller's
// wait-then-barrier order makes equivalent.
__device__ __forceinline__ void bep_cp_async8(void* dst, const void* src, int src_bytes) {
    *static_cast<u64*>(dst) = src_bytes ? *static_cast<const u64*>(src) : 0ull;
}
__device__ __forceinline__ void bep_cp_async16(void* dst, const void* src, int src_bytes) {
    bep_cp_async8(dst, src, src_bytes >= 8 ? 8 : 0);  // callers copy whole words
    bep_cp_async8(static_cast<u64*>(dst) + 1, static_cast<const u64*>(src) + 1, src_bytes >= 16 ? 8 : 0);
}
__device__ __forceinline__ void bep_cp_async_commit() {}
template <int N>
__device__ __forceinline__ void bep_cp_async_wait() {}
#endif
// Lane 8 i + r gives row r of matrix i; lane l gets word l % 4 of row l / 4 of each matrix.
template <int N>
__device__ __forceinline__ void bep_ldmatrix(u32 (&r)[N], const void* row) {
#if __CUDA_ARCH__ < 800
    __trap();  // only the tensor-core kernels use it, and the backend never launches them there
#endif
    if constexpr (N == 4) {
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                     : "r"(bep_smem_addr(row)));
    } else if constexpr (N == 2) {
        asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n"
                     : "=r"(r[0]), "=r"(r[1])
                     : "r"(bep_smem_addr(row)));
    } else {
        static_assert(N == 1, "ldmatrix .x1, .x2 or .x4");
        asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(bep_smem_addr(row)));
    }
}
#endif
