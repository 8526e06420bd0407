// One warp-wide b1 tensor-core step: D = C + popc(A AND B) over a 16 x 8 x 256 tile,
// `mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32.and.popc` (native BMMA.AND.POPC on sm_80 and sm_90).
// Never the .xor.popc form: ptxas emulates it on sm_90 at ~1/100 of the rate (profiling/README.md, "H200 ceilings").
//
// Fragment layout, from the PTX ISA "Matrix Fragments for mma.m16n8k256" (.b1; the .s8 m16n8k32 layout with 32
// elements per register instead of 4). UNVERIFIED ON A GPU here: tests/test_gpu.py and the backend's first-use
// probe (CudaBackend._check_tensor_core) compare against the CUDA-core kernel on a device. With
// g = lane / 4, q = lane % 4 and "chunk c" = K bits 32 c .. 32 c + 31 of the 256:
//   A (row-major 16 x 256): a[0] = row g, chunk q;  a[1] = row g + 8, chunk q;
//                           a[2] = row g, chunk q + 4;  a[3] = row g + 8, chunk q + 4
//   B (col-major 256 x 8):  b[0] = column g, chunk q;  b[1] = column g, chunk q + 4
//   C, D (16 x 8 int32):    c[0], c[1] = row g, columns 2q, 2q + 1;  c[2], c[3] = row g + 8, same columns
// AND-popc sums over K, so the bit order inside a register and which chunk a (q, register) pair holds do not
// matter as long as A and B agree: callers load both from identically laid-out tiles with the same indices.
#pragma once
#include "bep_common.cuh"

#ifdef BEP_EMULATION
// The CPU emulator (tests/emu/cuda_emu.h): every lane publishes its 6 operand registers, then computes its own 4
// outputs from the layout above.
__device__ __forceinline__ void bep_mma_b1_and_popc(int (&c)[4], const u32 (&a)[4], const u32 (&b)[2]) {
    const u32 mine[6] = {a[0], a[1], a[2], a[3], b[0], b[1]};
    u32 all[32][6];
    emu::warp_gather(mine, all);
    const int lane = emu::lane_id(), g = lane >> 2, q = lane & 3;
    for (int r = 0; r < 4; ++r) {
        const int row = g + 8 * (r >> 1), col = 2 * q + (r & 1);
        u32 sum = (u32)c[r];
        for (int chunk = 0; chunk < 8; ++chunk) {
            const u32 av = all[4 * (row & 7) + (chunk & 3)][(row >> 3) + 2 * (chunk >> 2)];
            const u32 bv = all[4 * col + (chunk & 3)][4 + (chunk >> 2)];
            sum += (u32)__popc(av & bv);
        }
        c[r] = (int)sum;  // int32 accumulation wraps as on the device
    }
}
#else
__device__ __forceinline__ void bep_mma_b1_and_popc(int (&c)[4], const u32 (&a)[4], const u32 (&b)[2]) {
#if __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32.and.popc "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
    __trap();  // no b1 mma before sm_80; the backend never launches it there
#endif
}
#endif
