// mamba_causal_conv1d and mamba_causal_conv1d_update against a float64 reference, per backend, dtype,
// width, layout and option; the decode step applied token by token must reproduce the full convolution.
#include "backend_test.h"

namespace {

using mt::DType;
using mt::Tensor;

double silu(double v) { return v / (1.0 + std::exp(-v)); }

struct ConvReference {
    std::vector<double> y;            // (batch, dim, len)
    std::vector<double> final_state;  // (batch, dim, width - 1)
};

// Written from the definition: the sequence seen by channel (b, d) is the width - 1 state inputs
// (zeros without a state) followed by x[b, d, :].
ConvReference reference_conv(const Tensor & x, const Tensor & w, const Tensor * bias, const Tensor * init, bool act) {
    const int64_t B = x.shape()[0], D = x.shape()[1], L = x.shape()[2], K = w.shape()[1];
    ConvReference out;
    out.y.resize(size_t(B * D * L));
    out.final_state.resize(size_t(B * D * (K - 1)));
    for (int64_t b = 0; b < B; ++b) {
        for (int64_t d = 0; d < D; ++d) {
            std::vector<double> seq;
            for (int64_t j = 0; j < K - 1; ++j) seq.push_back(init ? init->at((b * D + d) * (K - 1) + j) : 0.0);
            for (int64_t t = 0; t < L; ++t) seq.push_back(x.at((b * D + d) * L + t));
            for (int64_t t = 0; t < L; ++t) {
                double acc = bias ? bias->at(d) : 0.0;
                for (int64_t k = 0; k < K; ++k) acc += w.at(d * K + k) * seq[size_t(t + k)];
                out.y[size_t((b * D + d) * L + t)] = act ? silu(acc) : acc;
            }
            for (int64_t j = 0; j < K - 1; ++j) out.final_state[size_t((b * D + d) * (K - 1) + j)] = seq[size_t(L + j)];
        }
    }
    return out;
}

// Memory layouts of the (batch, dim, len) activations.
enum class Layout { Contiguous, ChannelLast, ChannelLastPadded, ChannelLastAligned, TimeContiguousPadded };

const char * layout_name(Layout l) {
    switch (l) {
        case Layout::Contiguous: return "contiguous";
        case Layout::ChannelLast: return "channel-last";
        case Layout::ChannelLastPadded: return "channel-last padded";
        case Layout::ChannelLastAligned: return "channel-last aligned";
        case Layout::TimeContiguousPadded: return "time-contiguous padded";
    }
    return "?";
}

std::vector<int64_t> activation_strides(Layout l, int64_t B, int64_t D, int64_t L) {
    switch (l) {
        case Layout::Contiguous: return {};
        // (batch, len, dim) memory, as produced by a linear layer, viewed as (batch, dim, len)
        case Layout::ChannelLast: return {L * D, 1, D};
        case Layout::ChannelLastPadded: return {L * (D + 3), 1, D + 3};
        // rows padded to a multiple of 8 elements (16-byte vectors for every dtype) with dim itself not
        // necessarily one: the last channel group is cut short
        case Layout::ChannelLastAligned: {
            const int64_t row = (D + 7) / 8 * 8 + 8;
            return {L * row, 1, row};
        }
        case Layout::TimeContiguousPadded: return mt::padded_strides({B, D, L}, 2, 5);
    }
    return {};
}

struct Options {
    bool bias, initial_state, final_state, silu;
};

std::string describe(DType dt, int64_t K, Layout l, const Options & o) {
    return std::string(mt::dtype_name(dt)) + " width " + std::to_string(K) + " " + layout_name(l) + (o.bias ? " bias" : "") +
           (o.initial_state ? " initial_state" : "") + (o.final_state ? " final_state" : "") + (o.silu ? " silu" : "");
}

// Tolerance for a result of `dtype` that sums `width` products of values below 2 in float32.
double conv_tolerance(DType dtype) { return mt::dtype_epsilon(dtype) + 2e-6; }

}  // namespace

class CausalConv1dTest : public mt::BackendTest {
protected:
    std::mt19937_64 rng_{2024};

    void run(int64_t B, int64_t D, int64_t L, int64_t K, DType dt, Layout layout, const Options & o, DType state_dtype) {
        SCOPED_TRACE(describe(dt, K, layout, o) + " shape (" + std::to_string(B) + ", " + std::to_string(D) + ", " + std::to_string(L) + ")");
        const auto strides = activation_strides(layout, B, D, L);
        const auto state_strides = layout == Layout::Contiguous ? std::vector<int64_t>{} : mt::padded_strides({B, D, K - 1}, 2, 2);
        Tensor x({B, D, L}, dt, strides), w({D, K}, dt), bias({D}, dt), y({B, D, L}, dt, strides);
        Tensor init({B, D, K - 1}, state_dtype, state_strides), fin({B, D, K - 1}, state_dtype, state_strides);
        x.fill_uniform(rng_, -2, 2);
        w.fill_uniform(rng_, -1, 1);
        bias.fill_uniform(rng_, -1, 1);
        init.fill_uniform(rng_, -2, 2);
        x.upload(ctx());
        w.upload(ctx());
        y.upload_poisoned(ctx());
        mamba_causal_conv1d_args a{};
        a.x = x.dl();
        a.weight = w.dl();
        a.y = y.dl();
        a.silu = o.silu;
        if (o.bias) {
            bias.upload(ctx());
            a.bias = bias.dl();
        }
        if (o.initial_state) {
            init.upload(ctx());
            a.initial_state = init.dl();
        }
        if (o.final_state) {
            fin.upload_poisoned(ctx());
            a.final_state = fin.dl();
        }
        MAMBA_ASSERT_OK(mamba_causal_conv1d(ctx(), &a));
        const auto ref = reference_conv(x, w, o.bias ? &bias : nullptr, o.initial_state ? &init : nullptr, o.silu);
        y.download(ctx());
        const double tol = conv_tolerance(dt);
        EXPECT_CLOSE(y.values(), ref.y, tol, tol);
        if (o.final_state) {
            fin.download(ctx());
            // The state holds inputs, so it is exact up to the rounding into its dtype.
            Tensor expected({B, D, K - 1}, state_dtype);
            expected.values() = ref.final_state;
            expected.round_to_dtype();
            EXPECT_EQ(fin.values(), expected.values());
        }
    }

    // A prompt of B x D channels processed in chunks of the given lengths, in `layout`, the state carried
    // in one buffer used as initial and final state: each chunk's outputs and the final state must equal
    // the float64 reference of the whole prompt at once.
    void run_chunked_prefill(std::mt19937_64 & rng, DType dt, Layout layout, int64_t B, int64_t D, const std::vector<int64_t> & chunks, double tol) {
        const int64_t K = 4;
        int64_t L = 0;
        for (int64_t c : chunks) L += c;
        Tensor x({B, D, L}, dt), w({D, K}, dt), bias({D}, dt), state({B, D, K - 1}, dt);
        x.fill_uniform(rng, -2, 2);
        w.fill_uniform(rng, -1, 1);
        bias.fill_uniform(rng, -1, 1);
        state.fill_uniform(rng, -2, 2);
        const auto ref = reference_conv(x, w, &bias, &state, true);
        w.upload(ctx());
        bias.upload(ctx());
        state.upload(ctx());
        int64_t t0 = 0;
        for (int64_t n : chunks) {
            const auto strides = activation_strides(layout, B, D, n);
            Tensor xc({B, D, n}, dt, strides), yc({B, D, n}, dt, strides);
            for (int64_t i = 0; i < B * D; ++i)
                for (int64_t t = 0; t < n; ++t) xc.at(i * n + t) = x.at(i * L + t0 + t);
            xc.upload(ctx());
            yc.upload_poisoned(ctx());
            mamba_causal_conv1d_args a{xc.dl(), w.dl(), bias.dl(), state.dl(), yc.dl(), state.dl(), 1};
            MAMBA_ASSERT_OK(mamba_causal_conv1d(ctx(), &a));
            yc.download(ctx());
            std::vector<double> expected;
            for (int64_t i = 0; i < B * D; ++i)
                for (int64_t t = 0; t < n; ++t) expected.push_back(ref.y[size_t(i * L + t0 + t)]);
            EXPECT_CLOSE(yc.values(), expected, tol, tol) << "chunk at " << t0;
            t0 += n;
        }
        state.download(ctx());
        EXPECT_EQ(state.values(), ref.final_state);
    }
};

TEST_P(CausalConv1dTest, MatchesFloat64Reference) {
    for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
        for (int64_t K : {2, 3, 4}) {
            for (Layout layout : {Layout::Contiguous, Layout::ChannelLast, Layout::ChannelLastPadded, Layout::ChannelLastAligned,
                                  Layout::TimeContiguousPadded}) {
                for (int mask = 0; mask < 16; ++mask) {
                    const Options o{bool(mask & 1), bool(mask & 2), bool(mask & 4), bool(mask & 8)};
                    run(2, 70, 37, K, dt, layout, o, dt);
                    // len = 1: the final state reaches back into the initial state for width > 2
                    run(1, 3, 1, K, dt, layout, o, dt);
                }
            }
        }
    }
}

TEST_P(CausalConv1dTest, WideFiltersAndLargeShapes) {
    const Options all{true, true, true, true};
    for (int64_t K : {5, 6, 7, 8}) {
        run(2, 9, 11, K, DType::F32, Layout::ChannelLast, all, DType::F32);
        run(2, 9, 11, K, DType::BF16, Layout::TimeContiguousPadded, all, DType::BF16);
        run(1, 4, 3, K, DType::F32, Layout::Contiguous, {false, true, true, false}, DType::F32);
    }
    // Several channel and time tiles, split over threads; a time-contiguous row longer than one block.
    for (Layout layout : {Layout::ChannelLast, Layout::ChannelLastPadded, Layout::Contiguous}) {
        run(3, 130, 150, 4, DType::BF16, layout, all, DType::BF16);
        run(3, 130, 150, 4, DType::F32, layout, {false, false, true, false}, DType::F32);
    }
    run(2, 3, 2500, 4, DType::F16, Layout::TimeContiguousPadded, all, DType::F16);
}

// Work is split by thread count (sequences cut into stretches); odd counts must not change the result.
TEST_P(CausalConv1dTest, SplitsOverManyThreads) {
    ctx_ = mt::make_context(GetParam(), 0, 7);
    const Options all{true, true, true, true};
    for (Layout layout : {Layout::ChannelLast, Layout::TimeContiguousPadded}) {
        run(1, 64, 333, 4, DType::F32, layout, all, DType::F32);
        run(2, 80, 150, 3, DType::BF16, layout, all, DType::BF16);
        run(1, 5, 2, 4, DType::F32, layout, all, DType::F32);
    }
}

// The CUDA kernels of channels-contiguous views: by default the tiled kernel where the channels are whole 16-byte
// vectors; MAMBA_CUDA_CONV_KERNEL=runs the runs kernel; MAMBA_CUDA_CONV_SEGMENTS=1 the tiled kernel with one block
// walking each sequence through its ring of chunks, with every ring depth (MAMBA_CUDA_CONV_STAGES, 3 to 6) over one to
// three segments. The CPU ignores the variables.
struct ConvKernelSetting {
    const char * kernel;
    const char * segments;
    const char * stages;
};
const ConvKernelSetting kConvKernelSettings[] = {{nullptr, nullptr, nullptr}, {"runs", nullptr, nullptr}, {nullptr, "1", "6"},
                                                 {nullptr, "1", "3"},         {nullptr, "2", "4"},       {nullptr, "3", "5"}};

// Runs `body` once per setting on CUDA (each named in a trace), once on the CPU.
template <class Body>
void for_each_conv_kernel(bool on_cuda, Body && body) {
    for (const ConvKernelSetting & k : kConvKernelSettings) {
        SCOPED_TRACE(std::string("MAMBA_CUDA_CONV_KERNEL=") + (k.kernel ? k.kernel : "") + " MAMBA_CUDA_CONV_SEGMENTS=" + (k.segments ? k.segments : "") +
                     " MAMBA_CUDA_CONV_STAGES=" + (k.stages ? k.stages : ""));
        const mt::ScopedEnv kernel("MAMBA_CUDA_CONV_KERNEL", k.kernel), segments("MAMBA_CUDA_CONV_SEGMENTS", k.segments),
            stages("MAMBA_CUDA_CONV_STAGES", k.stages);
        body();
        if (!on_cuda) return;
    }
}

// Channels-contiguous views on CUDA: the runs kernel's runs of 8 steps over groups of 16-byte channel vectors and the
// tiled kernel's chunks of 32 steps: lengths around and across run, chunk and block boundaries, a last channel group
// cut by dim, several batches, sequences shorter than the filter's reach, and views whose rows break the vector
// alignment.
TEST_P(CausalConv1dTest, ChannelLastRunsAndChannelGroups) {
    for_each_conv_kernel(on_cuda(), [&] {
        for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
            for (int64_t K : {2, 3, 4}) {
                for (int mask = 0; mask < 16; ++mask) {
                    const Options o{bool(mask & 1), bool(mask & 2), bool(mask & 4), bool(mask & 8)};
                    run(3, 13, 50, K, dt, Layout::ChannelLastAligned, o, dt);  // 7 runs over 2 blocks, the last cut; a cut channel group
                    run(3, 16, 70, K, dt, Layout::ChannelLastAligned, o, dt);  // whole vectors in padded rows: 3 chunks, the last cut
                    run(2, 24, 2, K, dt, Layout::ChannelLast, o, dt);          // len below width - 1 for width 4
                    run(1, 8, 8, K, dt, Layout::ChannelLast, o, dt);           // exactly one run
                }
                const Options all{true, true, true, true};
                run(2, 264, 130, K, dt, Layout::ChannelLast, all, dt);          // 5 blocks along time, 2 or more along dim
                run(2, 20, 65, K, dt, Layout::ChannelLastPadded, all, dt);      // rows not 16-byte aligned
                run(1, 12, 33, K, dt, Layout::ChannelLastAligned, all, DType::F32);  // states in another dtype
                run(2, 16, 100, K, dt, Layout::ChannelLast, all, DType::F32);   // the same over whole vectors
            }
        }
    });
}

// Long sequences on the tiled kernel: the ring wraps many times with one segment a sequence, segments of several
// chunks as planned at a model's width (mamba2-2.7b's conv: 5376 channels, 21 tiles of 256 bf16 channels), a last tile
// of one channel vector (264 channels), a last chunk and segment cut short.
TEST_P(CausalConv1dTest, LongSequencesOverChannelTiles) {
    const Options all{true, true, true, true};
    for_each_conv_kernel(on_cuda(), [&] {
        for (DType dt : {DType::F32, DType::BF16})
            for (int64_t K : {2, 4}) run(2, 264, 1000, K, dt, Layout::ChannelLast, all, dt);
        run(1, 5376, 700, 4, DType::BF16, Layout::ChannelLast, all, DType::BF16);
        run(4, 1536, 300, 4, DType::F16, Layout::ChannelLast, {true, false, true, true}, DType::F16);
    });
    // mamba-2.8b's batch-1 prefill as the plan cuts it (13 segments of 5 chunks); 10.5 M outputs, so on CUDA only.
    if (on_cuda()) run(1, 5120, 2048, 4, DType::BF16, Layout::ChannelLast, all, DType::BF16);
}

// The chunked prefill of the channels-contiguous layout, one buffer as initial and final state: the
// blocks that write the final state must not disturb the blocks that read the initial state.
TEST_P(CausalConv1dTest, ChannelLastChunkedPrefillWithInPlaceState) {
    std::mt19937_64 rng(19);
    for_each_conv_kernel(on_cuda(), [&] {
        for (DType dt : {DType::F32, DType::BF16}) {
            SCOPED_TRACE(mt::dtype_name(dt));
            run_chunked_prefill(rng, dt, Layout::ChannelLast, 2, 40, {70, 2, 1, 33, 16}, conv_tolerance(dt));
            run_chunked_prefill(rng, dt, Layout::ChannelLast, 3, 512, {300, 2, 97}, conv_tolerance(dt));
        }
    });
}

TEST_P(CausalConv1dTest, MixedDtypes) {
    std::mt19937_64 rng(5);
    const int64_t B = 2, D = 33, L = 9, K = 4;
    // weight stored tap-major (K, D) and bias every other element: filters need not be contiguous either
    Tensor x({B, D, L}, DType::BF16, activation_strides(Layout::ChannelLast, B, D, L)), w({D, K}, DType::F32, {1, D}), bias({D}, DType::F16, {2});
    Tensor init({B, D, K - 1}, DType::F32), fin({B, D, K - 1}, DType::F32), y({B, D, L}, DType::F32);
    x.fill_uniform(rng, -2, 2);
    w.fill_uniform(rng, -1, 1);
    bias.fill_uniform(rng, -1, 1);
    init.fill_uniform(rng, -2, 2);
    for (Tensor * t : {&x, &w, &bias, &init}) t->upload(ctx());
    y.upload_poisoned(ctx());
    fin.upload_poisoned(ctx());
    mamba_causal_conv1d_args a{x.dl(), w.dl(), bias.dl(), init.dl(), y.dl(), fin.dl(), 1};
    MAMBA_ASSERT_OK(mamba_causal_conv1d(ctx(), &a));
    const auto ref = reference_conv(x, w, &bias, &init, true);
    y.download(ctx());
    fin.download(ctx());
    EXPECT_CLOSE(y.values(), ref.y, 2e-6, 2e-6);
    EXPECT_EQ(fin.values(), ref.final_state);
}

// A prompt processed in chunks, the state carried in one buffer used as initial and final state,
// gives the same outputs as the whole prompt at once.
TEST_P(CausalConv1dTest, ChunkedPrefillWithInPlaceStateMatchesWholeSequence) {
    std::mt19937_64 rng(9);
    run_chunked_prefill(rng, DType::F32, Layout::Contiguous, 2, 20, {5, 1, 2, 9}, 2e-6);
}

TEST_P(CausalConv1dTest, EmptySequenceStillReturnsTheInitialStateAsFinalState) {
    std::mt19937_64 rng(3);
    Tensor x({2, 5, 0}, DType::F32), w({5, 3}, DType::F32), y({2, 5, 0}, DType::F32), init({2, 5, 2}, DType::BF16), fin({2, 5, 2}, DType::F32);
    w.fill_uniform(rng, -1, 1);
    init.fill_uniform(rng, -1, 1);
    for (Tensor * t : {&x, &w, &y, &init}) t->upload(ctx());
    fin.upload_poisoned(ctx());
    mamba_causal_conv1d_args a{x.dl(), w.dl(), nullptr, init.dl(), y.dl(), fin.dl(), 0};
    MAMBA_ASSERT_OK(mamba_causal_conv1d(ctx(), &a));
    fin.download(ctx());
    EXPECT_EQ(fin.values(), init.values());
}

TEST_P(CausalConv1dTest, InvalidArgumentsNameTheArgument) {
    Tensor x({2, 8, 5}, DType::F32), w({8, 4}, DType::F32), y({2, 8, 5}, DType::F32), xi({2, 8, 5}, DType::I32);
    Tensor w_rows({9, 4}, DType::F32), w_wide({8, 9}, DType::F32), w_narrow({8, 1}, DType::F32), state_bad({2, 8, 4}, DType::F32);
    for (Tensor * t : {&x, &w, &y, &xi, &w_rows, &w_wide, &w_narrow, &state_bad}) t->upload(ctx());
    auto expect_error = [&](mamba_causal_conv1d_args a, mamba_status status, const std::string & message) {
        EXPECT_EQ(mamba_causal_conv1d(ctx(), &a), status) << message;
        EXPECT_NE(std::string(mamba_last_error()).find(message), std::string::npos) << mamba_last_error();
    };
    const mamba_causal_conv1d_args ok{x.dl(), w.dl(), nullptr, nullptr, y.dl(), nullptr, 1};
    MAMBA_ASSERT_OK(mamba_causal_conv1d(ctx(), &ok));
    EXPECT_EQ(mamba_causal_conv1d(ctx(), nullptr), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(), "mamba_causal_conv1d: argument 'args' is null");
    auto a = ok;
    a.x = nullptr;
    expect_error(a, MAMBA_STATUS_INVALID_ARGUMENT, "mamba_causal_conv1d: argument 'x' is null");
    a = ok;
    a.y = nullptr;
    expect_error(a, MAMBA_STATUS_INVALID_ARGUMENT, "argument 'y' is null");
    a = ok;
    a.x = xi.dl();
    expect_error(a, MAMBA_STATUS_UNSUPPORTED, "argument 'x' has dtype int32");
    a = ok;
    a.weight = w_rows.dl();
    expect_error(a, MAMBA_STATUS_INVALID_ARGUMENT, "argument 'weight' has shape (9, 4), expected (8, *)");
    a = ok;
    a.weight = w_wide.dl();
    expect_error(a, MAMBA_STATUS_UNSUPPORTED, "argument 'weight' has width 9");
    a = ok;
    a.weight = w_narrow.dl();
    expect_error(a, MAMBA_STATUS_UNSUPPORTED, "argument 'weight' has width 1");
    a = ok;
    a.initial_state = state_bad.dl();
    expect_error(a, MAMBA_STATUS_INVALID_ARGUMENT, "argument 'initial_state' has shape (2, 8, 4), expected (2, 8, 3)");
    a = ok;
    a.final_state = state_bad.dl();
    expect_error(a, MAMBA_STATUS_INVALID_ARGUMENT, "argument 'final_state' has shape (2, 8, 4), expected (2, 8, 3)");
    a = ok;
    a.bias = w.dl();
    expect_error(a, MAMBA_STATUS_INVALID_ARGUMENT, "argument 'bias' has shape (8, 4), expected (8,)");
    a = ok;
    a.y = x.dl();
    expect_error(a, MAMBA_STATUS_INVALID_ARGUMENT, "arguments 'y' and 'x' overlap in memory");
}

class CausalConv1dUpdateTest : public mt::BackendTest {};

// One step against the reference with len = 1 and the state as initial state; the new state is the
// old one shifted left with x appended.
TEST_P(CausalConv1dUpdateTest, MatchesFloat64Reference) {
    std::mt19937_64 rng(77);
    for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
        for (int64_t K : {2, 3, 4, 8}) {
            for (bool has_bias : {false, true}) {
                for (bool act : {false, true}) {
                    for (bool strided : {false, true}) {
                        SCOPED_TRACE(std::string(mt::dtype_name(dt)) + " width " + std::to_string(K) + (has_bias ? " bias" : "") +
                                     (act ? " silu" : "") + (strided ? " strided" : ""));
                        const int64_t B = 3, D = 100;
                        const auto row_strides = strided ? mt::padded_strides({B, D}, 1, 7) : std::vector<int64_t>{};
                        // a state with its channels 1 apart and its steps `B*D` apart: far from contiguous
                        const auto state_strides = strided ? std::vector<int64_t>{D, 1, B * D} : std::vector<int64_t>{};
                        Tensor x({B, D}, dt, row_strides), y({B, D}, dt, row_strides), bias({D}, dt, strided ? std::vector<int64_t>{3} : std::vector<int64_t>{});
                        Tensor w({D, K}, dt, strided ? std::vector<int64_t>{1, D} : std::vector<int64_t>{});
                        Tensor state({B, D, K - 1}, dt, state_strides);
                        x.fill_uniform(rng, -2, 2);
                        w.fill_uniform(rng, -1, 1);
                        bias.fill_uniform(rng, -1, 1);
                        state.fill_uniform(rng, -2, 2);
                        Tensor x3({B, D, 1}, dt);
                        x3.values() = x.values();
                        const auto ref = reference_conv(x3, w, has_bias ? &bias : nullptr, &state, act);
                        for (Tensor * t : {&x, &w, &bias, &state}) t->upload(ctx());
                        y.upload_poisoned(ctx());
                        mamba_causal_conv1d_update_args a{x.dl(), state.dl(), w.dl(), has_bias ? bias.dl() : nullptr, y.dl(), act};
                        MAMBA_ASSERT_OK(mamba_causal_conv1d_update(ctx(), &a));
                        y.download(ctx());
                        state.download(ctx());
                        const double tol = conv_tolerance(dt);
                        EXPECT_CLOSE(y.values(), ref.y, tol, tol);
                        EXPECT_EQ(state.values(), ref.final_state);
                    }
                }
            }
        }
    }
}

// The decode invariant: feeding a sequence one token at a time through the update reproduces the full
// convolution's outputs and leaves the state it returns as final_state.
TEST_P(CausalConv1dUpdateTest, TokenByTokenEqualsForward) {
    std::mt19937_64 rng(31);
    for (DType dt : {DType::F32, DType::BF16}) {
        for (int64_t K : {2, 3, 4}) {
            SCOPED_TRACE(std::string(mt::dtype_name(dt)) + " width " + std::to_string(K));
            const int64_t B = 2, D = 67, L = 13;
            Tensor x({B, D, L}, dt, activation_strides(Layout::ChannelLast, B, D, L)), y({B, D, L}, dt), w({D, K}, dt), bias({D}, dt);
            Tensor init({B, D, K - 1}, dt), fin({B, D, K - 1}, dt), state({B, D, K - 1}, dt);
            x.fill_uniform(rng, -2, 2);
            w.fill_uniform(rng, -1, 1);
            bias.fill_uniform(rng, -1, 1);
            init.fill_uniform(rng, -2, 2);
            for (Tensor * t : {&x, &w, &bias, &init}) t->upload(ctx());
            y.upload_poisoned(ctx());
            fin.upload_poisoned(ctx());
            mamba_causal_conv1d_args fa{x.dl(), w.dl(), bias.dl(), init.dl(), y.dl(), fin.dl(), 1};
            MAMBA_ASSERT_OK(mamba_causal_conv1d(ctx(), &fa));
            y.download(ctx());
            fin.download(ctx());

            state.values() = init.values();
            state.upload(ctx());
            for (int64_t t = 0; t < L; ++t) {
                Tensor xt({B, D}, dt), yt({B, D}, dt);
                std::vector<double> expected;
                for (int64_t i = 0; i < B * D; ++i) {
                    xt.at(i) = x.at(i * L + t);
                    expected.push_back(y.at(i * L + t));
                }
                xt.upload(ctx());
                yt.upload_poisoned(ctx());
                mamba_causal_conv1d_update_args ua{xt.dl(), state.dl(), w.dl(), bias.dl(), yt.dl(), 1};
                MAMBA_ASSERT_OK(mamba_causal_conv1d_update(ctx(), &ua));
                yt.download(ctx());
                // Same float32 arithmetic on the same inputs; only the output rounding may differ.
                EXPECT_CLOSE(yt.values(), expected, 1e-6, mt::dtype_epsilon(dt)) << "step " << t;
            }
            state.download(ctx());
            EXPECT_EQ(state.values(), fin.values());
        }
    }
}

TEST_P(CausalConv1dUpdateTest, OutputMayBeTheInputItself) {
    std::mt19937_64 rng(8);
    const int64_t B = 2, D = 10, K = 4;
    Tensor x({B, D}, DType::F32), w({D, K}, DType::F32), state({B, D, K - 1}, DType::F32);
    x.fill_uniform(rng, -2, 2);
    w.fill_uniform(rng, -1, 1);
    state.fill_uniform(rng, -2, 2);
    Tensor x3({B, D, 1}, DType::F32);
    x3.values() = x.values();
    const auto ref = reference_conv(x3, w, nullptr, &state, false);
    for (Tensor * t : {&x, &w, &state}) t->upload(ctx());
    mamba_causal_conv1d_update_args a{x.dl(), state.dl(), w.dl(), nullptr, x.dl(), 0};
    MAMBA_ASSERT_OK(mamba_causal_conv1d_update(ctx(), &a));
    x.download(ctx());
    EXPECT_CLOSE(x.values(), ref.y, 2e-6, 2e-6);
}

TEST_P(CausalConv1dUpdateTest, InvalidArgumentsNameTheArgument) {
    Tensor x({2, 8}, DType::F32), w({8, 4}, DType::F32), y({2, 8}, DType::F32), state({2, 8, 3}, DType::F32);
    Tensor state_long({2, 8, 4}, DType::F32), w_bad({7, 4}, DType::F32), state_i({2, 8, 3}, DType::I64);
    for (Tensor * t : {&x, &w, &y, &state, &state_long, &w_bad, &state_i}) t->upload(ctx());
    auto expect_error = [&](mamba_causal_conv1d_update_args a, mamba_status status, const std::string & message) {
        EXPECT_EQ(mamba_causal_conv1d_update(ctx(), &a), status) << message;
        EXPECT_NE(std::string(mamba_last_error()).find(message), std::string::npos) << mamba_last_error();
    };
    const mamba_causal_conv1d_update_args ok{x.dl(), state.dl(), w.dl(), nullptr, y.dl(), 0};
    MAMBA_ASSERT_OK(mamba_causal_conv1d_update(ctx(), &ok));
    auto a = ok;
    a.conv_state = nullptr;
    expect_error(a, MAMBA_STATUS_INVALID_ARGUMENT, "mamba_causal_conv1d_update: argument 'conv_state' is null");
    a = ok;
    a.conv_state = state_long.dl();
    expect_error(a, MAMBA_STATUS_INVALID_ARGUMENT, "argument 'conv_state' has shape (2, 8, 4), expected (2, 8, 3)");
    a = ok;
    a.conv_state = state_i.dl();
    expect_error(a, MAMBA_STATUS_UNSUPPORTED, "argument 'conv_state' has dtype int64");
    a = ok;
    a.weight = w_bad.dl();
    expect_error(a, MAMBA_STATUS_INVALID_ARGUMENT, "argument 'weight' has shape (7, 4), expected (8, *)");
    a = ok;
    a.y = state.dl();
    expect_error(a, MAMBA_STATUS_INVALID_ARGUMENT, "argument 'y' has shape (2, 8, 3), expected (2, 8)");
    EXPECT_EQ(mamba_causal_conv1d_update(nullptr, &ok), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(), "mamba_causal_conv1d_update: argument 'context' is null");
}

MAMBA_INSTANTIATE_BACKENDS(CausalConv1dTest);
MAMBA_INSTANTIATE_BACKENDS(CausalConv1dUpdateTest);
