// Test-only: one m16n8k256 b1 mma with operands placed by the fragment layout documented in kernels/mma_b1.cuh,
// read straight from global memory. Run by tests/test_cuda_emulated.py (emulator) and tests/test_gpu.py (device)
// on the inputs of tests/mma_probe.py: on a GPU it checks the layout itself, so a wrong layout shows up here, not
// only as a wrong GEMM.
#include "mma_b1.cuh"

// NumPy mirror: tests expect d[m, n] = sum_c popc(a[m, c] & b[n, c]) + 7 (c: 32-bit chunk of K)
// One warp. a: 16 x 8, b: 8 x 8 uint32 chunks (rows K-contiguous); d: int32 16 x 8.
extern "C" __global__ void mma_layout_probe(const u32* __restrict__ a, const u32* __restrict__ b, int* __restrict__ d) {
    const int lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
    const u32 af[4] = {a[g * 8 + q], a[(g + 8) * 8 + q], a[g * 8 + q + 4], a[(g + 8) * 8 + q + 4]};
    const u32 bf[2] = {b[g * 8 + q], b[g * 8 + q + 4]};
    int c[4] = {7, 7, 7, 7};  // a non-zero C checks the accumulate
    bep_mma_b1_and_popc(c, af, bf);
    d[g * 8 + 2 * q] = c[0];
    d[g * 8 + 2 * q + 1] = c[1];
    d[(g + 8) * 8 + 2 * q] = c[2];
    d[(g + 8) * 8 + 2 * q + 1] = c[3];
}
