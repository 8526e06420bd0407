// CPU emulation of the CUDA subset the kernels in kernels/ use, so CI without a GPU compiles with g++ and RUNS
// the very same .cu sources (test-only; see emulator.py).
// Model: a launch runs blocks one after another; the threads of a block are real std::threads (so barriers,
// warp intrinsics and atomics really synchronise), and __shared__ variables are function-local statics, which is
// sound because only one block is live at a time. Warp intrinsics rendezvous the 32 lanes of a warp through
// slots and a barrier; they require the whole warp to take part (full mask), as every kernel here does. Warp-wide
// matrix instructions (the b1 mma of kernels/mma_b1.cuh) are C++ stand-ins selected by BEP_EMULATION: each lane
// publishes its fragment registers with warp_gather, then computes its own outputs from the PTX fragment layout.
// A barrier that waits longer than EMU_DEADLOCK_SECONDS aborts with a message instead of hanging CI.
#pragma once

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#define __global__
#define __device__ inline
#define __host__
#define __forceinline__
#define __noinline__
#define __launch_bounds__(...)
#define __shared__ static
// Kernel headers pick their C++ stand-in for inline PTX with this (kernels/mma_b1.cuh).
#define BEP_EMULATION 1
#ifndef EMU_DEADLOCK_SECONDS
#define EMU_DEADLOCK_SECONDS 120
#endif

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
typedef dim3 uint3;

inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;
constexpr int warpSize = 32;

namespace emu {

[[noreturn]] inline void fail(const char* what) {
    std::fprintf(stderr, "cuda_emu: %s\n", what);
    std::fflush(stderr);
    std::abort();
}

// Generation barrier on a futex: woken threads need no mutex, which matters with 256 threads on 2 cores.
class Barrier {
public:
    explicit Barrier(int n) : n_(n) {}
    void wait() {
        const unsigned gen = gen_.load(std::memory_order_acquire);
        if (count_.fetch_add(1, std::memory_order_acq_rel) == n_ - 1) {
            count_.store(0, std::memory_order_relaxed);
            gen_.fetch_add(1, std::memory_order_release);
            syscall(SYS_futex, reinterpret_cast<unsigned*>(&gen_), FUTEX_WAKE_PRIVATE, 0x7fffffff, nullptr, nullptr, 0);
            return;
        }
        timespec slice{1, 0};
        for (int waited = 0; gen_.load(std::memory_order_acquire) == gen;) {
            syscall(SYS_futex, reinterpret_cast<unsigned*>(&gen_), FUTEX_WAIT_PRIVATE, gen, &slice, nullptr, 0);
            if (gen_.load(std::memory_order_acquire) == gen && ++waited > EMU_DEADLOCK_SECONDS)
                fail("barrier deadlock: threads of a block or warp disagree on __syncthreads / warp intrinsics");
        }
    }

private:
    int n_;
    std::atomic<int> count_{0};
    std::atomic<unsigned> gen_{0};
    static_assert(sizeof(std::atomic<unsigned>) == sizeof(unsigned), "futex word");
};

struct Warp {
    explicit Warp(int lanes) : lanes(lanes), full(lanes == 32 ? 0xffffffffu : ((1u << lanes) - 1)), bar(lanes) {}
    int lanes;
    unsigned full;  // lanes that exist in this warp
    Barrier bar;
    unsigned long long slot[32];
    unsigned frag[32][8];  // warp_gather: every lane's published registers
};

struct Launch {
    Launch(int threads) : block_bar(threads), end_bar(threads) {
        for (int w = 0; w * 32 < threads; ++w) warps.emplace_back(std::make_unique<Warp>(std::min(32, threads - 32 * w)));
    }
    Barrier block_bar;  // __syncthreads
    Barrier end_bar;    // between blocks: static shared memory is reused by the next block
    std::vector<std::unique_ptr<Warp>> warps;
};

inline thread_local Launch* launch_ctx = nullptr;
inline thread_local int linear_tid = 0;

inline Warp& my_warp(unsigned mask) {
    Warp& w = *launch_ctx->warps[linear_tid / 32];
    if ((mask & w.full) != w.full) fail("warp intrinsic with a partial mask: unsupported by the emulator");
    return w;
}
inline int lane_id() { return linear_tid & 31; }

// Runs body once per thread of every block; blocks strictly one after another. Returns 0.
inline int launch(dim3 grid, dim3 block, const std::function<void()>& body) {
    static std::mutex one_at_a_time;  // static shared memory allows a single live launch
    std::lock_guard<std::mutex> lock(one_at_a_time);
    const int threads = (int)(block.x * block.y * block.z);
    Launch ctx(threads);
    std::vector<std::thread> pool;
    pool.reserve(threads);
    for (int tid = 0; tid < threads; ++tid) {
        pool.emplace_back([&, tid] {
            launch_ctx = &ctx;
            linear_tid = tid;
            threadIdx = uint3{tid % block.x, (tid / block.x) % block.y, tid / (block.x * block.y)};
            blockDim = block;
            gridDim = grid;
            for (unsigned bz = 0; bz < grid.z; ++bz)
                for (unsigned by = 0; by < grid.y; ++by)
                    for (unsigned bx = 0; bx < grid.x; ++bx) {
                        blockIdx = uint3{bx, by, bz};
                        body();
                        ctx.end_bar.wait();
                    }
        });
    }
    for (auto& t : pool) t.join();
    return 0;
}

// Type code of a kernel parameter for the Python side: "*" + pointee code for pointers, else kind + bytes
// ("i4", "u8", "f4", "b1"), the same spelling as numpy dtype.kind + itemsize.
template <class T>
std::string code() {
    if constexpr (std::is_pointer_v<T>) {
        return "*" + code<std::remove_cv_t<std::remove_pointer_t<T>>>();
    } else if constexpr (std::is_same_v<T, bool>) {
        return "b1";
    } else if constexpr (std::is_floating_point_v<T>) {
        return "f" + std::to_string(sizeof(T));
    } else if constexpr (std::is_integral_v<T> && std::is_signed_v<T>) {
        return "i" + std::to_string(sizeof(T));
    } else if constexpr (std::is_integral_v<T>) {
        return "u" + std::to_string(sizeof(T));
    } else {
        static_assert(sizeof(T) == 0, "unsupported kernel parameter type");
    }
}

template <class... A>
std::string signature(void (*)(A...)) {
    std::string s;
    ((s += code<A>() + ","), ...);
    return s;
}

// args[i] points at the value of parameter i (the cuLaunchKernel convention).
template <class... A, size_t... I>
void call(void (*f)(A...), void** args, std::index_sequence<I...>) {
    f(*static_cast<std::remove_reference_t<A>*>(args[I])...);
}
template <class... A>
int run(void (*f)(A...), unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
        void** args) {
    return launch(dim3{gx, gy, gz}, dim3{bx, by, bz}, [&] { call(f, args, std::index_sequence_for<A...>{}); });
}

}  // namespace emu

// --- device functions --------------------------------------------------------------------------------------
inline void __syncthreads() { emu::launch_ctx->block_bar.wait(); }

inline unsigned __ballot_sync(unsigned mask, int pred) {
    emu::Warp& w = emu::my_warp(mask);
    const int lane = emu::lane_id();
    w.slot[lane] = pred != 0;
    w.bar.wait();
    unsigned r = 0;
    for (int l = 0; l < w.lanes; ++l) r |= (unsigned)w.slot[l] << l;
    w.bar.wait();  // nobody overwrites a slot before every lane has read it
    return r & mask;
}

namespace emu {
// Lane src_of(lane) of the same warp supplies the value (own value when src_of returns lane itself).
template <class T, class F>
T exchange(unsigned mask, T v, F src_of) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "shuffle of a type wider than 8 bytes");
    Warp& w = my_warp(mask);
    const int lane = lane_id();
    unsigned long long bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    w.slot[lane] = bits;
    w.bar.wait();
    int src = src_of(lane);
    if (src < 0 || src >= w.lanes) src = lane;
    bits = w.slot[src];
    w.bar.wait();
    T r;
    std::memcpy(&r, &bits, sizeof(T));
    return r;
}
// Every lane publishes N 32-bit registers and receives all lanes' (all[lane][i]) in one rendezvous: the building
// block of warp-wide matrix instructions (mma), which read operand fragments from every lane.
template <int N>
void warp_gather(const unsigned (&mine)[N], unsigned (&all)[32][N]) {
    static_assert(N <= 8, "warp_gather: at most 8 registers per lane");
    Warp& w = my_warp(0xffffffffu);
    if (w.lanes != 32) fail("warp_gather needs a full warp of 32 threads");
    std::memcpy(w.frag[lane_id()], mine, sizeof(mine));
    w.bar.wait();
    for (int l = 0; l < 32; ++l) std::memcpy(all[l], w.frag[l], sizeof(mine));
    w.bar.wait();  // nobody republishes before every lane has read
}
}  // namespace emu

template <class T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    return emu::exchange(mask, v, [&](int lane) {
        const int s = lane ^ lane_mask;
        return (s & ~(width - 1)) == (lane & ~(width - 1)) ? s : lane;  // outside the segment: own value
    });
}
template <class T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    return emu::exchange(mask, v, [&](int lane) { return (lane & (width - 1)) + (int)delta < width ? lane + (int)delta : lane; });
}

inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }

// CUDA overloads min/max per type; mixing types is left to fail here as it would be a latent bug there too.
#define EMU_MINMAX(T)                                   \
    inline T min(T a, T b) { return a < b ? a : b; }    \
    inline T max(T a, T b) { return a < b ? b : a; }
EMU_MINMAX(int)
EMU_MINMAX(unsigned)
EMU_MINMAX(long long)
EMU_MINMAX(unsigned long long)
EMU_MINMAX(float)
EMU_MINMAX(double)
#undef EMU_MINMAX

template <class T>
T atomicAdd(T* p, T v) { return std::atomic_ref<T>(*p).fetch_add(v); }
template <class T>
T atomicOr(T* p, T v) { return std::atomic_ref<T>(*p).fetch_or(v); }
