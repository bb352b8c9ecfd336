// Causal depthwise conv1d (mamba_causal_conv1d) and its decode step (mamba_causal_conv1d_update).
// General kernel: one thread per output, any strides and dtypes; x is read `width` times but from L1/L2.
// Channels-contiguous views of one dtype take the tiled kernel (conv1d_tiled.cu) where their channels are whole
// 16-byte vectors, else a vectorized runs kernel (see below).
// Bytes: batch*dim*len*(x + y) + weights; FLOPs: 2*width per output (+ SiLU).
#include "common.cuh"
#include "conv1d_common.cuh"
#include "conv1d_tiled.cuh"
#include "launch.cuh"
#include "ops/causal_conv1d.h"

namespace mamba::cuda {

namespace {

struct ConvArgs {
    AnyPtr x, weight, bias, init, y;
    int64_t x_s[3], w_s[2], b_s, i_s[3], y_s[3];
    int64_t dim, len;
    int width;
    bool has_bias, has_init, silu;
};

// Input at time j (j < 0 reads the initial state, zeros without one) for row (b, d).
__device__ __forceinline__ float conv_input(const ConvArgs & a, int64_t b, int64_t d, int64_t j) {
    if (j >= 0) return a.x.load(b * a.x_s[0] + d * a.x_s[1] + j * a.x_s[2]);
    if (!a.has_init) return 0.0f;
    return a.init.load(b * a.i_s[0] + d * a.i_s[1] + (a.width - 1 + j) * a.i_s[2]);
}

__global__ void causal_conv1d_kernel(ConvArgs a) {
    const int64_t row = blockIdx.x;
    const int64_t b = row / a.dim, d = row % a.dim;
    const int64_t t = blockIdx.y * int64_t(blockDim.x) + threadIdx.x;
    wait_for_producer();  // PDL-safe (launch.cuh): waits before any load, on every path
    allow_dependents();
    if (t >= a.len) return;
    float w[kMaxConvWidth];
#pragma unroll
    for (int k = 0; k < kMaxConvWidth; ++k) w[k] = k < a.width ? a.weight.load(d * a.w_s[0] + k * a.w_s[1]) : 0.0f;
    float acc = a.has_bias ? a.bias.load(d * a.b_s) : 0.0f;
#pragma unroll
    for (int k = 0; k < kMaxConvWidth; ++k)
        if (k < a.width) acc += w[k] * conv_input(a, b, d, t - (a.width - 1) + k);
    if (a.silu) acc = silu_f(acc);
    a.y.store(b * a.y_s[0] + d * a.y_s[1] + t * a.y_s[2], acc);
}

// Final state: the last width-1 inputs of each row, read completely before any is written so that
// final_state may alias initial_state.
__global__ void conv_final_state_kernel(ConvArgs a, AnyPtr fin, int64_t f_s0, int64_t f_s1, int64_t f_s2, int64_t rows) {
    const int64_t row = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
    wait_for_producer();  // PDL-safe (launch.cuh): the convolution before it still reads initial_state
    allow_dependents();
    if (row >= rows) return;
    const int64_t b = row / a.dim, d = row % a.dim;
    float v[kMaxConvWidth];
#pragma unroll
    for (int i = 0; i < kMaxConvWidth - 1; ++i)
        if (i < a.width - 1) v[i] = conv_input(a, b, d, a.len - (a.width - 1) + i);
#pragma unroll
    for (int i = 0; i < kMaxConvWidth - 1; ++i)
        if (i < a.width - 1) fin.store(b * f_s0 + d * f_s1 + i * f_s2, v[i]);
}

// One thread per (batch row, channel): conv_update_channel (conv1d_common.cuh).
template <int kWidth>
__global__ void causal_conv1d_update_kernel(ConvUpdateArgs a) {
    const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
    // PDL-safe (launch.cuh): every thread waits for the previous kernel before any load, then the next
    // kernel may be scheduled.
    wait_for_producer();
    allow_dependents();
    if (i >= a.batch * a.dim) return;
    conv_update_channel<kWidth>(a, i / a.dim, i % a.dim);
}

// ---------------------------------------------------------------------------------------------------
// Channels-contiguous fast path: x and y of one dtype with unit channel stride, i.e. the (batch, len, dim)
// memory a linear layer produces. The op must move batch*len*dim*(x + y) bytes plus dim*width weights,
// and does 2*width FLOPs per output: bandwidth-bound by far, so the goal is each x and y byte crossing
// HBM once, in 16-byte transactions, with many loads in flight.
// Design: a thread owns kVec consecutive channels (one 16-byte vector) for a run of kSteps (8) consecutive
// steps. Its filters and bias stay in registers; it first issues all kSteps + width - 1 vector loads of
// its run (the width - 1 before the run are the halo, re-read from L2 by the neighbouring run), then
// slides a window of the last width - 1 inputs down the time axis and writes y with 16-byte stores.
// A warp covers 32 adjacent channel groups of one step: 512 contiguous bytes per load instruction.
// The halo before step 0 comes from initial_state (zeros without one). The final state is written by
// the thread of each channel group's first run, after it read its initial-state halo, so that
// final_state may alias initial_state without a race (no other run reads the initial state): from its
// window when that run is the whole sequence, else from the last width - 1 rows of x.
// A channel group cut by the end of dim uses scalar accesses; views that are not 16-byte aligned,
// mixed x/y dtypes, widths above 4 or len = 0 take the general kernel above.
template <class T, int Width, bool Silu, bool Bias>
struct ConvChannelLastTraits {
    using Elem = T;
    static constexpr int kWidth = Width;
    static constexpr int kHalo = Width - 1;
    static constexpr int kVec = 16 / int(sizeof(T));  // channels per thread: one 16-byte vector
    // Steps per thread: 8 gives B=1, L=512, D=5376 bf16 336 blocks (2.5 per SM of an H200) while the
    // halo re-reads ((Width-1)/8 of x) mostly hit L1, the previous run being the same block's next warp.
    static constexpr int kSteps = 8;
    static constexpr int kGroupsPerBlock = 32;        // one warp across the channels
    static constexpr int kRunsPerBlock = 4;           // four warps down the time axis
    static constexpr bool kSilu = Silu;
    static constexpr bool kBias = Bias;
};

constexpr int kChannelLastMaxWidth = 4;
constexpr int kChannelLastThreads = 128;

struct ConvChannelLastArgs {
    const void * x;
    void * y;
    AnyPtr weight, bias, init, fin;
    int64_t x_batch, x_step, y_batch, y_step;  // element strides; channel stride is 1
    int64_t w_s[2], b_s, i_s[3], f_s[3];
    int64_t dim, len;
    bool has_init, has_final;
};

// kVec elements of T packed in one 16-byte register quad.
struct ConvPacket {
    uint4 raw;
};

template <class T>
__device__ __forceinline__ T packet_elem(const ConvPacket & p, int i) {
    return reinterpret_cast<const T *>(&p.raw)[i];
}

// Loads the channel group at p: one 16-byte load when the group is whole, else `valid` scalars (zeros after).
template <class Tr, bool Whole>
__device__ __forceinline__ ConvPacket load_group(const typename Tr::Elem * p, int valid) {
    using T = typename Tr::Elem;
    ConvPacket v;
    if constexpr (Whole) {
        v.raw = __ldg(reinterpret_cast<const uint4 *>(p));
    } else {
        v.raw = make_uint4(0, 0, 0, 0);
        T * e = reinterpret_cast<T *>(&v.raw);
#pragma unroll
        for (int i = 0; i < Tr::kVec; ++i)
            if (i < valid) e[i] = p[i];
    }
    return v;
}

template <class Tr, bool Whole>
__device__ __forceinline__ void store_group(typename Tr::Elem * p, int valid, const float (&v)[Tr::kVec]) {
    using T = typename Tr::Elem;
    ConvPacket out;
    T * e = reinterpret_cast<T *>(&out.raw);
#pragma unroll
    for (int i = 0; i < Tr::kVec; ++i) e[i] = from_f32<T>(v[i]);
    if constexpr (Whole) {
        *reinterpret_cast<uint4 *>(p) = out.raw;
    } else {
#pragma unroll
        for (int i = 0; i < Tr::kVec; ++i)
            if (i < valid) p[i] = e[i];
    }
}

// Input of channel c at step j < 0: the initial state, zeros without one.
__device__ __forceinline__ float conv_state_input(const ConvChannelLastArgs & a, int64_t b, int64_t c, int j, int halo) {
    return a.has_init ? a.init.load(b * a.i_s[0] + c * a.i_s[1] + (halo + j) * a.i_s[2]) : 0.0f;
}

// Stores the final state of one channel group, typed so that every index stays a constant (registers).
template <class S, int H, int V>
__device__ __forceinline__ void store_final_state(const ConvChannelLastArgs & a, int64_t base, int valid, const float (&fin)[H][V]) {
    S * p = reinterpret_cast<S *>(a.fin.p);
#pragma unroll
    for (int h = 0; h < H; ++h)
#pragma unroll
        for (int i = 0; i < V; ++i)
            if (i < valid) p[base + i * a.f_s[1] + h * a.f_s[2]] = from_f32<S>(fin[h][i]);
}

template <class Tr, bool Whole>
__device__ __forceinline__ void conv_channel_last_run(const ConvChannelLastArgs & a, int64_t b, int64_t c0, int valid, int64_t t0) {
    using T = typename Tr::Elem;
    constexpr int V = Tr::kVec, H = Tr::kHalo, S = Tr::kSteps;
    const T * x = static_cast<const T *>(a.x) + b * a.x_batch + c0;
    T * y = static_cast<T *>(a.y) + b * a.y_batch + c0;
    const int steps = int(min(int64_t(S), a.len - t0));

    // Issue every load of the run before any arithmetic: the run's x is in flight at once.
    ConvPacket halo_raw[H], run_raw[S];
#pragma unroll
    for (int h = 0; h < H; ++h) {
        const int64_t t = t0 - H + h;
        if (t >= 0) halo_raw[h] = load_group<Tr, Whole>(x + t * a.x_step, valid);
    }
#pragma unroll
    for (int s = 0; s < S; ++s)
        if (s < steps) run_raw[s] = load_group<Tr, Whole>(x + (t0 + s) * a.x_step, valid);

    float w[Tr::kWidth][V], bias[V];
#pragma unroll
    for (int i = 0; i < V; ++i) {
        const int64_t c = c0 + min(i, valid - 1);  // lanes past dim repeat the last channel; never stored
#pragma unroll
        for (int k = 0; k < Tr::kWidth; ++k) w[k][i] = a.weight.load(c * a.w_s[0] + k * a.w_s[1]);
        bias[i] = Tr::kBias ? a.bias.load(c * a.b_s) : 0.0f;
    }

    // window[h] holds step t - H + h for the step t being computed.
    float window[H][V];
#pragma unroll
    for (int h = 0; h < H; ++h) {
        const int j = int(t0 - H + h);  // only meaningful when negative
#pragma unroll
        for (int i = 0; i < V; ++i)
            window[h][i] = t0 - H + h >= 0 ? to_f32<T>(packet_elem<T>(halo_raw[h], i))
                                           : (i < valid ? conv_state_input(a, b, c0 + i, j, H) : 0.0f);
    }

#pragma unroll
    for (int s = 0; s < S; ++s) {
        if (s < steps) {
            float cur[V], out[V];
#pragma unroll
            for (int i = 0; i < V; ++i) cur[i] = to_f32<T>(packet_elem<T>(run_raw[s], i));
#pragma unroll
            for (int i = 0; i < V; ++i) {
                float acc = bias[i];
#pragma unroll
                for (int k = 0; k < H; ++k) acc += w[k][i] * window[k][i];
                acc += w[H][i] * cur[i];
                out[i] = Tr::kSilu ? silu_f(acc) : acc;
            }
            store_group<Tr, Whole>(y + (t0 + s) * a.y_step, valid, out);
#pragma unroll
            for (int i = 0; i < V; ++i) {
#pragma unroll
                for (int k = 0; k + 1 < H; ++k) window[k][i] = window[k + 1][i];
                window[H - 1][i] = cur[i];
            }
        }
    }

    // The first run alone writes the final state, after it read its initial-state halo (so the two
    // may alias). A single run ends with the window holding the last H inputs, state included; a
    // longer sequence has them all in x (len > S >= H).
    if (a.has_final && t0 == 0) {
        float fin[H][V];
        if (a.len <= S) {
#pragma unroll
            for (int h = 0; h < H; ++h)
#pragma unroll
                for (int i = 0; i < V; ++i) fin[h][i] = window[h][i];
        } else {
#pragma unroll
            for (int h = 0; h < H; ++h) {
                const ConvPacket p = load_group<Tr, Whole>(x + (a.len - H + h) * a.x_step, valid);
#pragma unroll
                for (int i = 0; i < V; ++i) fin[h][i] = to_f32<T>(packet_elem<T>(p, i));
            }
        }
        const int64_t base = b * a.f_s[0] + c0 * a.f_s[1];
        switch (a.fin.dtype) {
            case int(DType::F16): store_final_state<f16_t>(a, base, valid, fin); break;
            case int(DType::BF16): store_final_state<bf16_t>(a, base, valid, fin); break;
            default: store_final_state<float>(a, base, valid, fin); break;
        }
    }
}

template <class Tr>
__global__ void __launch_bounds__(kChannelLastThreads) causal_conv1d_channel_last_kernel(ConvChannelLastArgs a) {
    const int64_t group = int64_t(blockIdx.x) * Tr::kGroupsPerBlock + threadIdx.x;
    const int64_t c0 = group * Tr::kVec;
    const int64_t t0 = (int64_t(blockIdx.y) * Tr::kRunsPerBlock + threadIdx.y) * Tr::kSteps;
    const int64_t b = blockIdx.z;
    wait_for_producer();  // PDL-safe (launch.cuh): waits before any load, on every path
    allow_dependents();
    if (c0 >= a.dim || t0 >= a.len) return;
    const int valid = int(min(int64_t(Tr::kVec), a.dim - c0));
    if (valid == Tr::kVec) conv_channel_last_run<Tr, true>(a, b, c0, valid, t0);
    else conv_channel_last_run<Tr, false>(a, b, c0, valid, t0);
}

template <class T, int Width, bool Silu, bool Bias>
void launch_channel_last(mamba_context & ctx, const ConvChannelLastArgs & a, int64_t batch) {
    using Tr = ConvChannelLastTraits<T, Width, Silu, Bias>;
    static_assert(Tr::kGroupsPerBlock * Tr::kRunsPerBlock == kChannelLastThreads, "block shape");
    // Only the first run may reach into the initial state: it is the one that writes the final state.
    static_assert(Tr::kHalo <= Tr::kSteps, "halo longer than a run");
    const dim3 block(Tr::kGroupsPerBlock, Tr::kRunsPerBlock);
    const dim3 grid(unsigned(ceil_div(ceil_div(a.dim, Tr::kVec), Tr::kGroupsPerBlock)),
                    unsigned(ceil_div(ceil_div(a.len, Tr::kSteps), Tr::kRunsPerBlock)), unsigned(batch));
    launch_kernel(ctx, "causal_conv1d_channel_last_kernel", true, causal_conv1d_channel_last_kernel<Tr>, grid, block, 0, a);
    MAMBA_CUDA_CHECK_LAUNCH("causal_conv1d_channel_last_kernel");
}

struct ChannelLastLaunch {
    template <class T, int Width, bool Silu, bool Bias>
    static void run(mamba_context & ctx, const ConvChannelLastArgs & a, int64_t batch) {
        launch_channel_last<T, Width, Silu, Bias>(ctx, a, batch);
    }
};

// Runs the channels-contiguous kernel when the arguments suit it; false leaves the work to the general path.
bool try_causal_conv1d_channel_last(mamba_context & ctx, const CausalConv1dParams & p) {
    if (p.len == 0 || p.width < 2 || p.width > kChannelLastMaxWidth || p.x.dtype != p.y.dtype) return false;
    const int64_t vec = 16 / int64_t(dtype_size(p.x.dtype));
    using AnyTraits = ConvChannelLastTraits<float, 4, false, false>;  // every configuration shares the shape
    constexpr int64_t kMinSteps = AnyTraits::kSteps, kMinRunsPerBlock = AnyTraits::kRunsPerBlock;
    if (!vector_friendly(p.x, vec) || !vector_friendly(p.y, vec)) return false;
    if (p.batch > 65535 || ceil_div(ceil_div(p.len, kMinSteps), kMinRunsPerBlock) > 65535 || ceil_div(p.dim, vec * 32) > 0x7fffffff) return false;
    ConvChannelLastArgs a{};
    bind_channel_last_call(p, a);
    return launch_conv_build<ChannelLastLaunch>(p.x.dtype, int(p.width), p.silu, p.bias.has_value(), ctx, a, p.batch);
}

}  // namespace

void causal_conv1d(mamba_context & ctx, const CausalConv1dParams & p) {
    const int64_t rows = p.batch * p.dim;
    if (rows == 0) return;
    if (try_causal_conv1d_tiled(ctx, p) || try_causal_conv1d_channel_last(ctx, p)) return;
    ConvArgs a{};
    a.x = any(p.x);
    copy_strides(a.x_s, p.x);
    bind_filters_and_initial_state(p, a);
    a.has_bias = p.bias.has_value();
    a.y = any(p.y);
    copy_strides(a.y_s, p.y);
    a.dim = p.dim;
    a.len = p.len;
    a.width = int(p.width);
    a.silu = p.silu;
    if (p.len > 0) {
        const int threads = 256;
        if (rows > 0x7fffffff || ceil_div(p.len, threads) > 65535) fail(MAMBA_STATUS_UNSUPPORTED, "causal_conv1d on CUDA: batch*dim or len too large");
        const dim3 grid(unsigned(rows), unsigned(ceil_div(p.len, threads)));
        launch_kernel(ctx, "causal_conv1d_kernel", true, causal_conv1d_kernel, grid, dim3(threads), 0, a);
        MAMBA_CUDA_CHECK_LAUNCH("causal_conv1d_kernel");
    }
    if (p.final_state) {
        const int threads = 256;
        launch_kernel(ctx, "conv_final_state_kernel", true, conv_final_state_kernel, dim3(unsigned(ceil_div(rows, threads))), dim3(threads), 0, a,
                      any(*p.final_state), p.final_state->stride[0], p.final_state->stride[1], p.final_state->stride[2], rows);
        MAMBA_CUDA_CHECK_LAUNCH("conv_final_state_kernel");
    }
}

void causal_conv1d_update(mamba_context & ctx, const CausalConv1dUpdateParams & p) {
    const int64_t n = p.batch * p.dim;
    if (n == 0) return;
    const ConvUpdateArgs a = bind_conv_update(p);
    const int threads = 256;
    // width 4: the Mamba and Mamba-2 checkpoints' filter
    const auto kernel = a.width == 4 ? causal_conv1d_update_kernel<4> : causal_conv1d_update_kernel<0>;
    launch_kernel(ctx, "causal_conv1d_update_kernel", true, kernel, dim3(unsigned(ceil_div(n, threads))), dim3(threads), 0, a);
    MAMBA_CUDA_CHECK_LAUNCH("causal_conv1d_update_kernel");
    note_writes(ctx, {&p.y, &p.conv_state});
}

}  // namespace mamba::cuda
