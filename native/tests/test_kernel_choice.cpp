// Which CUDA kernels a call launches: the result tests compare values only, and a fused kernel and its
// fallback give the same values. A context made with MAMBA_CUDA_TRACE=1 prints one "mamba trace NAME ..."
// line to stderr for each kernel the library launches itself (cuBLAS's kernels are not among them), which
// these tests read back.
#include <random>
#include <string>

#include "support.h"

namespace {

using mt::DType;
using mt::Tensor;

class KernelChoiceTest : public ::testing::Test {
protected:
    void SetUp() override {
        MAMBA_REQUIRE_CUDA();
        const mt::ScopedEnv trace("MAMBA_CUDA_TRACE", "1");  // read when the context is made
        ctx_ = mt::make_context(MAMBA_DEVICE_CUDA);
        ASSERT_NE(ctx_, nullptr);
    }
    mamba_context * ctx() { return ctx_.get(); }

    // The library's own choices: kernel-selection variables set around the test run are cleared.
    const mt::ScopedEnv gemv_default_{"MAMBA_CUDA_GEMV_VARIANT", nullptr};
    const mt::ScopedEnv conv_default_{"MAMBA_CUDA_LINEAR_CONV", nullptr};

    // The trace lines one call printed; the call must succeed.
    template <class Call>
    std::string traced(Call && call) {
        ::testing::internal::CaptureStderr();
        const mamba_status status = call();
        const std::string log = ::testing::internal::GetCapturedStderr();
        EXPECT_EQ(status, MAMBA_STATUS_OK) << mamba_last_error();
        return log;
    }

    static bool launched(const std::string & log, const std::string & kernel) { return log.find("mamba trace " + kernel + " ") != std::string::npos; }

    // x (rows, in), W (out, in) and y (rows, out) of one dtype, random, on the device.
    struct Linear {
        Tensor x, w, y;
        mamba_linear_args args{};
    };
    Linear linear(int64_t rows, int64_t in, int64_t out, DType dtype) {
        std::mt19937_64 rng(uint64_t(rows * 131 + in * 7 + out));
        Linear l{Tensor({rows, in}, dtype), Tensor({out, in}, dtype), Tensor({rows, out}, dtype)};
        l.x.fill_uniform(rng, -1, 1);
        l.w.fill_uniform(rng, -1, 1);
        l.x.upload(ctx());
        l.w.upload(ctx());
        l.y.upload_poisoned(ctx());
        l.args.x = l.x.dl();
        l.args.weight = l.w.dl();
        l.args.y = l.y.dl();
        return l;
    }

    mt::ContextPtr ctx_;
};

TEST_F(KernelChoiceTest, OneRowTakesTheGemvKernels) {
    Linear wide = linear(1, 1024, 4096, DType::BF16);
    EXPECT_TRUE(launched(traced([&] { return mamba_linear(ctx(), &wide.args); }), "gemv_tiled_kernel"));
    Linear narrow = linear(1, 2560, 192, DType::BF16);  // few outputs: the warp kernel
    EXPECT_TRUE(launched(traced([&] { return mamba_linear(ctx(), &narrow.args); }), "gemv_warp_kernel"));
}

TEST_F(KernelChoiceTest, BatchedRowsGoToCublasWhereItWasMeasuredFaster) {
    // 2-7 rows with at least 2048 outputs, and 8 rows or more at any shape: no GEMV kernel, and no staging or
    // epilogue pass around the GEMM either (x, W and y of one 16-bit dtype, no bias).
    for (int64_t rows : {2, 7, 16}) {
        SCOPED_TRACE("rows " + std::to_string(rows));
        Linear l = linear(rows, 1024, 2048, DType::BF16);
        const std::string log = traced([&] { return mamba_linear(ctx(), &l.args); });
        EXPECT_EQ(log.find("mamba trace "), std::string::npos) << log;
    }
    for (int64_t rows : {8, 16}) {
        SCOPED_TRACE("rows " + std::to_string(rows));
        Linear l = linear(rows, 2560, 192, DType::F16);
        const std::string log = traced([&] { return mamba_linear(ctx(), &l.args); });
        EXPECT_EQ(log.find("mamba trace "), std::string::npos) << log;
    }
    // Fewer outputs below 8 rows, and float32 x, stay on the GEMV kernels.
    Linear few = linear(4, 2560, 192, DType::BF16);
    EXPECT_TRUE(launched(traced([&] { return mamba_linear(ctx(), &few.args); }), "gemv_tiled_kernel"));
    Linear f32 = linear(4, 1024, 2048, DType::F32);
    EXPECT_TRUE(launched(traced([&] { return mamba_linear(ctx(), &f32.args); }), "gemv_tiled_kernel"));
}

TEST_F(KernelChoiceTest, ConvStepRunsInTheInProjGemvUnlessCublasTakesTheRows) {
    // The decode step's in_proj + conv op: one fused kernel (the tiled GEMV's conv epilogue) wherever the
    // GEMV takes the projection; the projection and the conv kernel with MAMBA_CUDA_LINEAR_CONV=separate, or
    // where cuBLAS takes the rows (no GEMV kernel then).
    struct Case {
        int64_t rows, out;
        const char * choice;
        const char * projection;  // the kernel expected for the projection; nullptr: cuBLAS
        bool fused;
    };
    const Case cases[] = {
        {1, 1024, "fused", "gemv_tiled_conv_kernel", true},
        {4, 1024, "fused", "gemv_tiled_conv_kernel", true},
        {4, 2048, "fused", nullptr, false},
        {1, 1024, "separate", "gemv_warp_kernel", false},  // what mamba_linear picks for 1 row and 1024 outputs
        {4, 1024, "separate", "gemv_tiled_kernel", false},
    };
    const int64_t in = 256, dim = 512, width = 4;
    for (const Case & c : cases) {
        SCOPED_TRACE("rows " + std::to_string(c.rows) + " out " + std::to_string(c.out) + " " + c.choice);
        const mt::ScopedEnv conv_choice("MAMBA_CUDA_LINEAR_CONV", c.choice);
        std::mt19937_64 rng(uint64_t(c.rows * 10 + c.out));
        Linear l = linear(c.rows, in, c.out, DType::BF16);
        Tensor state({c.rows, dim, width - 1}, DType::BF16), cw({dim, width}, DType::BF16), cy({c.rows, dim}, DType::BF16);
        state.fill_uniform(rng, -1, 1);
        cw.fill_uniform(rng, -1, 1);
        for (Tensor * t : {&state, &cw}) t->upload(ctx());
        cy.upload_poisoned(ctx());
        mamba_linear_conv1d_update_args a{};
        a.x = l.x.dl();
        a.weight = l.w.dl();
        a.y = l.y.dl();
        a.conv_offset = 0;
        a.conv_state = state.dl();
        a.conv_weight = cw.dl();
        a.conv_y = cy.dl();
        a.silu = true;
        const std::string log = traced([&] { return mamba_linear_conv1d_update(ctx(), &a); });
        if (c.projection) EXPECT_TRUE(launched(log, c.projection)) << log;
        else EXPECT_EQ(log.find("mamba trace gemv_"), std::string::npos) << log;
        EXPECT_EQ(launched(log, "causal_conv1d_update_kernel"), !c.fused) << log;
    }
}

}  // namespace
