// CPU emulation of the CUDA subset the kernels in kernels/ use, so CI without a GPU compiles with g++ and RUNS
// the very same .cu sources (test-only; see emulator.py).
// Model: a launch runs blocks one after another; the threads of a block are fibers switched at every barrier
// (see Scheduler below), and __shared__ variables are function-local statics, which is sound because only one
// block is live at a time. Warp intrinsics rendezvous the 32 lanes of a warp through slots and a barrier; they
// require the whole warp to take part (full mask), as every kernel here does. Warp-wide matrix instructions (the
// b1 mma of kernels/mma_b1.cuh, ldmatrix) are C++ stand-ins selected by BEP_EMULATION: each lane publishes its
// registers with warp_gather, then computes its own outputs from the PTX fragment layout. A barrier that can
// never complete aborts with a message instead of hanging CI.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
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

// --- fibers: the threads of a block ------------------------------------------------------------------------
// A block's threads are fibers (user-space contexts) on the launching OS thread, switched by a round-robin
// scheduler: every barrier (block or warp) is a yield point, so no OS thread is created or woken per launch and
// a launch costs what its kernel computes. Each round resumes every live fiber once, in alternating order
// (0..n-1, then n-1..0), so a read or overwrite of another thread's shared data without a barrier between
// them sees the wrong data in one of the two orders and shows up as a mismatch. A round in which no fiber
// arrives at a barrier or finishes is a deadlock (threads disagree on __syncthreads or a warp intrinsic): it
// fails at once with a message.
#if defined(__x86_64__)
// Callee-saved registers of the System V ABI on the stack, then the stack pointer swap.
extern "C" void emu_fiber_switch(void** save_sp, void* load_sp);
extern "C" void emu_fiber_entry();
asm(R"(
.text
.globl emu_fiber_switch
.type emu_fiber_switch,@function
emu_fiber_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
.size emu_fiber_switch,.-emu_fiber_switch
.globl emu_fiber_entry
.type emu_fiber_entry,@function
emu_fiber_entry:
    movq %r12, %rdi
    call emu_fiber_main
    ud2
.size emu_fiber_entry,.-emu_fiber_entry
)");
#else
#include <ucontext.h>
#endif

struct Fiber;
extern "C" [[noreturn]] void emu_fiber_main(Fiber* f);

struct Fiber {
    static constexpr size_t kStack = 256 * 1024;  // kernels keep mma fragments of a whole warp on the stack
    std::unique_ptr<unsigned char[]> stack{new unsigned char[kStack]};
    int tid = 0;
    uint3 idx;
    bool done = false;
    const std::function<void()>* body = nullptr;
#if defined(__x86_64__)
    void* sp = nullptr;
    void start() {
        // Initial frame popped by emu_fiber_switch: r15, r14, r13, r12 (= this), rbx, rbp, then "return" into
        // emu_fiber_entry with the stack 16-byte aligned at its call, as the ABI requires.
        auto top = reinterpret_cast<uintptr_t>(stack.get() + kStack) & ~uintptr_t(15);
        void** s = reinterpret_cast<void**>(top - 24);
        s[0] = reinterpret_cast<void*>(&emu_fiber_entry);
        for (int i = 1; i <= 6; ++i) s[-i] = nullptr;
        s[-3] = this;  // r12
        sp = s - 6;
    }
#else
    ucontext_t ctx;
    void start() {
        getcontext(&ctx);
        ctx.uc_stack.ss_sp = stack.get();
        ctx.uc_stack.ss_size = kStack;
        ctx.uc_link = nullptr;
        makecontext(&ctx, reinterpret_cast<void (*)()>(&emu_fiber_main), 1, this);
    }
#endif
};

class Scheduler {
public:
    // Runs body once on each of `threads` fibers; returns when all have finished.
    void run_block(int threads, dim3 idx_block, const std::function<void()>& body) {
        while ((int)fibers_.size() < threads) fibers_.emplace_back(std::make_unique<Fiber>());
        for (int t = 0; t < threads; ++t) {
            Fiber& f = *fibers_[t];
            f.tid = t;
            f.idx = uint3{t % idx_block.x, (t / idx_block.x) % idx_block.y, t / (idx_block.x * idx_block.y)};
            f.done = false;
            f.body = &body;
            f.start();
        }
        int live = threads;
        for (bool forward = true; live; forward = !forward) {
            const unsigned long long before = progress;
            for (int i = 0; i < threads; ++i) {
                Fiber& f = *fibers_[forward ? i : threads - 1 - i];
                if (f.done) continue;
                resume(f);
                if (f.done) {
                    --live;
                    ++progress;
                }
            }
            if (live && progress == before)
                fail("barrier deadlock: threads of a block or warp disagree on __syncthreads / warp intrinsics");
        }
    }
    // From a fiber: back to the scheduler until the next round.
    void yield() {
        Fiber& f = *current;
#if defined(__x86_64__)
        emu_fiber_switch(&f.sp, sched_sp_);
#else
        swapcontext(&f.ctx, &sched_ctx_);
#endif
    }
    [[noreturn]] void finish() {
        current->done = true;
        yield();
        fail("a finished fiber was resumed");
    }
    Fiber* current = nullptr;
    unsigned long long progress = 0;  // barrier arrivals and finished fibers: a round without any is a deadlock

private:
    void resume(Fiber& f);
    std::vector<std::unique_ptr<Fiber>> fibers_;
#if defined(__x86_64__)
    void* sched_sp_ = nullptr;
#else
    ucontext_t sched_ctx_;
#endif
};

inline Scheduler& scheduler() {
    static Scheduler s;  // launches are serialised (launch()), so one scheduler serves them all
    return s;
}

// Generation barrier of n fibers: the n-th arrival releases the others at their next resume.
class Barrier {
public:
    explicit Barrier(int n) : n_(n) {}
    void wait() {
        Scheduler& s = scheduler();
        ++s.progress;
        const unsigned gen = gen_;
        if (++count_ == n_) {
            count_ = 0;
            ++gen_;
        }
        do s.yield();
        while (gen_ == gen);
    }

private:
    int n_;
    int count_ = 0;
    unsigned gen_ = 0;
};

struct Warp {
    explicit Warp(int lanes) : lanes(lanes), full(lanes == 32 ? 0xffffffffu : ((1u << lanes) - 1)), bar(lanes) {}
    int lanes;
    unsigned full;  // lanes that exist in this warp
    Barrier bar;
    unsigned long long slot[32];
    unsigned frag[32][8];  // warp_gather: every lane's published registers
};

struct AsyncCopy {  // one pending cp.async: applied when its group is waited for
    void* dst;
    unsigned char data[16];
    int bytes;
};

struct Launch {
    Launch(int threads, size_t dynamic_smem)
        : block_bar(threads), smem(dynamic_smem ? dynamic_smem : 1), copies(threads), committed(threads) {
        for (int w = 0; w * 32 < threads; ++w) warps.emplace_back(std::make_unique<Warp>(std::min(32, threads - 32 * w)));
    }
    Barrier block_bar;  // __syncthreads
    std::vector<std::unique_ptr<Warp>> warps;
    std::vector<unsigned char> smem;                // dynamic shared memory of the live block (16-byte aligned)
    std::vector<std::vector<AsyncCopy>> copies;     // per thread: cp.async copies not yet waited for
    std::vector<std::vector<size_t>> committed;     // per thread: end index (in copies) of each committed group
};

inline thread_local Launch* launch_ctx = nullptr;
inline thread_local int linear_tid = 0;

inline void Scheduler::resume(Fiber& f) {
    current = &f;
    linear_tid = f.tid;
    threadIdx = f.idx;
#if defined(__x86_64__)
    emu_fiber_switch(&sched_sp_, f.sp);
#else
    swapcontext(&sched_ctx_, &f.ctx);
#endif
}

inline Warp& my_warp(unsigned mask) {
    Warp& w = *launch_ctx->warps[linear_tid / 32];
    if ((mask & w.full) != w.full) fail("warp intrinsic with a partial mask: unsupported by the emulator");
    return w;
}
inline int lane_id() { return linear_tid & 31; }

// Runs body once per thread of every block; blocks strictly one after another. Returns 0.
inline int launch(dim3 grid, dim3 block, size_t dynamic_smem, const std::function<void()>& body) {
    static std::mutex one_at_a_time;  // static shared memory and the scheduler allow a single live launch
    std::lock_guard<std::mutex> lock(one_at_a_time);
    const int threads = (int)(block.x * block.y * block.z);
    Launch ctx(threads, dynamic_smem);
    launch_ctx = &ctx;
    blockDim = block;
    gridDim = grid;
    for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
            for (unsigned bx = 0; bx < grid.x; ++bx) {
                blockIdx = uint3{bx, by, bz};
                // Dynamic shared memory starts as garbage in every block, as on the device.
                std::memset(ctx.smem.data(), 0xA5, ctx.smem.size());
                scheduler().run_block(threads, block, body);
                for (auto& c : ctx.copies)
                    if (!c.empty()) fail("cp.async copies never waited for (cp.async.wait_group) before exit");
            }
    launch_ctx = nullptr;
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
        unsigned smem, void** args) {
    return launch(dim3{gx, gy, gz}, dim3{bx, by, bz}, smem,
                  [&] { call(f, args, std::index_sequence_for<A...>{}); });
}

}  // namespace emu

// Every fiber starts here (from emu_fiber_entry or makecontext); one definition per emulated library.
extern "C" __attribute__((used)) void emu_fiber_main(emu::Fiber* f) {
    (*f->body)();
    emu::scheduler().finish();
}

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

// cp.async.shared.global [dst], [src], size, src_bytes (size 8 or 16): size bytes into shared memory, those
// past src_bytes zero. The source is read at issue, the destination written only when its group is waited for,
// so a kernel that reads a stage before cp.async.wait_group (and the barrier after it) sees stale shared data,
// as a device may.
inline void cp_async(void* dst, const void* src, int size, int src_bytes) {
    if (reinterpret_cast<uintptr_t>(dst) % size || reinterpret_cast<uintptr_t>(src) % size)
        fail("cp.async with an address not aligned to its size");
    if (src_bytes < 0 || src_bytes > size) fail("cp.async src-size outside 0..size");
    AsyncCopy c{dst, {}, size};
    if (src_bytes) std::memcpy(c.data, src, src_bytes);
    launch_ctx->copies[linear_tid].push_back(c);
}
// cp.async.commit_group: the copies issued since the last commit form one group.
inline void cp_async_commit() {
    auto& mine = launch_ctx->committed[linear_tid];
    mine.push_back(launch_ctx->copies[linear_tid].size());
}
// cp.async.wait_group n: every committed group but the newest n has landed (copies past the last commit stay
// pending, as in PTX).
inline void cp_async_wait(int n) {
    auto& groups = launch_ctx->committed[linear_tid];
    auto& copies = launch_ctx->copies[linear_tid];
    if ((int)groups.size() <= n) return;
    const size_t done = groups[groups.size() - n - 1];
    for (size_t i = 0; i < done; ++i) std::memcpy(copies[i].dst, copies[i].data, copies[i].bytes);
    copies.erase(copies.begin(), copies.begin() + done);
    groups.erase(groups.begin(), groups.end() - n);
    for (auto& g : groups) g -= done;
}
// ldmatrix.sync.aligned.m8n8.xN.shared.b16: lanes 8 i .. 8 i + 7 give the row addresses of matrix i (16 bytes
// each); lane l receives, for each matrix i, the 32-bit word (l % 4) of row l / 4.
template <int N>
void ldmatrix(unsigned (&r)[N], const void* row) {
    static_assert(N == 1 || N == 2 || N == 4, "ldmatrix .x1, .x2 or .x4");
    const auto addr = reinterpret_cast<uintptr_t>(row);
    const unsigned mine[2] = {(unsigned)addr, (unsigned)((unsigned long long)addr >> 32)};
    unsigned all[32][2];
    warp_gather(mine, all);
    const int lane = lane_id();
    for (int i = 0; i < N; ++i) {
        const int src = 8 * i + lane / 4;
        const auto p = (uintptr_t)(all[src][0] | ((unsigned long long)all[src][1] << 32));
        if (p % 16) fail("ldmatrix row address not 16-byte aligned");
        std::memcpy(&r[i], reinterpret_cast<const unsigned char*>(p) + 4 * (lane % 4), 4);
    }
}
inline unsigned char* dynamic_smem() { return launch_ctx->smem.data(); }
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
