// CPU causal depthwise conv1d and its decode step. Channel-last inputs (the usual (batch, len, dim)
// memory viewed as (batch, dim, len)) are processed a row of all channels per step, vectorized across
// channels; time-contiguous inputs one channel at a time, vectorized across time. The width is a
// template parameter so the taps unroll.
#include <algorithm>
#include <vector>

#include "core/context.h"
#include "cpu/convert.h"
#include "cpu/vec_math.h"
#include "ops/causal_conv1d.h"

namespace mamba::cpu {

namespace {

constexpr int64_t kBlockChannels = 64;  // channels per block in the decode step: four AVX-512 vectors
constexpr int64_t kMinStretch = 32;     // time steps a task covers at least, against the K - 1 re-read
constexpr int64_t kChannelSteps = 2048; // time steps per block on the one-channel-at-a-time path
constexpr int64_t kMinParallelElements = 1 << 14;  // below this a parallel region costs more than it saves

void apply_silu(float * v, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) v[i] = silu_fast(v[i]);
}

// Loads `count` channels from d0 of the input at time `t` of sequence b; t < 0 reads the initial state
// (or zeros without one).
void load_inputs(const CausalConv1dParams & p, int64_t b, int64_t d0, int64_t count, int64_t t, float * out) {
    if (t >= 0) {
        load_floats(p.x.dtype, element(p.x, {b, d0, t}), count, p.x.stride[1], out);
    } else if (p.initial_state) {
        const Tensor & s = *p.initial_state;
        load_floats(s.dtype, element(s, {b, d0, p.width - 1 + t}), count, s.stride[1], out);
    } else {
        std::fill(out, out + count, 0.0f);
    }
}

// Taps (width rows of `count` channels from d0, `pitch` floats apart) and bias (zeros when absent) of a
// block of channels.
void load_filters(const Tensor & weight, const std::optional<Tensor> & bias, int64_t width, int64_t d0, int64_t count, int64_t pitch,
                  float * taps, float * bias_out) {
    for (int64_t k = 0; k < width; ++k) load_floats(weight.dtype, element(weight, {d0, k}), count, weight.stride[0], taps + k * pitch);
    if (bias) load_floats(bias->dtype, element(*bias, {d0}), count, bias->stride[0], bias_out);
    else std::fill(bias_out, bias_out + count, 0.0f);
}

// Channel-last inputs: a task covers a stretch of time steps of one sequence, all channels at once, and
// keeps the last K input rows in a ring. Each step reads one row of x and writes one row of y, and
// successive rows are adjacent in memory, so a task streams through one contiguous region that hardware
// prefetchers follow. Stretches re-read the K - 1 steps before them; they are cut only as short as
// filling the threads needs.
template <int K>
void conv_rows(const mamba_context & ctx, const CausalConv1dParams & p) {
    const int64_t D = p.dim;
    const int64_t threads = std::max<int64_t>(1, ctx.num_threads);
    int64_t stretches = 1;
    if (p.batch < 2 * threads) stretches = std::max<int64_t>(1, std::min((2 * threads + p.batch - 1) / p.batch, p.len / kMinStretch));
    const int64_t tasks = p.batch * stretches;
    const bool parallel = p.batch * D * p.len >= kMinParallelElements;
    // Filters of every channel, tap-major, shared by all tasks.
    std::vector<float> taps(static_cast<size_t>(K * D)), bias(static_cast<size_t>(D));
    const int64_t channel_blocks = (D + kBlockChannels - 1) / kBlockChannels;
#pragma omp parallel num_threads(ctx.num_threads) if (parallel)
    {
#pragma omp for schedule(static)
        for (int64_t block = 0; block < channel_blocks; ++block) {
            const int64_t d0 = block * kBlockChannels;
            load_filters(p.weight, p.bias, K, d0, std::min(kBlockChannels, D - d0), D, &taps[size_t(d0)], &bias[size_t(d0)]);
        }
        // (implicit barrier: the filters are ready)
        std::vector<float> ring(static_cast<size_t>(K * D)), out(static_cast<size_t>(D));
#pragma omp for schedule(static)
        for (int64_t task = 0; task < tasks; ++task) {
            const int64_t b = task / stretches, stretch = task % stretches;
            const int64_t begin = p.len * stretch / stretches, end = p.len * (stretch + 1) / stretches;
            // The input of step t lives in ring row (t - begin + K - 1) % K.
            auto row = [&](int64_t t) { return &ring[size_t((t - begin + K - 1) % K * D)]; };
            for (int64_t t = begin - (K - 1); t < begin; ++t) load_inputs(p, b, 0, D, t, row(t));
            // Row pointers advance by a fixed step; no index arithmetic per row.
            const char * x_row = element(p.x, {b, 0, begin});
            char * y_row = element(p.y, {b, 0, begin});
            const int64_t x_step = p.x.stride[2] * int64_t(dtype_size(p.x.dtype)), y_step = p.y.stride[2] * int64_t(dtype_size(p.y.dtype));
            for (int64_t t = begin; t < end; ++t, x_row += x_step, y_row += y_step) {
                load_floats(p.x.dtype, x_row, D, p.x.stride[1], row(t));
                const float * window[K];
                for (int k = 0; k < K; ++k) window[k] = row(t - (K - 1) + k);
                const float * w = taps.data();
                const float * bs = bias.data();
                float * o = out.data();
#pragma omp simd
                for (int64_t c = 0; c < D; ++c) {
                    float acc = bs[c];
                    for (int k = 0; k < K; ++k) acc += w[k * D + c] * window[k][c];
                    o[c] = acc;
                }
                if (p.silu) apply_silu(o, D);
                store_floats(p.y.dtype, y_row, D, p.y.stride[1], o);
            }
        }
    }
}

template <int K>
void conv_single_channels(const mamba_context & ctx, const CausalConv1dParams & p) {
    const int64_t channels = p.batch * p.dim;
    const bool parallel = channels * p.len >= kMinParallelElements;
#pragma omp parallel num_threads(ctx.num_threads) if (parallel)
    {
        std::vector<float> in(size_t(K - 1 + kChannelSteps)), out(static_cast<size_t>(kChannelSteps));
#pragma omp for schedule(static)
        for (int64_t channel = 0; channel < channels; ++channel) {
            const int64_t b = channel / p.dim, d = channel % p.dim;
            float w[K];
            for (int k = 0; k < K; ++k) w[k] = load_float(p.weight.dtype, element(p.weight, {d, k}));
            const float bias = p.bias ? load_float(p.bias->dtype, element(*p.bias, {d})) : 0.0f;
            for (int64_t t0 = 0; t0 < p.len; t0 += kChannelSteps) {
                const int64_t nt = std::min(kChannelSteps, p.len - t0);
                for (int64_t j = 0; j < K - 1; ++j) load_inputs(p, b, d, 1, t0 - (K - 1) + j, &in[size_t(j)]);
                load_floats(p.x.dtype, element(p.x, {b, d, t0}), nt, p.x.stride[2], &in[K - 1]);
                const float * window = in.data();
                float * o = out.data();
#pragma omp simd
                for (int64_t t = 0; t < nt; ++t) {
                    float acc = bias;
                    for (int k = 0; k < K; ++k) acc += w[k] * window[t + k];
                    o[t] = acc;
                }
                if (p.silu) apply_silu(o, nt);
                store_floats(p.y.dtype, element(p.y, {b, d, t0}), nt, p.y.stride[2], o);
            }
        }
    }
}

// The last width - 1 inputs, reaching into the initial state when len < width - 1, moved a step (a row of
// all channels) at a time. Runs after the convolution, and reads every step before writing any, because
// final_state may be initial_state itself.
void write_final_state(const mamba_context & ctx, const CausalConv1dParams & p) {
    const Tensor & fs = *p.final_state;
    const int64_t keep = p.width - 1, D = p.dim;
#pragma omp parallel num_threads(ctx.num_threads) if (p.batch * D * keep >= kMinParallelElements)
    {
        std::vector<float> last(static_cast<size_t>(keep * D));
#pragma omp for schedule(static)
        for (int64_t b = 0; b < p.batch; ++b) {
            for (int64_t j = 0; j < keep; ++j) load_inputs(p, b, 0, D, p.len - keep + j, &last[size_t(j * D)]);
            for (int64_t j = 0; j < keep; ++j) store_floats(fs.dtype, element(fs, {b, 0, j}), D, fs.stride[1], &last[size_t(j * D)]);
        }
    }
}

template <int K>
void conv(const mamba_context & ctx, const CausalConv1dParams & p) {
    // Time-contiguous rows read fastest one channel at a time; everything else a row of channels per step.
    const bool time_contiguous = p.x.stride[2] == 1 && p.len > 1 && p.x.stride[1] != 1;
    if (time_contiguous) conv_single_channels<K>(ctx, p);
    else conv_rows<K>(ctx, p);
}

template <int K>
void update(const mamba_context & ctx, const CausalConv1dUpdateParams & p) {
    constexpr int64_t C = kBlockChannels;
    const Tensor & st = p.conv_state;
    const int64_t channel_blocks = (p.dim + C - 1) / C;
    const int64_t blocks = p.batch * channel_blocks;
#pragma omp parallel num_threads(ctx.num_threads) if (p.batch * p.dim * K >= kMinParallelElements)
    {
        // window rows 0..K-2 hold the state, row K-1 the new input.
        std::vector<float> window(size_t(K * C)), taps(size_t(K * C)), bias(C), out(C);
#pragma omp for schedule(static)
        for (int64_t block = 0; block < blocks; ++block) {
            const int64_t b = block / channel_blocks, d0 = block % channel_blocks * C;
            const int64_t nc = std::min(C, p.dim - d0);
            load_filters(p.weight, p.bias, K, d0, nc, C, taps.data(), bias.data());
            for (int64_t k = 0; k < K - 1; ++k) load_floats(st.dtype, element(st, {b, d0, k}), nc, st.stride[1], &window[size_t(k * C)]);
            load_floats(p.x.dtype, element(p.x, {b, d0}), nc, p.x.stride[1], &window[size_t((K - 1) * C)]);
            const float * w = taps.data();
            const float * in = window.data();
            const float * bs = bias.data();
            float * o = out.data();
#pragma omp simd
            for (int64_t c = 0; c < nc; ++c) {
                float acc = bs[c];
                for (int k = 0; k < K; ++k) acc += w[k * C + c] * in[k * C + c];
                o[c] = acc;
            }
            if (p.silu) apply_silu(o, nc);
            // Shift the window left by one step into the state: the oldest input drops out.
            for (int64_t k = 0; k < K - 1; ++k) store_floats(st.dtype, element(st, {b, d0, k}), nc, st.stride[1], &window[size_t((k + 1) * C)]);
            store_floats(p.y.dtype, element(p.y, {b, d0}), nc, p.y.stride[1], o);
        }
    }
}

}  // namespace

void causal_conv1d(mamba_context & ctx, const CausalConv1dParams & p) {
    if (p.len > 0) {
        switch (p.width) {
            case 2: conv<2>(ctx, p); break;
            case 3: conv<3>(ctx, p); break;
            case 4: conv<4>(ctx, p); break;
            case 5: conv<5>(ctx, p); break;
            case 6: conv<6>(ctx, p); break;
            case 7: conv<7>(ctx, p); break;
            case 8: conv<8>(ctx, p); break;
            default: fail(MAMBA_STATUS_INTERNAL, "causal_conv1d: width ", p.width, " passed validation");
        }
    }
    if (p.final_state) write_final_state(ctx, p);
}

void causal_conv1d_update(mamba_context & ctx, const CausalConv1dUpdateParams & p) {
    switch (p.width) {
        case 2: update<2>(ctx, p); break;
        case 3: update<3>(ctx, p); break;
        case 4: update<4>(ctx, p); break;
        case 5: update<5>(ctx, p); break;
        case 6: update<6>(ctx, p); break;
        case 7: update<7>(ctx, p); break;
        case 8: update<8>(ctx, p); break;
        default: fail(MAMBA_STATUS_INTERNAL, "causal_conv1d_update: width ", p.width, " passed validation");
    }
}

}  // namespace mamba::cpu
