// mamba_rms_norm against a float64 reference, per backend, dtype, layout and option.
#include "backend_test.h"

namespace {

using mt::DType;
using mt::Tensor;

struct Reference {
    std::vector<double> y, residual;
};

Reference reference_rms_norm(const Tensor & x, const Tensor * residual, const Tensor & w, double eps) {
    const int64_t rows = x.shape()[0], H = x.shape()[1];
    Reference out;
    out.y.resize(size_t(rows * H));
    out.residual.resize(size_t(rows * H));
    for (int64_t r = 0; r < rows; ++r) {
        double ss = 0;
        for (int64_t i = 0; i < H; ++i) {
            double v = x.at(r * H + i) + (residual ? residual->at(r * H + i) : 0.0);
            out.residual[size_t(r * H + i)] = v;
            ss += v * v;
        }
        const double inv = 1.0 / std::sqrt(ss / double(H) + eps);
        for (int64_t i = 0; i < H; ++i) out.y[size_t(r * H + i)] = out.residual[size_t(r * H + i)] * inv * w.at(i);
    }
    return out;
}

struct Case {
    int64_t rows, hidden;
    DType dtype;
    bool residual;
    bool strided;
    DType residual_dtype;
};


}  // namespace

class RmsNormTest : public mt::BackendTest {
protected:
    // With lead_in_ an op whose outputs libmamba records runs just before the call (mt::LeadIn): on CUDA the
    // register kernels then load the weight and the residual before their launch wait.
    bool lead_in_ = false;

    void run(const Case & c) {
        std::mt19937_64 rng(1234 + uint64_t(c.rows * 31 + c.hidden));
        const std::vector<int64_t> shape{c.rows, c.hidden};
        auto strides = c.strided ? mt::padded_strides(shape, 1, 5) : std::vector<int64_t>{};
        Tensor x(shape, c.dtype, strides), w({c.hidden}, c.dtype), y(shape, c.dtype, strides);
        Tensor res(shape, c.dtype), res_out(shape, c.residual_dtype);
        x.fill_uniform(rng, -2, 2);
        w.fill_uniform(rng, 0.5, 1.5);
        res.fill_uniform(rng, -1, 1);
        x.upload(ctx());
        w.upload(ctx());
        y.upload_poisoned(ctx());
        mamba_rms_norm_args a{};
        a.x = x.dl();
        a.weight = w.dl();
        a.y = y.dl();
        a.eps = 1e-5f;
        if (c.residual) {
            res.upload(ctx());
            res_out.upload_poisoned(ctx());
            a.residual = res.dl();
            a.residual_out = res_out.dl();
        }
        mt::LeadIn lead(ctx());
        if (lead_in_) lead.queue();
        MAMBA_ASSERT_OK(mamba_rms_norm(ctx(), &a));
        y.download(ctx());
        const auto ref = reference_rms_norm(x, c.residual ? &res : nullptr, w, 1e-5);
        const double tol = 4 * mt::dtype_epsilon(c.dtype) + 1e-6;
        EXPECT_CLOSE(y.values(), ref.y, tol, tol);
        if (c.residual) {
            res_out.download(ctx());
            const double rtol = 2 * mt::dtype_epsilon(c.residual_dtype) + 1e-7;
            EXPECT_CLOSE(res_out.values(), ref.residual, rtol, rtol);
        }
    }
};

TEST_P(RmsNormTest, MatchesFloat64Reference) {
    for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
        for (bool residual : {false, true}) {
            for (bool strided : {false, true}) {
                SCOPED_TRACE(std::string(mt::dtype_name(dt)) + (residual ? " residual" : "") + (strided ? " strided" : ""));
                run({3, 64, dt, residual, strided, DType::F32});
                run({1, 1, dt, residual, strided, dt});
                run({17, 2560, dt, residual, strided, dt});
                // each elements-per-thread build of the CUDA register kernel (1, 2, 4, 8), its largest row
                // (5120) and rows past it (the loop kernel)
                run({2, 1500, dt, residual, strided, dt});
                run({1, 4000, dt, residual, strided, dt});
                run({2, 5120, dt, residual, strided, dt});
                run({1, 5121, dt, residual, strided, dt});
                run({1, 8192, dt, residual, strided, dt});
            }
        }
    }
}

TEST_P(RmsNormTest, ManyRowsMatchFloat64Reference) {
    // Prefill-sized calls (more rows than the GPU has SMs): on CUDA the rows kernel where x, y and the weight share a
    // dtype and the rows are contiguous and 16-byte aligned, in each chunk build (1, 2 and 4 chunks of 8 elements a
    // thread), and the register kernel where it does not apply (rows that are not whole chunks, strided rows).
    for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
        for (bool residual : {false, true}) {
            SCOPED_TRACE(std::string(mt::dtype_name(dt)) + (residual ? " residual" : ""));
            run({300, 2560, dt, residual, false, dt});  // mamba-2.8b's prefill rows: 2 chunks a thread
            run({200, 768, dt, residual, false, dt});   // the 130m shapes': 1 chunk
            run({140, 5120, dt, residual, false, dt});  // 4 chunks
            run({140, 100, dt, residual, false, dt});   // not whole chunks
            run({140, 256, dt, residual, true, dt});    // strided rows
        }
    }
}

TEST_P(RmsNormTest, ManyRowsInEveryChunkBuild) {
    // MAMBA_CUDA_NORM_ROWS=1, 2 or 4 forces the rows kernel's chunks a thread (where the row fits the build).
    for (const char * chunks : {"1", "2", "4"}) {
        SCOPED_TRACE(std::string("MAMBA_CUDA_NORM_ROWS=") + chunks);
        const mt::ScopedEnv forced("MAMBA_CUDA_NORM_ROWS", chunks);
        for (DType dt : {DType::F32, DType::BF16}) {
            run({300, 2560, dt, true, false, dt});
            run({150, 1000, dt, false, false, dt});
        }
    }
}

TEST_P(RmsNormTest, ManyRowsWithAFloat32ResidualInPlace) {
    // As a prefill of a model whose residual stream is float32 runs it: bf16 x, y and weight, the residual read and
    // written in place (residual_out is residual), and the first layer's call, which only writes the residual.
    for (bool first_layer : {false, true}) {
        SCOPED_TRACE(first_layer ? "first layer" : "in place");
        std::mt19937_64 rng(77);
        Tensor x({300, 2560}, DType::BF16), w({2560}, DType::BF16), y({300, 2560}, DType::BF16), res({300, 2560}, DType::F32);
        x.fill_uniform(rng, -2, 2);
        w.fill_uniform(rng, 0.5, 1.5);
        res.fill_uniform(rng, -1, 1);
        const auto ref = reference_rms_norm(x, first_layer ? nullptr : &res, w, 1e-5);
        for (Tensor * t : {&x, &w, &res}) t->upload(ctx());
        y.upload_poisoned(ctx());
        mamba_rms_norm_args a{};
        a.x = x.dl();
        a.residual = first_layer ? nullptr : res.dl();
        a.residual_out = res.dl();
        a.weight = w.dl();
        a.y = y.dl();
        a.eps = 1e-5f;
        MAMBA_ASSERT_OK(mamba_rms_norm(ctx(), &a));
        y.download(ctx());
        res.download(ctx());
        const double tol = 4 * mt::dtype_epsilon(DType::BF16) + 1e-6;
        EXPECT_CLOSE(y.values(), ref.y, tol, tol);
        EXPECT_CLOSE(res.values(), ref.residual, 1e-6, 1e-6);
    }
}

TEST_P(RmsNormTest, WeightAndResidualLoadedBeforeTheLaunchWait) {
    // Right after an op whose outputs are recorded (test_kernel_choice.cpp checks that the register kernels
    // then load early): each elements-per-thread build, with and without the residual, in place too.
    lead_in_ = true;
    for (DType dt : {DType::F32, DType::BF16}) {
        for (bool residual : {false, true}) {
            SCOPED_TRACE(std::string(mt::dtype_name(dt)) + (residual ? " residual" : ""));
            run({3, 64, dt, residual, false, DType::F32});
            run({2, 1500, dt, residual, true, dt});
            run({1, 2560, dt, residual, false, DType::F32});
            run({2, 5120, dt, residual, false, dt});
        }
    }
}

TEST_P(RmsNormTest, WrongWeightShapeNamesTheArgument) {
    Tensor x({2, 8}, DType::F32), w({7}, DType::F32), y({2, 8}, DType::F32);
    x.upload(ctx());
    w.upload(ctx());
    y.upload(ctx());
    mamba_rms_norm_args a{};
    a.x = x.dl();
    a.weight = w.dl();
    a.y = y.dl();
    a.eps = 1e-5f;
    EXPECT_EQ(mamba_rms_norm(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(), "mamba_rms_norm: argument 'weight' has shape (7,), expected (8,)");
}

TEST_P(RmsNormTest, NullOutputAndIntegerInputAreRejected) {
    Tensor x({2, 8}, DType::F32), w({8}, DType::F32), xi({2, 8}, DType::I32);
    x.upload(ctx());
    w.upload(ctx());
    xi.upload(ctx());
    mamba_rms_norm_args a{};
    a.x = x.dl();
    a.weight = w.dl();
    EXPECT_EQ(mamba_rms_norm(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(), "mamba_rms_norm: argument 'y' is null");
    a.y = x.dl();
    a.x = xi.dl();
    EXPECT_EQ(mamba_rms_norm(ctx(), &a), MAMBA_STATUS_UNSUPPORTED);
    EXPECT_NE(std::string(mamba_last_error()).find("argument 'x' has dtype int32"), std::string::npos) << mamba_last_error();
}

TEST_P(RmsNormTest, TensorOnAnotherDeviceIsRejected) {
    std::vector<float> host(16, 1.0f);
    int64_t shape[2] = {2, 8}, wshape[1] = {8};
    DLTensor x{host.data(), {on_cuda() ? kDLCPU : kDLCUDA, 0}, 2, {kDLFloat, 32, 1}, shape, nullptr, 0};
    DLTensor w{host.data(), {on_cuda() ? kDLCPU : kDLCUDA, 0}, 1, {kDLFloat, 32, 1}, wshape, nullptr, 0};
    mamba_rms_norm_args a{};
    a.x = &x;
    a.weight = &w;
    a.y = &x;
    EXPECT_EQ(mamba_rms_norm(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_NE(std::string(mamba_last_error()).find("argument 'x' lives on"), std::string::npos) << mamba_last_error();
}

MAMBA_INSTANTIATE_BACKENDS(RmsNormTest);
