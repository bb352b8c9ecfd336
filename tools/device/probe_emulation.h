// CPU emulation of the few CUDA features the device probes use, so that a probe's kernel runs, unchanged, on a machine
// without a GPU: every CUDA thread is a fiber (ucontext) of one OS thread, switched at __syncthreads, warp shuffles and
// spin-waits. It checks a kernel's logic (indices, phases, barriers, results against a reference), not its speed or
// its memory ordering: cp.async copies land when issued, and memory is one coherent array.
//
// Compile the probe with a host compiler and -DPROBE_EMULATE (see the probe's header). Emulated: threadIdx / blockIdx /
// gridDim / blockDim (x only), __syncthreads, __shfl_xor_sync (full warps), dynamic and static shared memory per block,
// cp.async of 16 bytes, mbarriers with cp.async arrivals and parity waits, the grid barrier's release-add and
// acquire-load, atomicAdd on doubles, __ldcg, __threadfence, %globaltimer (a step counter), and the bfloat16 pair
// conversion the kernels use.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <ucontext.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

// CUDA's headers define these for host compilers too; here they mark nothing.
#undef __global__
#undef __device__
#undef __host__
#undef __forceinline__
#undef __launch_bounds__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)

namespace probe_emu {

struct Fiber {
    ucontext_t context;
    std::unique_ptr<char[]> stack;
    unsigned block = 0, thread = 0;
    bool done = false;
};

struct Block {
    std::vector<char> shared;          // dynamic shared memory
    std::vector<char> statics;         // the kernel's static __shared__ variables
    unsigned sync_arrived = 0, sync_generation = 0;
    std::vector<unsigned> warp_arrived, warp_generation;
    std::vector<float> warp_slots;     // one value a lane, for shuffles
};

struct Grid {
    unsigned blocks = 0, threads = 0;
    std::vector<Block> block;
    std::vector<Fiber> fiber;
    size_t current = 0;
    ucontext_t scheduler;
    unsigned long long steps = 0;
};

inline Grid *& grid() {
    static Grid * g = nullptr;
    return g;
}
inline Fiber & self() { return grid()->fiber[grid()->current]; }
inline Block & own_block() { return grid()->block[self().block]; }

// Gives the other fibers a turn.
inline void yield() {
    Grid & g = *grid();
    ++g.steps;
    swapcontext(&g.fiber[g.current].context, &g.scheduler);
}

struct Dim3 {
    unsigned x = 0, y = 1, z = 1;
};
inline Dim3 thread_index() { return Dim3{self().thread, 0, 0}; }
inline Dim3 block_index() { return Dim3{self().block, 0, 0}; }
inline Dim3 grid_dim() { return Dim3{grid()->blocks, 1, 1}; }
inline Dim3 block_dim() { return Dim3{grid()->threads, 1, 1}; }

inline void sync_block() {
    Block & b = own_block();
    const unsigned generation = b.sync_generation;
    if (++b.sync_arrived == grid()->threads) {
        b.sync_arrived = 0;
        ++b.sync_generation;
        return;
    }
    while (b.sync_generation == generation) yield();
}

// Every lane of the warp puts its value in, waits for the others, reads its partner's, and waits again before the
// slots are reused.
inline float shuffle_xor(float v, int offset) {
    Block & b = own_block();
    const unsigned warp = self().thread / 32, lane = self().thread % 32;
    auto warp_barrier = [&] {
        const unsigned generation = b.warp_generation[warp];
        if (++b.warp_arrived[warp] == 32) {
            b.warp_arrived[warp] = 0;
            ++b.warp_generation[warp];
            return;
        }
        while (b.warp_generation[warp] == generation) yield();
    };
    b.warp_slots[warp * 32 + lane] = v;
    warp_barrier();
    const float other = b.warp_slots[warp * 32 + (lane ^ unsigned(offset))];
    warp_barrier();
    return other;
}

struct Barrier {  // the emulated mbarrier, in the 8 bytes a kernel gives it
    uint32_t pending, count_and_phase;  // count in the low 24 bits, completed phases above
};
static_assert(sizeof(Barrier) == 8, "an mbarrier is 8 bytes");

inline void barrier_init(uint64_t * bar, unsigned count) {
    Barrier * b = reinterpret_cast<Barrier *>(bar);
    b->pending = count;
    b->count_and_phase = count;
}
inline void barrier_arrive(uint64_t * bar) {
    Barrier * b = reinterpret_cast<Barrier *>(bar);
    if (b->pending == 0) {
        std::printf("emulation: arrival on an mbarrier with no pending arrivals\n");
        std::exit(3);
    }
    if (--b->pending == 0) {
        b->count_and_phase += 1u << 24;
        b->pending = b->count_and_phase & 0xffffffu;
    }
}
inline void barrier_wait_parity(uint64_t * bar, unsigned parity) {
    Barrier * b = reinterpret_cast<Barrier *>(bar);
    while (((b->count_and_phase >> 24) & 1u) == (parity & 1u)) yield();
}

// Runs kernel(args) on blocks x threads fibers with `shared` bytes of dynamic shared memory a block and `statics`
// bytes for static __shared__ variables; returns once every fiber has returned.
inline void launch(unsigned blocks, unsigned threads, size_t shared, size_t statics, void (*kernel)(void *), void * args,
                   size_t stack_bytes = 64 * 1024) {
    if (threads % 32 != 0) {
        std::printf("emulation: %u threads a block is not whole warps\n", threads);
        std::exit(3);
    }
    Grid g;
    g.blocks = blocks;
    g.threads = threads;
    g.block.resize(blocks);
    for (Block & b : g.block) {
        b.shared.assign(shared, char(0x7f));  // garbage: a read before a write shows up as NaN-like floats
        b.statics.assign(statics, char(0));
        b.warp_arrived.assign(threads / 32, 0);
        b.warp_generation.assign(threads / 32, 0);
        b.warp_slots.assign(threads, 0.0f);
    }
    g.fiber.resize(size_t(blocks) * threads);
    grid() = &g;
    struct Start {
        void (*kernel)(void *);
        void * args;
    } start{kernel, args};
    static Start * start_of_all = nullptr;
    start_of_all = &start;
    for (size_t i = 0; i < g.fiber.size(); ++i) {
        Fiber & f = g.fiber[i];
        f.block = unsigned(i / threads);
        f.thread = unsigned(i % threads);
        f.stack.reset(new char[stack_bytes]);
        getcontext(&f.context);
        f.context.uc_stack.ss_sp = f.stack.get();
        f.context.uc_stack.ss_size = stack_bytes;
        f.context.uc_link = &g.scheduler;
        makecontext(&f.context, reinterpret_cast<void (*)()>(+[] {
                        start_of_all->kernel(start_of_all->args);
                        self().done = true;
                    }),
                    0);
    }
    for (size_t live = g.fiber.size(); live > 0;) {  // round robin until every fiber has returned
        live = 0;
        for (size_t i = 0; i < g.fiber.size(); ++i) {
            if (g.fiber[i].done) continue;
            g.current = i;
            swapcontext(&g.scheduler, &g.fiber[i].context);
            if (!g.fiber[i].done) ++live;
        }
    }
    grid() = nullptr;
}

inline char * block_shared() { return own_block().shared.data(); }
inline char * block_statics() { return own_block().statics.data(); }

}  // namespace probe_emu

using std::max;
using std::min;

#define threadIdx (::probe_emu::thread_index())
#define blockIdx (::probe_emu::block_index())
#define gridDim (::probe_emu::grid_dim())
#define blockDim (::probe_emu::block_dim())

inline void __syncthreads() { probe_emu::sync_block(); }
inline float __shfl_xor_sync(unsigned, float v, int offset) { return probe_emu::shuffle_xor(v, offset); }
inline void __threadfence() {}
inline double atomicAdd(double * p, double v) {
    const double old = *p;
    *p = old + v;
    return old;
}
template <class T>
inline T __ldcg(const T * p) {
    return *p;
}
inline float __expf(float v) { return std::exp(v); }
inline float rsqrtf(float v) { return 1.0f / std::sqrt(v); }
inline float2 __bfloat1622float2(__nv_bfloat162 v) { return make_float2(__bfloat162float(v.x), __bfloat162float(v.y)); }
