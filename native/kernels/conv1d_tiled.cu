// Causal depthwise conv1d over a prompt in the channels-contiguous memory a linear layer writes ((batch, len, dim),
// viewed as (batch, dim, len) with unit channel stride): the prefill's conv.
//
// Bytes: batch*len*dim*(x + y) + dim*(width + 1) filter and bias; FLOPs: 2*width per output (+ SiLU). Bound by HBM.
//
// Why a second kernel beside the runs kernel (conv1d.cu): that one holds a run's 8 + width - 1 input vectors in
// registers, 168 of them a thread at width 4 in bf16, so an SM keeps 12 warps; each loads its run, then computes and
// stores it, and while an SM's warps compute nothing of theirs is in flight. It reached about 36% of copy bandwidth
// (B4 L2048 D5376 bf16 on an H200, 0.114 ms).
// Here x goes to shared memory with cp.async, so bytes in flight cost no registers: a block owns kGroups channel
// vectors (512 bytes of a row) over a segment of steps and walks it in chunks of kChunk steps through a ring of
// `stages` chunks (16 KB each), copying stages - 2 chunks ahead of the one it computes. A thread computes
// kStepsPerThread consecutive steps of one channel vector from the ring (the width - 1 inputs before them as a sliding
// window) and stores each step's 16 bytes; a warp covers one row's 512 contiguous bytes in both directions. The inputs
// before the segment (the halo) come from x, or from the initial state before step 0, as float32 in a small array of
// their own, so that a float32 state over 16-bit x loses nothing.
// The final state is written by the segment-0 block (the only reader of the initial state) after it read its halo,
// so the two may alias; its last width - 1 inputs come from x, or from that halo for a prompt shorter than them.
#include "conv1d_tiled.cuh"

#include <algorithm>
#include <cstdint>

#include "common.cuh"
#include "conv1d_common.cuh"
#include "launch.cuh"

#include "core/env_choice.h"

namespace mamba::cuda {

namespace {

// The block shape every build shares (the grid is planned from it before a build is picked).
constexpr int kTiledGroups = 32;        // channel vectors a block: a warp across a row
constexpr int kTiledChunk = 32;         // steps a ring stage holds
constexpr int kTiledBlocksPerSM = 2;    // up to 128 registers: at 3 (80) the 16-bit width-4 builds spill their filters and window
// Ring stages (ConvTiledArgs::stages, MAMBA_CUDA_CONV_STAGES): chunk c is computed while chunks c + 1 .. c + stages - 2
// copy; the stage of chunk c - 1 holds its halo.
constexpr int kTiledMaxStages = 6;

template <class T, int Width, bool Silu, bool Bias>
struct ConvTiledTraits {
    using Elem = T;
    static constexpr int kWidth = Width;
    static constexpr int kHalo = Width - 1;
    static constexpr int kVec = 16 / int(sizeof(T));                // channels a thread: one 16-byte vector
    static constexpr int kGroups = kTiledGroups;
    static constexpr int kThreads = 256;
    static constexpr int kStepLanes = kThreads / kGroups;           // threads down the time axis
    static constexpr int kChunk = kTiledChunk;
    static constexpr int kStepsPerThread = kChunk / kStepLanes;     // consecutive steps a thread computes
    static constexpr int kStageBytes = kChunk * kGroups * 16;       // 16 KB
    static constexpr int kMinBlocksPerSM = kTiledBlocksPerSM;
    static constexpr bool kSilu = Silu;
    static constexpr bool kBias = Bias;
    static_assert(kStepsPerThread >= kHalo, "the halo comes from one chunk back at most");
    static_assert(kChunk % kStepLanes == 0, "whole rows a thread in a chunk");
};

constexpr int kTiledMaxWidth = 4;

struct ConvTiledArgs {
    const void * x;
    void * y;
    AnyPtr weight, bias, init, fin;
    int64_t x_batch, x_step, y_batch, y_step;  // element strides; the channel stride is 1
    int64_t w_s[2], b_s, i_s[3], f_s[3];
    int64_t dim, len, seg_len;                 // seg_len: steps a block, a multiple of kChunk
    int stages;                                // 3 .. kTiledMaxStages (MAMBA_CUDA_CONV_STAGES), the dynamic shared memory's chunks
    bool has_init, has_final;
};

template <class T, int V>
__device__ __forceinline__ void unpack(const uint4 & raw, float (&v)[V]) {
    const T * e = reinterpret_cast<const T *>(&raw);
#pragma unroll
    for (int i = 0; i < V; ++i) v[i] = to_f32<T>(e[i]);
}

template <class Tr>
__global__ void __launch_bounds__(Tr::kThreads, Tr::kMinBlocksPerSM) causal_conv1d_tiled_kernel(ConvTiledArgs a) {
    using T = typename Tr::Elem;
    constexpr int V = Tr::kVec, H = Tr::kHalo, C = Tr::kChunk, G = Tr::kGroups, P = Tr::kStepsPerThread;
    const int S = a.stages, ahead = a.stages - 2;
    constexpr int L = Tr::kStepLanes;
    extern __shared__ uint4 ring[];            // [stage][row of the chunk][group]
    __shared__ float halo[H][G * V];           // the inputs of the H steps before the segment, float32

    const int g = int(threadIdx.x) % G, lane_t = int(threadIdx.x) / G;
    const int64_t c0 = (int64_t(blockIdx.x) * G + g) * V;
    const bool group_ok = c0 < a.dim;  // dim is whole vectors (try_causal_conv1d_tiled)
    const int64_t b = blockIdx.z, t0 = int64_t(blockIdx.y) * a.seg_len;
    const int steps = int(min(a.seg_len, a.len - t0));
    const int chunks = (steps + C - 1) / C;
    const T * x = static_cast<const T *>(a.x) + b * a.x_batch + (group_ok ? c0 : 0);
    T * y = static_cast<T *>(a.y) + b * a.y_batch + (group_ok ? c0 : 0);

    wait_for_producer();  // PDL-safe (launch.cuh): x and the initial state may come from the kernel before
    allow_dependents();

    // Chunk c's rows into stage c % S: a thread copies rows lane_t, lane_t + L, ... of its channel vector. One commit
    // group a chunk, empty past the last, so that the count of groups in flight stays the same.
    const auto copy_chunk = [&](int c) {
        if (c < chunks) {
            uint4 * stage = ring + (c % S) * C * G;
#pragma unroll
            for (int i = 0; i < C / L; ++i) {
                const int r = lane_t + i * L, l = c * C + r;
                const bool in = group_ok && l < steps;
                cp_async_16(stage + r * G + g, in ? x + (t0 + l) * a.x_step : x, in);
            }
        }
        cp_async_commit();
    };
    for (int c = 0; c < ahead; ++c) copy_chunk(c);

    // The halo: x before the segment, the initial state (zeros without one) before step 0.
    if (lane_t < H && group_ok) {
        const int64_t t = t0 - H + lane_t;
        float v[V];
        if (t >= 0) {
            unpack<T, V>(__ldg(reinterpret_cast<const uint4 *>(x + t * a.x_step)), v);
        } else {
#pragma unroll
            for (int i = 0; i < V; ++i) v[i] = a.has_init ? a.init.load(b * a.i_s[0] + (c0 + i) * a.i_s[1] + (H + t) * a.i_s[2]) : 0.0f;
        }
#pragma unroll
        for (int i = 0; i < V; ++i) halo[lane_t][g * V + i] = v[i];
    }

    float w[Tr::kWidth][V], bias[V];
#pragma unroll
    for (int i = 0; i < V; ++i) {
        const int64_t c = group_ok ? c0 + i : 0;
#pragma unroll
        for (int k = 0; k < Tr::kWidth; ++k) w[k][i] = a.weight.load(c * a.w_s[0] + k * a.w_s[1]);
        bias[i] = Tr::kBias ? a.bias.load(c * a.b_s) : 0.0f;
    }

    for (int c = 0; c < chunks; ++c) {
        // this thread's copies of chunk c are in (the ahead - 1 later groups may still fly)
        switch (ahead) {
            case 1: cp_async_wait_group<0>(); break;
            case 2: cp_async_wait_group<1>(); break;
            case 3: cp_async_wait_group<2>(); break;
            default: cp_async_wait_group<3>(); break;
        }
        __syncthreads();                        // everyone's, and the halo; chunk c - 1 computed by every thread
        copy_chunk(c + ahead);                  // into the stage of chunk c - 2, which no one reads any more
        const int l0 = c * C + lane_t * P;      // the thread's first step
        if (!group_ok || l0 >= steps) continue;
        const auto row = [&](int l) -> const uint4 & { return ring[((l / C) % S * C + l % C) * G + g]; };
        float window[H][V];                     // steps l - H .. l - 1 for the step l computed
#pragma unroll
        for (int h = 0; h < H; ++h) {
            const int l = l0 - H + h;
            if (l < 0) {
#pragma unroll
                for (int i = 0; i < V; ++i) window[h][i] = halo[H + l][g * V + i];
            } else {
                unpack<T, V>(row(l), window[h]);
            }
        }
#pragma unroll
        for (int p = 0; p < P; ++p) {
            const int l = l0 + p;
            if (l >= steps) break;
            float cur[V], out[V];
            unpack<T, V>(row(l), cur);
#pragma unroll
            for (int i = 0; i < V; ++i) {
                float acc = bias[i];
#pragma unroll
                for (int k = 0; k < H; ++k) acc = fmaf(w[k][i], window[k][i], acc);
                acc = fmaf(w[H][i], cur[i], acc);
                out[i] = Tr::kSilu ? silu_f(acc) : acc;
            }
            uint4 packed;
            T * e = reinterpret_cast<T *>(&packed);
#pragma unroll
            for (int i = 0; i < V; ++i) e[i] = from_f32<T>(out[i]);
            *reinterpret_cast<uint4 *>(y + (t0 + l) * a.y_step) = packed;
#pragma unroll
            for (int i = 0; i < V; ++i) {
#pragma unroll
                for (int k = 0; k + 1 < H; ++k) window[k][i] = window[k + 1][i];
                window[H - 1][i] = cur[i];
            }
        }
    }
    cp_async_wait_all();  // no copy outlives the block (the groups past the last chunk are empty)

    // The final state: the last H inputs of the whole sequence, from x or (a prompt shorter than H) the halo, which
    // the segment-0 block holds from the initial state; written after that block read the initial state.
    if (a.has_final && blockIdx.y == 0 && lane_t == 0 && group_ok) {
#pragma unroll
        for (int h = 0; h < H; ++h) {
            const int64_t t = a.len - H + h;
            float v[V];
            if (t >= 0) {
                unpack<T, V>(__ldg(reinterpret_cast<const uint4 *>(x + t * a.x_step)), v);
            } else {
#pragma unroll
                for (int i = 0; i < V; ++i) v[i] = halo[H + t][g * V + i];
            }
#pragma unroll
            for (int i = 0; i < V; ++i) a.fin.store(b * a.f_s[0] + (c0 + i) * a.f_s[1] + h * a.f_s[2], v[i]);
        }
    }
}

template <class T, int Width, bool Silu, bool Bias>
void launch_tiled(mamba_context & ctx, const ConvTiledArgs & a, int64_t batch) {
    using Tr = ConvTiledTraits<T, Width, Silu, Bias>;
    const int ring_bytes = a.stages * Tr::kStageBytes;
    MAMBA_CUDA_CHECK(cudaFuncSetAttribute(causal_conv1d_tiled_kernel<Tr>, cudaFuncAttributeMaxDynamicSharedMemorySize, kTiledMaxStages * Tr::kStageBytes));
    const dim3 grid(unsigned(ceil_div(a.dim, int64_t(Tr::kGroups * Tr::kVec))), unsigned(ceil_div(a.len, a.seg_len)), unsigned(batch));
    launch_kernel(ctx, "causal_conv1d_tiled_kernel", true, causal_conv1d_tiled_kernel<Tr>, grid, dim3(Tr::kThreads), size_t(ring_bytes), a);
    MAMBA_CUDA_CHECK_LAUNCH("causal_conv1d_tiled_kernel");
}

struct TiledLaunch {
    template <class T, int Width, bool Silu, bool Bias>
    static void run(mamba_context & ctx, const ConvTiledArgs & a, int64_t batch) {
        launch_tiled<T, Width, Silu, Bias>(ctx, a, batch);
    }
};

// Read at each call, for measurements and tests:
// MAMBA_CUDA_CONV_KERNEL: "auto" (or unset) takes this kernel for the calls it applies to, "runs" keeps them on the
// runs kernel (conv1d.cu);
// MAMBA_CUDA_CONV_SEGMENTS: "auto" (or unset) plans the segments a sequence (plan_segments) and leaves calls of short
// blocks to the runs kernel; a number forces that many on this kernel (at most one a chunk; "1": a block walks a whole
// sequence through its ring);
// MAMBA_CUDA_CONV_STAGES: the ring's stages, 3 to 6.
enum class ConvKernel { Auto, Runs };
constexpr EnvChoice<ConvKernel> kConvKernels[] = {{"auto", ConvKernel::Auto}, {"runs", ConvKernel::Runs}};
constexpr EnvChoice<int> kConvSegments[] = {{"auto", 0}, {"1", 1}, {"2", 2}, {"3", 3}, {"4", 4}, {"6", 6}, {"8", 8}, {"16", 16}};
constexpr EnvChoice<int> kConvStages[] = {{"3", 3}, {"4", 4}, {"5", 5}, {"6", 6}};
// 4 by default: on an H200 (run 144, bf16) 6 stages were no faster (B8 L2048 D5120 0.147 against 0.144 ms).
constexpr int kDefaultConvStages = 4;

// A block's fixed cost (its first chunk's round trip, the filters and the halo) in chunks' worth of streaming, for the
// plan below: chosen so that the plan picks segment counts measured fastest, or within 1% of the fastest, on an H200
// (runs 142-144, bf16, 1 to 14 segments a sequence at B1, B4 and B8, L2048, D5120-5376).
constexpr int64_t kBlockCostChunks = 3;
// Where the plan's blocks would have fewer chunks than this, the call takes the most segments that leave this many
// (16 at L2048, 4 at L512): at the narrow models' widths (B1 L2048 at D1536 and D2048 the plan picks 32 segments, 2
// chunks a block) and in short prompts at every width. Against the runs kernel those calls made the prefill 2-9% faster
// (runs 179-181: mamba-130m and mamba-370m at 512-2048 tokens, mamba-2.8b at 512 and 1024), though the kernel benchmark
// alone has the runs kernel faster there (B1 L512 D5376: 0.0195 ms against 0.0145). Prompts of fewer chunks than this
// leave the call to the runs kernel.
constexpr int64_t kMinChunksPerBlock = 4;

// Segments a sequence for `columns` (channel tiles x batch) sequences of `chunks` chunks on `slots` resident blocks: the
// fewest waves of the longest blocks, a wave taking (chunks a block + the fixed cost). One wave when the columns leave
// room (B1: 20 columns of 64 chunks -> 13 segments of 5 chunks), a few when one segment a sequence would leave slots
// idle (B8: 160 columns -> 3 segments of 22 chunks, 480 blocks).
int64_t plan_segments(int64_t columns, int64_t chunks, int64_t slots) {
    int64_t best = 1, best_cost = INT64_MAX;
    const int64_t most = std::min(chunks, std::max<int64_t>(1, ceil_div(8 * slots, columns)));  // up to 8 waves
    for (int64_t s = 1; s <= most; ++s) {
        const int64_t per_block = ceil_div(chunks, s), used = ceil_div(chunks, per_block);  // segments actually made
        const int64_t cost = ceil_div(columns * used, slots) * (per_block + kBlockCostChunks);
        if (cost < best_cost) best = used, best_cost = cost;
    }
    return best;
}

}  // namespace

bool try_causal_conv1d_tiled(mamba_context & ctx, const CausalConv1dParams & p) {
    // All three read first, so that a misspelt value fails every call that comes here, not only those this kernel takes.
    const ConvKernel kernel = env_choice("MAMBA_CUDA_CONV_KERNEL", kConvKernels, ConvKernel::Auto);
    const int forced = env_choice("MAMBA_CUDA_CONV_SEGMENTS", kConvSegments, 0);
    const int stages = env_choice("MAMBA_CUDA_CONV_STAGES", kConvStages, kDefaultConvStages);
    if (kernel == ConvKernel::Runs) return false;
    if (p.len == 0 || p.width < 2 || p.width > kTiledMaxWidth || p.x.dtype != p.y.dtype) return false;
    const DType t = p.x.dtype;
    if (t != DType::F32 && t != DType::F16 && t != DType::BF16) return false;
    const int64_t vec = 16 / int64_t(dtype_size(t));
    if (p.dim % vec != 0 || !vector_friendly(p.x, vec) || !vector_friendly(p.y, vec)) return false;
    if (p.batch > 65535 || ceil_div(p.dim, vec * kTiledGroups) > 0x7fffffff || ceil_div(p.len, int64_t(kTiledChunk)) > 65535) return false;
    ConvTiledArgs a{};
    bind_channel_last_call(p, a);
    a.stages = stages;
    const int64_t columns = ceil_div(p.dim, vec * kTiledGroups) * p.batch, chunks = ceil_div(p.len, int64_t(kTiledChunk));
    const int64_t slots = int64_t(std::max(state_of(ctx).multiprocessors, 1)) * kTiledBlocksPerSM;
    int64_t segments = forced > 0 ? std::min<int64_t>(forced, chunks) : plan_segments(columns, chunks, slots);
    if (forced == 0 && ceil_div(chunks, segments) < kMinChunksPerBlock) {
        if (chunks < kMinChunksPerBlock) return false;
        segments = chunks / kMinChunksPerBlock;
    }
    a.seg_len = ceil_div(chunks, segments) * kTiledChunk;
    return launch_conv_build<TiledLaunch>(t, int(p.width), p.silu, p.bias.has_value(), ctx, a, p.batch);
}

}  // namespace mamba::cuda
