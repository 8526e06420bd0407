// Masks of a conv layer (docs/CONV.md): per sample, tile of qy x qx output positions (edge tiles smaller) and run
// of gamma consecutive channels, the wrong unit with the smallest |z|, ties to the lowest channel, then y, then x.
// One warp per group: lanes stride over the group's units in that tie order u = (channel, y, x) and reduce the
// 64-bit key |z| << 32 | u with shuffles, so the smallest key is exactly the rule's choice.
#include "bep_common.cuh"

// NumPy mirror: Backend.conv_select_wrong in bep_gpu/backends/base.py
// Grid-stride over warps, block 256. z: int32 (N * ho * wo, C); a, t, out: (N * ho * wo, nw) words (out zeroed);
// rowm: N trigger words. Groups per sample: ceil(ho / qy) * ceil(wo / qx) * (C / gamma).
extern "C" __global__ void __launch_bounds__(256)
    conv_select_wrong(const int* __restrict__ z, const u64* __restrict__ a, const u64* __restrict__ t,
                      const u64* __restrict__ rowm, u64* __restrict__ out, i64 n, int ho, int wo, int C, int nw,
                      int qy, int qx, int gamma) {
    const int lane = threadIdx.x & 31;
    const int tiles_y = (ho + qy - 1) / qy, tiles_x = (wo + qx - 1) / qx, cgroups = C / gamma;
    const i64 total = n * tiles_y * tiles_x * cgroups;
    for (i64 gi = bep_global_warp(); gi < total; gi += bep_warp_count()) {
        const int cg = (int)(gi % cgroups);
        const int tx = (int)((gi / cgroups) % tiles_x), ty = (int)((gi / cgroups / tiles_x) % tiles_y);
        const i64 s = gi / ((i64)cgroups * tiles_x * tiles_y);
        const int y0 = ty * qy, x0 = tx * qx;
        const int th = min(qy, ho - y0), tw = min(qx, wo - x0), area = th * tw;
        const u64 rm = rowm[s];
        u64 best = ~0ull;
        for (int u = lane; u < gamma * area; u += 32) {
            const int cl = u / area, rem = u - cl * area;
            const int ch = cg * gamma + cl;
            const i64 row = (s * ho + y0 + rem / tw) * wo + x0 + rem % tw;
            const u64 w = (a[row * nw + (ch >> 6)] ^ t[row * nw + (ch >> 6)]) & rm;
            if ((w >> (ch & 63)) & 1ull) {
                const int v = z[row * C + ch];
                const u32 mag = v < 0 ? 0u - (u32)v : (u32)v;  // exact |v|, also for INT_MIN (as int64 abs)
                const u64 key = ((u64)mag << 32) | (u32)u;
                best = key < best ? key : best;
            }
        }
        for (int off = 16; off > 0; off >>= 1) {
            const u64 other = __shfl_xor_sync(BEP_FULL_MASK, best, off);
            best = other < best ? other : best;
        }
        if (lane == 0 && best != ~0ull) {
            const int u = (int)(u32)best, cl = u / area, rem = u - cl * area;
            const int ch = cg * gamma + cl;
            const i64 row = (s * ho + y0 + rem / tw) * wo + x0 + rem % tw;
            atomicOr(&out[row * nw + (ch >> 6)], 1ull << (ch & 63));
        }
    }
}
