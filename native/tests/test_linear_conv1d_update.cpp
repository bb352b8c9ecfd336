// mamba_linear_conv1d_update per backend: the projection against a float64 reference, then the conv step
// against a float64 conv of the columns as y holds them, over dtypes, row counts on both sides of the CUDA
// GEMV's 16, filter widths on both sides of the fused epilogue's 4, conv ranges that start and end inside
// a block's outputs, strided views, several steps in a row, and bad arguments. On CUDA the epilogue needs
// W rows a whole number of 16-byte vectors apart, so most cases have 64 or 96 input features (fused);
// those with 67 or 33 take the two-kernel fallback on purpose.
#include "backend_test.h"

namespace {

using mt::DType;
using mt::Tensor;

double silu(double v) { return v / (1.0 + std::exp(-v)); }

// The CUDA GEMV kernels MAMBA_CUDA_GEMV_VARIANT can force (gemv.cu).
const char * const kGemvVariants[] = {"tiled", "warp", "gemm"};
const char * const kLinearConvChoices[] = {"fused", "separate"};

struct Case {
    int64_t rows, in, out, offset, dim, width;
    DType x_dtype, w_dtype, y_dtype, state_dtype;
    bool bias = false, conv_bias = false, act = true, strided = false;
    int steps = 2;
};

std::string describe(const Case & c) {
    return "rows " + std::to_string(c.rows) + " in " + std::to_string(c.in) + " out " + std::to_string(c.out) + " conv [" + std::to_string(c.offset) +
           ", +" + std::to_string(c.dim) + ") width " + std::to_string(c.width) + " x " + mt::dtype_name(c.x_dtype) + " w " + mt::dtype_name(c.w_dtype) +
           " y " + mt::dtype_name(c.y_dtype) + " state " + mt::dtype_name(c.state_dtype) + (c.bias ? " bias" : "") + (c.conv_bias ? " conv_bias" : "") +
           (c.act ? " silu" : "") + (c.strided ? " strided" : "");
}

class LinearConv1dUpdateTest : public mt::BackendTest {
protected:
    // With lead_in_ an op whose outputs libmamba records runs just before each call (mt::LeadIn): on CUDA
    // the call's kernel then loads its first weights before its launch wait.
    bool lead_in_ = false;

    void run(const Case & c) {
        SCOPED_TRACE(describe(c));
        std::mt19937_64 rng(7 + uint64_t(c.rows * 7919 + c.out * 31 + c.width));
        const std::vector<int64_t> x_shape{c.rows, c.in}, y_shape{c.rows, c.out}, cy_shape{c.rows, c.dim}, st_shape{c.rows, c.dim, c.width - 1};
        Tensor x(x_shape, c.x_dtype, c.strided ? mt::padded_strides(x_shape, 1, 8) : std::vector<int64_t>{});
        Tensor w({c.out, c.in}, c.w_dtype), bias({c.out}, c.w_dtype);
        Tensor y(y_shape, c.y_dtype, c.strided ? mt::padded_strides(y_shape, 1, 5) : std::vector<int64_t>{});
        // strided: the state's steps outermost, channels 1 apart (far from the contiguous layout)
        Tensor state(st_shape, c.state_dtype, c.strided ? std::vector<int64_t>{c.dim, 1, c.rows * c.dim} : std::vector<int64_t>{});
        Tensor cw({c.dim, c.width}, c.w_dtype), cb({c.dim}, c.w_dtype);
        Tensor cy(cy_shape, c.y_dtype, c.strided ? mt::padded_strides(cy_shape, 1, 3) : std::vector<int64_t>{});
        w.fill_uniform(rng, -1, 1);
        bias.fill_uniform(rng, -1, 1);
        cw.fill_uniform(rng, -1, 1);
        cb.fill_uniform(rng, -1, 1);
        state.fill_uniform(rng, -2, 2);
        for (Tensor * t : {&w, &bias, &cw, &cb, &state}) t->upload(ctx());
        mt::LeadIn lead(ctx());
        for (int step = 0; step < c.steps; ++step) {
            SCOPED_TRACE("step " + std::to_string(step));
            const std::vector<double> old_state = state.values();
            x.fill_uniform(rng, -1, 1);
            x.upload(ctx());
            y.upload_poisoned(ctx());
            cy.upload_poisoned(ctx());
            mamba_linear_conv1d_update_args a{};
            a.x = x.dl();
            a.weight = w.dl();
            a.bias = c.bias ? bias.dl() : nullptr;
            a.y = y.dl();
            a.conv_offset = c.offset;
            a.conv_state = state.dl();
            a.conv_weight = cw.dl();
            a.conv_bias = c.conv_bias ? cb.dl() : nullptr;
            a.conv_y = cy.dl();
            a.silu = c.act;
            if (lead_in_) lead.queue();
            MAMBA_ASSERT_OK(mamba_linear_conv1d_update(ctx(), &a));
            y.download(ctx());
            cy.download(ctx());
            state.download(ctx());
            expect_projection(c, x, w, y, bias);
            expect_conv_step(c, y, old_state, cw, cb, cy, state);
        }
    }

    // y against the float64 projection: float32 accumulation relative to sum |x w|, plus y's rounding.
    static void expect_projection(const Case & c, const Tensor & x, const Tensor & w, const Tensor & y, const Tensor & bias) {
        double worst = 0.0;
        for (int64_t r = 0; r < c.rows; ++r)
            for (int64_t o = 0; o < c.out; ++o) {
                double sum = c.bias ? bias.at(o) : 0.0, mag = std::fabs(sum);
                for (int64_t k = 0; k < c.in; ++k) {
                    const double term = x.at(r * c.in + k) * w.at(o * c.in + k);
                    sum += term;
                    mag += std::fabs(term);
                }
                const double tol = 2e-5 * mag + 1.01 * mt::dtype_epsilon(c.y_dtype) * std::fabs(sum) + 1e-6;
                const double err = std::fabs(y.at(r * c.out + o) - sum) / tol;
                worst = std::isnan(err) ? INFINITY : std::max(worst, err);
            }
        EXPECT_LE(worst, 1.0) << "projection";
    }

    // The conv step of the columns [offset, offset + dim) as y holds them, from the state before the call:
    // conv_y in float64 to float32 accumulation plus conv_y's rounding; the new state exactly (the old one
    // shifted, then y's value in the state's dtype).
    static void expect_conv_step(const Case & c, const Tensor & y, const std::vector<double> & old_state, const Tensor & cw, const Tensor & cb,
                                 const Tensor & cy, const Tensor & state) {
        const int64_t K = c.width;
        Tensor expected_state({c.rows, c.dim, K - 1}, c.state_dtype);
        double worst = 0.0;
        for (int64_t r = 0; r < c.rows; ++r)
            for (int64_t d = 0; d < c.dim; ++d) {
                const double xin = y.at(r * c.out + c.offset + d);
                std::vector<double> window(old_state.begin() + (r * c.dim + d) * (K - 1), old_state.begin() + (r * c.dim + d + 1) * (K - 1));
                window.push_back(xin);
                double acc = c.conv_bias ? cb.at(d) : 0.0, mag = std::fabs(acc);
                for (int64_t k = 0; k < K; ++k) {
                    acc += cw.at(d * K + k) * window[size_t(k)];
                    mag += std::fabs(cw.at(d * K + k) * window[size_t(k)]);
                }
                const double want = c.act ? silu(acc) : acc;
                const double tol = 1e-6 * mag + 1.01 * mt::dtype_epsilon(c.y_dtype) * std::fabs(want) + 1e-6;
                const double err = std::fabs(cy.at(r * c.dim + d) - want) / tol;
                worst = std::isnan(err) ? INFINITY : std::max(worst, err);
                for (int64_t k = 0; k < K - 1; ++k) expected_state.at((r * c.dim + d) * (K - 1) + k) = window[size_t(k + 1)];
            }
        EXPECT_LE(worst, 1.0) << "conv_y";
        expected_state.round_to_dtype();
        EXPECT_EQ(state.values(), expected_state.values()) << "conv_state";
    }
};

TEST_P(LinearConv1dUpdateTest, MatchesFloat64Reference) {
    // The models' dtypes, a float32 state with 16-bit activations (the state then holds y's rounded value),
    // and a projection whose conv range starts and ends inside a block's outputs; with and without the
    // biases and the SiLU.
    const DType F32 = DType::F32, F16 = DType::F16, BF16 = DType::BF16;
    for (int64_t rows : {1, 2, 3})
        for (int64_t width : {2, 3, 4}) {
            run({rows, 64, 200, 45, 100, width, F32, F32, F32, F32, rows == 2, width != 3});
            run({rows, 64, 200, 45, 100, width, BF16, BF16, BF16, BF16, width == 4, true, rows != 2});
            run({rows, 64, 200, 45, 100, width, F16, F16, F16, F32, false, rows == 1, true, true});
            run({rows, 64, 200, 45, 100, width, F32, BF16, BF16, F32, true, true, true, rows == 3});
            run({rows, 67, 200, 45, 100, width, F32, BF16, BF16, F32, true, true, true, rows == 3});  // W rows 134 B apart
        }
}

TEST_P(LinearConv1dUpdateTest, ManyColumnTilesAndFullBlocks) {
    // More input features than one x tile holds (2048 at 3-4 rows, 8192 at one), and enough outputs that a
    // block owns 32 of them at one or two rows (the mamba-2.8b in_proj layout on a large GPU).
    run({3, 2056, 96, 16, 64, 4, DType::BF16, DType::BF16, DType::BF16, DType::F32, true, true, true, false, 2});
    run({1, 8200, 72, 8, 60, 3, DType::F32, DType::BF16, DType::F32, DType::F32, false, true, true, false, 2});
    for (int64_t rows : {1, 2}) run({rows, 64, 8448, 4000, 4400, 4, DType::BF16, DType::BF16, DType::BF16, DType::BF16, false, true, true, false, 2});
}

TEST_P(LinearConv1dUpdateTest, RowCountsAroundTheGemvLimit) {
    // Up to 16 rows the CUDA GEMV takes the projection (one kernel); 17 runs the GEMM and the conv step.
    for (int64_t rows : {4, 5, 8, 13, 16, 17, 24})
        run({rows, 96, 150, 64, 80, 4, DType::BF16, DType::BF16, DType::BF16, DType::BF16, rows % 2 == 0, true, true, rows % 3 == 0});
}

TEST_P(LinearConv1dUpdateTest, BatchedRowsOfALargeProjection) {
    // On CUDA, batched rows of a projection with at least 2048 outputs (and any projection from 8 rows) take
    // cuBLAS and the separate conv step (mamba_linear's choice); one row keeps the fused kernel.
    for (int64_t rows : {1, 4, 16}) run({rows, 1024, 4096, 1024, 2048, 4, DType::BF16, DType::BF16, DType::BF16, DType::BF16, false, true, true, false, 2});
    for (int64_t rows : {4, 8}) run({rows, 256, 1536, 0, 768, 4, DType::BF16, DType::BF16, DType::BF16, DType::BF16, false, true, true, false, 2});
}
TEST_P(LinearConv1dUpdateTest, FiltersWiderThanTheEpilogueTakes) {
    // Widths above 4 run the conv step as its own kernel on CUDA.
    for (int64_t width : {5, 8})
        for (int64_t rows : {1, 3}) run({rows, 40, 72, 8, 64, width, DType::F32, DType::F32, DType::F32, DType::F32, true, true, true, rows == 3});
}

TEST_P(LinearConv1dUpdateTest, WholeProjectionAndRangesAtEitherEnd) {
    for (int64_t rows : {1, 2}) {
        run({rows, 32, 64, 0, 64, 4, DType::F32, DType::BF16, DType::F32, DType::F32, true, true});     // every column
        run({rows, 32, 64, 0, 20, 4, DType::F32, DType::BF16, DType::F32, DType::F32, false, true});    // the first ones
        run({rows, 32, 64, 50, 14, 4, DType::F32, DType::BF16, DType::F32, DType::F32, true, false});   // the last ones
        run({rows, 32, 64, 10, 0, 4, DType::F32, DType::BF16, DType::F32, DType::F32, true, false, true, false, 1});  // none
        run({rows, 33, 64, 0, 64, 4, DType::F32, DType::BF16, DType::F32, DType::F32, true, true});     // W rows 66 B apart
    }
}

TEST_P(LinearConv1dUpdateTest, DecodeShapesOfMamba130mAndMamba2_130m) {
    // Mamba-1: in_proj 768 -> 2 x 1536, the conv over x (the first half); Mamba-2: in_proj 768 -> z 1536,
    // xBC 1792, dt 24, the conv over xBC.
    for (int64_t rows : {1, 4}) {
        run({rows, 768, 3072, 0, 1536, 4, DType::BF16, DType::BF16, DType::BF16, DType::BF16, false, true, true, false, 3});
        run({rows, 768, 3352, 1536, 1792, 4, DType::F32, DType::F32, DType::F32, DType::F32, false, true, true, false, 3});
    }
}

TEST_P(LinearConv1dUpdateTest, EveryCudaKernelChoiceGivesTheSameResults) {
    // MAMBA_CUDA_GEMV_VARIANT=warp keeps the projection on the warp kernel and MAMBA_CUDA_LINEAR_CONV=separate
    // asks for the two ops, so the conv step runs apart.
    for (const char * variant : kernel_variants(kGemvVariants))
        for (const char * conv : kernel_variants(kLinearConvChoices)) {
            const mt::ScopedEnv forced("MAMBA_CUDA_GEMV_VARIANT", variant);
            const mt::ScopedEnv forced_conv("MAMBA_CUDA_LINEAR_CONV", conv);
            SCOPED_TRACE(std::string("variant ") + variant + ", " + conv);
            for (int64_t rows : {1, 2, 9}) run({rows, 64, 200, 45, 100, 4, DType::BF16, DType::BF16, DType::BF16, DType::F32, true, true});
        }
}

TEST_P(LinearConv1dUpdateTest, FirstWeightsLoadedBeforeTheLaunchWait) {
    // After an op whose outputs are recorded, the one-row tiled kernel loads its first W batch before the
    // PDL wait (the conv builds too). One tile and several tiles (8200 columns), a block of 32 outputs, the
    // 130m shapes.
    lead_in_ = true;
    run({1, 2056, 96, 16, 64, 4, DType::BF16, DType::BF16, DType::BF16, DType::F32, true, true, true, false, 2});
    run({1, 8200, 72, 8, 60, 3, DType::F32, DType::BF16, DType::F32, DType::F32, false, true, true, false, 2});
    run({1, 64, 8448, 4000, 4400, 4, DType::BF16, DType::BF16, DType::BF16, DType::BF16, false, true, true, false, 2});
    run({1, 768, 3072, 0, 1536, 4, DType::BF16, DType::BF16, DType::BF16, DType::BF16, false, true, true, false, 3});
    run({1, 768, 3352, 1536, 1792, 4, DType::F32, DType::F32, DType::F32, DType::F32, false, true, true, false, 3});
}

TEST_P(LinearConv1dUpdateTest, EvictFirstWeightsChangeNoResult) {
    // MAMBA_CUDA_GEMV_EVICT=first (W's L2 priority) leaves the fused projection and conv step's results alone,
    // with the first W batch before the launch wait and after it.
    const mt::ScopedEnv evict("MAMBA_CUDA_GEMV_EVICT", "first");
    for (const bool lead : {false, true}) {
        lead_in_ = lead;
        run({1, 2056, 96, 16, 64, 4, DType::BF16, DType::BF16, DType::BF16, DType::F32, true, true, true, false, 2});
        run({2, 768, 3072, 0, 1536, 4, DType::BF16, DType::BF16, DType::BF16, DType::BF16, false, true, true, false, 3});
    }
}

TEST_P(LinearConv1dUpdateTest, UnknownKernelChoicesAreRejected) {
    if (!on_cuda()) GTEST_SKIP() << "the CPU backend reads no CUDA kernel-selection variable";
    Tensor x({1, 16}, DType::F32), w({24, 16}, DType::F32), y({1, 24}, DType::F32), state({1, 8, 3}, DType::F32), cw({8, 4}, DType::F32);
    Tensor cy({1, 8}, DType::F32);
    for (Tensor * t : {&x, &w, &y, &state, &cw, &cy}) t->upload(ctx());
    mamba_linear_conv1d_update_args a{};
    a.x = x.dl();
    a.weight = w.dl();
    a.y = y.dl();
    a.conv_state = state.dl();
    a.conv_weight = cw.dl();
    a.conv_y = cy.dl();
    {
        const mt::ScopedEnv bad("MAMBA_CUDA_LINEAR_CONV", "fuse");
        EXPECT_EQ(mamba_linear_conv1d_update(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
        EXPECT_STREQ(mamba_last_error(), "mamba_linear_conv1d_update: MAMBA_CUDA_LINEAR_CONV must be one of fused, separate (or unset), not 'fuse'");
    }
    {
        const mt::ScopedEnv bad("MAMBA_CUDA_GEMV_EVICT", "First");
        EXPECT_EQ(mamba_linear_conv1d_update(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
        EXPECT_STREQ(mamba_last_error(), "mamba_linear_conv1d_update: MAMBA_CUDA_GEMV_EVICT must be one of first, normal, conv, plain (or unset), not 'First'");
    }
    const mt::ScopedEnv bad("MAMBA_CUDA_GEMV_VARIANT", "Warp");
    EXPECT_EQ(mamba_linear_conv1d_update(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(), "mamba_linear_conv1d_update: MAMBA_CUDA_GEMV_VARIANT must be one of tiled, warp, gemm (or unset), not 'Warp'");
}

TEST_P(LinearConv1dUpdateTest, InvalidArgumentsNameTheArgument) {
    Tensor x({2, 16}, DType::F32), w({24, 16}, DType::F32), y({2, 24}, DType::F32), state({2, 8, 3}, DType::F32), cw({8, 4}, DType::F32);
    Tensor cy({2, 8}, DType::F32), cw_wide({8, 9}, DType::F32), cw_flat({32}, DType::F32), state_long({2, 8, 4}, DType::F32), cb_bad({9}, DType::F32);
    for (Tensor * t : {&x, &w, &y, &state, &cw, &cy, &cw_wide, &cw_flat, &state_long, &cb_bad}) t->upload(ctx());
    auto expect_error = [&](const mamba_linear_conv1d_update_args & a, mamba_status status, const std::string & message) {
        EXPECT_EQ(mamba_linear_conv1d_update(ctx(), &a), status) << message;
        EXPECT_NE(std::string(mamba_last_error()).find(message), std::string::npos) << mamba_last_error();
    };
    mamba_linear_conv1d_update_args ok{};
    ok.x = x.dl();
    ok.weight = w.dl();
    ok.y = y.dl();
    ok.conv_offset = 16;
    ok.conv_state = state.dl();
    ok.conv_weight = cw.dl();
    ok.conv_y = cy.dl();
    MAMBA_ASSERT_OK(mamba_linear_conv1d_update(ctx(), &ok));
    auto a = ok;
    a.conv_offset = 17;
    expect_error(a, MAMBA_STATUS_INVALID_ARGUMENT,
                 "mamba_linear_conv1d_update: argument 'conv_offset' is 17: the conv's 8 channels (conv_weight's first dimension) from there pass y's 24 columns");
    a = ok;
    a.conv_offset = -1;
    expect_error(a, MAMBA_STATUS_INVALID_ARGUMENT, "argument 'conv_offset' is -1");
    a = ok;
    a.conv_state = nullptr;
    expect_error(a, MAMBA_STATUS_INVALID_ARGUMENT, "argument 'conv_state' is null");
    a = ok;
    a.conv_state = state_long.dl();
    expect_error(a, MAMBA_STATUS_INVALID_ARGUMENT, "argument 'conv_state' has shape (2, 8, 4), expected (2, 8, 3)");
    a = ok;
    a.conv_weight = cw_wide.dl();
    expect_error(a, MAMBA_STATUS_UNSUPPORTED, "argument 'conv_weight' has width 9");
    a = ok;
    a.conv_weight = cw_flat.dl();
    expect_error(a, MAMBA_STATUS_INVALID_ARGUMENT, "argument 'conv_weight'");
    a = ok;
    a.conv_bias = cb_bad.dl();
    expect_error(a, MAMBA_STATUS_INVALID_ARGUMENT, "argument 'conv_bias' has shape (9,), expected (8,)");
    a = ok;
    a.conv_y = y.dl();
    expect_error(a, MAMBA_STATUS_INVALID_ARGUMENT, "argument 'conv_y' has shape (2, 24), expected (2, 8)");
    a = ok;
    a.weight = nullptr;
    expect_error(a, MAMBA_STATUS_INVALID_ARGUMENT, "argument 'weight' is null");
    // conv_y inside y: a view of y's first 8 columns
    mt::View y_view(y, {2, 8}, {24, 1});
    a = ok;
    a.conv_y = y_view.dl();
    expect_error(a, MAMBA_STATUS_INVALID_ARGUMENT, "arguments 'conv_y' and 'y' overlap in memory");
    // y over the conv filter
    mt::View y_as_filter(y, {8, 4}, {});
    a = ok;
    a.conv_weight = y_as_filter.dl();
    expect_error(a, MAMBA_STATUS_INVALID_ARGUMENT, "arguments 'y' and 'conv_weight' overlap in memory");
    // conv_state inside the projection's weight
    mt::View w_view(w, {2, 8, 3}, {});
    a = ok;
    a.conv_state = w_view.dl();
    expect_error(a, MAMBA_STATUS_INVALID_ARGUMENT, "arguments 'conv_state' and 'weight' overlap in memory");
    EXPECT_EQ(mamba_linear_conv1d_update(ctx(), nullptr), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(mamba_linear_conv1d_update(nullptr, &ok), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(), "mamba_linear_conv1d_update: argument 'context' is null");
}

MAMBA_INSTANTIATE_BACKENDS(LinearConv1dUpdateTest);

}  // namespace
