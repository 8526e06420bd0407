// Trigger of docs/ALGORITHM.md section 4.2 for a mini-batch, in one launch (the array-library version is a dozen small
// kernels): per row, the prediction (argmax, lowest index on ties), the trigger own - max_{c != y} logit < margin
// in int64, the row's candidate word (all ones where it triggers, else 0), and the batch counts
// [misclassified, triggered] added atomically (integer sums: exact in any order).
#include "bep_common.cuh"

// NumPy mirror: Backend.trigger in bep_gpu/backends/base.py
// Grid-stride over warps, one warp per row (lanes stride over the C >= 1 classes), block 256. logits: int32 N x C;
// labels: int64 N in [0, C); counts: two u64 zeroed by the caller; row: N words.
extern "C" __global__ void __launch_bounds__(256)
    trigger(const int* __restrict__ logits, const i64* __restrict__ labels, i64 n, int C, i64 margin,
            u64* __restrict__ counts, u64* __restrict__ row) {
    const int lane = threadIdx.x & 31;
    u64 wrong = 0, triggered = 0;
    for (i64 r = bep_global_warp(); r < n; r += bep_warp_count()) {  // the same rows for every lane of a warp
        const int* lr = logits + r * C;
        const i64 y = labels[r];
        // Argmax key: biased value high, inverted index low, so the largest key is the largest logit with the
        // lowest index. `other` starts at int32 min, the value NumPy's version writes over the label's logit.
        u64 best = 0;
        int other = -2147483647 - 1;
        for (int c = lane; c < C; c += 32) {
            const int v = lr[c];
            const u64 key = ((u64)((u32)v ^ 0x80000000u) << 32) | (u32)(0xffffffffu - (u32)c);
            best = key > best ? key : best;
            if (c != y) other = v > other ? v : other;
        }
        for (int off = 16; off > 0; off >>= 1) {
            const u64 b = __shfl_xor_sync(BEP_FULL_MASK, best, off);
            const int o = __shfl_xor_sync(BEP_FULL_MASK, other, off);
            best = b > best ? b : best;
            other = o > other ? o : other;
        }
        if (lane == 0) {
            const i64 pred = (i64)(0xffffffffu - (u32)best);
            const bool trig = (i64)lr[y] - (i64)other < margin;
            row[r] = trig ? ~0ull : 0ull;
            wrong += pred != y;
            triggered += trig;
        }
    }
    if (lane == 0 && wrong) atomicAdd(&counts[0], wrong);
    if (lane == 0 && triggered) atomicAdd(&counts[1], triggered);
}
