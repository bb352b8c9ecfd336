// mamba_gated_rms_norm against a float64 reference, per backend, dtype, group size, gate order and layout.
#include "backend_test.h"

namespace {

using mt::DType;
using mt::Tensor;

double silu(double v) { return v / (1.0 + std::exp(-v)); }

// Mamba-2's definition: with norm_before_gate = 0 the gate multiplies x before the norm, with 1 after;
// the mean square is taken per group of `group` channels.
std::vector<double> reference_gated_rms_norm(const Tensor & x, const Tensor * z, const Tensor & w, int64_t group, double eps, bool norm_before_gate) {
    const int64_t rows = x.shape()[0], D = x.shape()[1];
    std::vector<double> y(size_t(rows * D));
    for (int64_t r = 0; r < rows; ++r) {
        for (int64_t g0 = 0; g0 < D; g0 += group) {
            std::vector<double> v(static_cast<size_t>(group));
            double ss = 0;
            for (int64_t i = 0; i < group; ++i) {
                const int64_t at = r * D + g0 + i;
                v[size_t(i)] = x.at(at) * (z && !norm_before_gate ? silu(z->at(at)) : 1.0);
                ss += v[size_t(i)] * v[size_t(i)];
            }
            const double inv = 1.0 / std::sqrt(ss / double(group) + eps);
            for (int64_t i = 0; i < group; ++i) {
                const int64_t at = r * D + g0 + i;
                y[size_t(at)] = v[size_t(i)] * inv * w.at(g0 + i) * (z && norm_before_gate ? silu(z->at(at)) : 1.0);
            }
        }
    }
    return y;
}

struct Case {
    int64_t rows, dim, group_size;  // group_size 0: one group
    DType dtype;
    bool gate, norm_before_gate, strided;
};

}  // namespace

class GatedRmsNormTest : public mt::BackendTest {
protected:
    std::mt19937_64 rng_{99};
    // With lead_in_ an op whose outputs libmamba records runs just before the call (mt::LeadIn): on CUDA the
    // register kernels then load the weight and z before their launch wait.
    bool lead_in_ = false;

    void run(const Case & c, DType weight_dtype, DType y_dtype) {
        SCOPED_TRACE(std::string(mt::dtype_name(c.dtype)) + " rows " + std::to_string(c.rows) + " dim " + std::to_string(c.dim) + " group " +
                     std::to_string(c.group_size) + (c.gate ? " gate" : "") + (c.norm_before_gate ? " norm_before_gate" : "") +
                     (c.strided ? " strided" : ""));
        const std::vector<int64_t> shape{c.rows, c.dim};
        const auto strides = c.strided ? mt::padded_strides(shape, 1, 3) : std::vector<int64_t>{};
        Tensor x(shape, c.dtype, strides), z(shape, c.dtype, c.strided ? mt::padded_strides(shape, 1, 1) : std::vector<int64_t>{});
        Tensor w({c.dim}, weight_dtype, c.strided ? std::vector<int64_t>{2} : std::vector<int64_t>{}), y(shape, y_dtype, strides);
        x.fill_uniform(rng_, -2, 2);
        z.fill_uniform(rng_, -4, 4);
        w.fill_uniform(rng_, 0.5, 1.5);
        x.upload(ctx());
        w.upload(ctx());
        y.upload_poisoned(ctx());
        mamba_gated_rms_norm_args a{};
        a.x = x.dl();
        a.weight = w.dl();
        a.y = y.dl();
        a.group_size = c.group_size;
        a.eps = 1e-5f;
        a.norm_before_gate = c.norm_before_gate;
        if (c.gate) {
            z.upload(ctx());
            a.z = z.dl();
        }
        mt::LeadIn lead(ctx());
        if (lead_in_) lead.queue();
        MAMBA_ASSERT_OK(mamba_gated_rms_norm(ctx(), &a));
        y.download(ctx());
        const auto ref = reference_gated_rms_norm(x, c.gate ? &z : nullptr, w, c.group_size == 0 ? c.dim : c.group_size, 1e-5, c.norm_before_gate);
        const double tol = 4 * mt::dtype_epsilon(y_dtype) + 2e-6;
        EXPECT_CLOSE(y.values(), ref, tol, tol);
    }
};

TEST_P(GatedRmsNormTest, MatchesFloat64Reference) {
    for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
        for (bool gate : {false, true}) {
            for (bool before : {false, true}) {
                for (bool strided : {false, true}) {
                    run({3, 64, 0, dt, gate, before, strided}, dt, dt);
                    run({3, 64, 16, dt, gate, before, strided}, dt, dt);
                    run({1, 1, 0, dt, gate, before, strided}, dt, dt);
                    run({2, 6, 1, dt, gate, before, strided}, dt, dt);
                    // mamba2-2.7b: d_inner 5120 in 8 groups... and enough rows to run on every thread
                    run({9, 5120, 640, dt, gate, before, strided}, dt, dt);
                    run({5, 2560, 0, dt, gate, before, strided}, dt, dt);
                    // the CUDA register kernel's builds (1, 2, 4, 8 elements a thread), its largest group (5120)
                    // and groups past it (the loop kernel)
                    run({2, 1500, 0, dt, gate, before, strided}, dt, dt);
                    run({1, 4000, 0, dt, gate, before, strided}, dt, dt);
                    run({1, 5120, 0, dt, gate, before, strided}, dt, dt);
                    run({2, 5121, 0, dt, gate, before, strided}, dt, dt);
                    run({1, 8192, 0, dt, gate, before, strided}, dt, dt);
                }
            }
        }
    }
}

TEST_P(GatedRmsNormTest, ManyRowsMatchFloat64Reference) {
    // Prefill-sized calls (more row groups than the GPU has SMs): on CUDA the rows kernels where x, z, y and the
    // weight share a dtype and the rows are contiguous and 16-byte aligned, in each chunk build (1, 2 and 4 chunks of 8
    // elements a thread), and the register kernel where they do not apply (groups not whole chunks, strided rows).
    for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
        for (bool gate : {false, true}) {
            for (bool before : {false, true}) {
                run({300, 5120, 0, dt, gate, before, false}, dt, dt);  // mamba2-2.7b's prefill rows: 4 chunks a thread
                run({200, 1536, 0, dt, gate, before, false}, dt, dt);  // mamba2-130m's: 1 chunk
                run({160, 4096, 0, dt, gate, before, false}, dt, dt);  // 2 chunks
                run({140, 64, 16, dt, gate, before, false}, dt, dt);   // groups of 2 chunks, 560 of them
                run({150, 60, 12, dt, gate, before, false}, dt, dt);   // groups that are not whole chunks
                run({140, 256, 0, dt, gate, before, true}, dt, dt);    // strided rows
            }
        }
    }
    run({200, 512, 0, DType::BF16, true, false, false}, DType::F32, DType::BF16);  // a float32 weight: the register kernel
}

TEST_P(GatedRmsNormTest, ManyRowsInEveryChunkBuild) {
    // MAMBA_CUDA_NORM_ROWS=1, 2 or 4 forces the rows kernels' chunks a thread (where the row fits the build): each build
    // on rows that leave a partial last block of chunks and on groups.
    for (const char * chunks : {"1", "2", "4"}) {
        SCOPED_TRACE(std::string("MAMBA_CUDA_NORM_ROWS=") + chunks);
        const mt::ScopedEnv forced("MAMBA_CUDA_NORM_ROWS", chunks);
        for (DType dt : {DType::F32, DType::BF16}) {
            run({300, 5120, 0, dt, true, false, false}, dt, dt);
            run({150, 1000, 0, dt, true, true, false}, dt, dt);
            run({140, 2048, 512, dt, false, false, false}, dt, dt);
        }
    }
}

TEST_P(GatedRmsNormTest, WeightAndGateLoadedBeforeTheLaunchWait) {
    // Right after an op whose outputs are recorded (test_kernel_choice.cpp checks that the register kernels
    // then load early): groups, each elements-per-thread build, with and without z.
    lead_in_ = true;
    for (DType dt : {DType::F32, DType::BF16}) {
        for (bool gate : {false, true}) {
            run({3, 64, 16, dt, gate, false, false}, dt, dt);
            run({2, 1500, 0, dt, gate, true, true}, dt, dt);
            run({9, 5120, 640, dt, gate, false, false}, dt, dt);
            run({1, 5120, 0, dt, gate, true, false}, dt, dt);
        }
    }
}

TEST_P(GatedRmsNormTest, MixedDtypes) {
    run({4, 96, 32, DType::BF16, true, false, true}, DType::F32, DType::F32);
    run({4, 96, 32, DType::F16, true, true, false}, DType::BF16, DType::F32);
    run({4, 96, 0, DType::F32, true, false, false}, DType::F16, DType::BF16);
}

TEST_P(GatedRmsNormTest, OutputMayBeTheInputItself) {
    // y is x: a few rows (the register kernel on CUDA), and prefill-sized bf16 rows (the rows kernel).
    const auto in_place = [&](int64_t rows, int64_t dim, int64_t group, DType dt, double tol) {
        SCOPED_TRACE(std::string(mt::dtype_name(dt)) + " rows " + std::to_string(rows));
        std::mt19937_64 rng(uint64_t(4 + rows));
        Tensor x({rows, dim}, dt), z({rows, dim}, dt), w({dim}, dt);
        x.fill_uniform(rng, -2, 2);
        z.fill_uniform(rng, -2, 2);
        w.fill_uniform(rng, 0.5, 1.5);
        const auto ref = reference_gated_rms_norm(x, &z, w, group, 1e-6, false);
        for (Tensor * t : {&x, &z, &w}) t->upload(ctx());
        mamba_gated_rms_norm_args a{x.dl(), z.dl(), w.dl(), x.dl(), group, 1e-6f, 0};
        MAMBA_ASSERT_OK(mamba_gated_rms_norm(ctx(), &a));
        x.download(ctx());
        EXPECT_CLOSE(x.values(), ref, tol, tol);
    };
    in_place(3, 40, 10, DType::F32, 2e-6);
    in_place(300, 1024, 256, DType::BF16, 4 * mt::dtype_epsilon(DType::BF16));
}

TEST_P(GatedRmsNormTest, InvalidArgumentsNameTheArgument) {
    Tensor x({2, 12}, DType::F32), z({2, 12}, DType::F32), w({12}, DType::F32), y({2, 12}, DType::F32);
    Tensor z_bad({2, 11}, DType::F32), x_int({2, 12}, DType::I32), wide({2, 13}, DType::F32);
    for (Tensor * t : {&x, &z, &w, &y, &z_bad, &x_int, &wide}) t->upload(ctx());
    auto expect_error = [&](mamba_gated_rms_norm_args a, mamba_status status, const std::string & message) {
        EXPECT_EQ(mamba_gated_rms_norm(ctx(), &a), status) << message;
        EXPECT_NE(std::string(mamba_last_error()).find(message), std::string::npos) << mamba_last_error();
    };
    const mamba_gated_rms_norm_args ok{x.dl(), z.dl(), w.dl(), y.dl(), 4, 1e-5f, 0};
    MAMBA_ASSERT_OK(mamba_gated_rms_norm(ctx(), &ok));
    auto a = ok;
    a.group_size = 5;
    expect_error(a, MAMBA_STATUS_INVALID_ARGUMENT, "mamba_gated_rms_norm: group_size 5 does not divide dim 12");
    a = ok;
    a.group_size = -4;
    expect_error(a, MAMBA_STATUS_INVALID_ARGUMENT, "group_size is -4");
    a = ok;
    a.eps = -1.0f;
    expect_error(a, MAMBA_STATUS_INVALID_ARGUMENT, "eps is -1");
    a = ok;
    a.z = z_bad.dl();
    expect_error(a, MAMBA_STATUS_INVALID_ARGUMENT, "argument 'z' has shape (2, 11), expected (2, 12)");
    a = ok;
    a.weight = nullptr;
    expect_error(a, MAMBA_STATUS_INVALID_ARGUMENT, "argument 'weight' is null");
    a = ok;
    a.x = x_int.dl();
    expect_error(a, MAMBA_STATUS_UNSUPPORTED, "argument 'x' has dtype int32");
    a = ok;
    a.y = wide.dl();
    expect_error(a, MAMBA_STATUS_INVALID_ARGUMENT, "argument 'y' has shape (2, 13), expected (2, 12)");
    // Two (2, 11) views of x's memory, one element apart: they overlap without being the same view.
    mt::View x_view(x, {2, 11}, {12, 1}), y_view(x, {2, 11}, {12, 1}, sizeof(float));
    Tensor w11({11}, DType::F32);
    w11.upload(ctx());
    expect_error({x_view.dl(), nullptr, w11.dl(), y_view.dl(), 0, 1e-5f, 0}, MAMBA_STATUS_INVALID_ARGUMENT,
                 "arguments 'y' and 'x' overlap in memory without being the same view");
}

MAMBA_INSTANTIATE_BACKENDS(GatedRmsNormTest);
