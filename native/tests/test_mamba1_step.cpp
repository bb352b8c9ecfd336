// mamba_mamba1_step per backend against a float64 reference of the four ops it stands for (rounded where
// those ops store their outputs), over several steps in a row: bf16 and f16 shapes the one CUDA kernel takes
// (forced with MAMBA_CUDA_MAMBA1_STEP=fused, so a silent fallback fails), from a few channels per SM to the
// mamba-2.8b shape, with and without an op just before (the kernel's early loads); float32, mixed dtypes and
// batch 2, which take the four ops; and bad arguments. On CUDA every case also runs with "auto" (the one
// kernel where it can run, the four ops elsewhere) and "separate", the latter both with x_proj folded into
// in_proj (MAMBA_CUDA_MAMBA1_XPROJ=fused where the case allows it, so that a fallback fails) and on its own. The
// steps of a case, and the cases, run one after another on one context, so a fold that left its sums unzeroed
// would fail the next folded step. Cases with the block's pre-norm (pre_norm_weight) also run with the norm folded
// into in_proj (MAMBA_CUDA_STEP_PRE_NORM=fused where the case allows it) and as its own kernel.
#include <cmath>
#include <cstdlib>
#include <string>

#include "backend_test.h"
#include "step_reference.h"

namespace {

using mt::DType;
using mt::Tensor;

using mt::matvec;
using mt::silu;
using mt::softplus;
using mt::stored;

using mt::PreNorm;

struct Case {
    int64_t batch, hidden, inner, rank, dstate, width;
    DType act, weight;
    bool biases = false;
    bool lead_in = false;
    int steps = 3;
    bool cuda_only = false;
    PreNorm pre = PreNorm::None;
};

Case with_pre_norm(Case c, PreNorm pre) {
    c.pre = pre;
    return c;
}

std::string describe(const Case & c) {
    return "batch " + std::to_string(c.batch) + " hidden " + std::to_string(c.hidden) + " inner " + std::to_string(c.inner) + " rank " +
           std::to_string(c.rank) + " dstate " + std::to_string(c.dstate) + " width " + std::to_string(c.width) + " act " + mt::dtype_name(c.act) +
           " weight " + mt::dtype_name(c.weight) + (c.biases ? " biases" : "") + (c.lead_in ? " lead-in" : "") + mt::describe(c.pre);
}

// The tensors of one mixer and its state, the test's values alongside.
struct Mixer {
    Tensor x, w_in, b_in, conv_state, conv_w, conv_b, w_x, w_dt, dt_bias, A, D, ssm_state, w_out, b_out, y, xz, xc, xdbl, y_inner;
    mt::PreNormTensors pre;  // with Case::pre: x is then the norm's output, pre.x the step's input

    explicit Mixer(const Case & c)
        : x({c.batch, c.hidden}, c.act), w_in({2 * c.inner, c.hidden}, c.weight), b_in({2 * c.inner}, c.weight),
          conv_state({c.batch, c.inner, c.width - 1}, c.act), conv_w({c.inner, c.width}, c.weight), conv_b({c.inner}, c.weight),
          w_x({c.rank + 2 * c.dstate, c.inner}, c.weight), w_dt({c.inner, c.rank}, c.weight), dt_bias({c.inner}, DType::F32),
          A({c.inner, c.dstate}, DType::F32), D({c.inner}, DType::F32), ssm_state({c.batch, c.inner, c.dstate}, DType::F32),
          w_out({c.hidden, c.inner}, c.weight), b_out({c.hidden}, c.weight), y({c.batch, c.hidden}, c.act), xz({c.batch, 2 * c.inner}, c.act),
          xc({c.batch, c.inner}, c.act), xdbl({c.batch, c.rank + 2 * c.dstate}, c.act), y_inner({c.batch, c.inner}, c.act),
          pre(c.pre, c.batch, c.hidden, c.act, c.weight) {}

    // The tensors a call without biases reads or writes, as they are (unfilled), onto the context's device.
    void upload_unbiased(mamba_context * ctx) {
        for (Tensor * t : {&x, &w_in, &conv_state, &conv_w, &w_x, &w_dt, &dt_bias, &A, &D, &ssm_state, &w_out, &y, &xz, &xc, &xdbl, &y_inner})
            t->upload(ctx);
    }

    mamba_mamba1_step_args args(bool biases) {
        mamba_mamba1_step_args a{};
        a.x = x.dl();
        a.in_proj_weight = w_in.dl();
        a.in_proj_bias = biases ? b_in.dl() : nullptr;
        a.conv_state = conv_state.dl();
        a.conv_weight = conv_w.dl();
        a.conv_bias = biases ? conv_b.dl() : nullptr;
        a.x_proj_weight = w_x.dl();
        a.dt_proj_weight = w_dt.dl();
        a.dt_bias = dt_bias.dl();
        a.A = A.dl();
        a.D = D.dl();
        a.ssm_state = ssm_state.dl();
        a.out_proj_weight = w_out.dl();
        a.out_proj_bias = biases ? b_out.dl() : nullptr;
        a.y = y.dl();
        a.xz = xz.dl();
        a.xc = xc.dl();
        a.xdbl = xdbl.dl();
        a.y_inner = y_inner.dl();
        pre.set(a);
        return a;
    }
};

// One step in float64 for every batch row; conv_state and ssm_state (the test's values) are updated.
// Each intermediate is rounded to the dtype of the tensor the separate ops store it in.
std::vector<double> reference_step(const Case & c, Mixer & m) {
    const int64_t W = c.width;
    std::vector<double> out;
    for (int64_t b = 0; b < c.batch; ++b) {
        std::vector<double> xz = matvec(m.w_in, &m.x.at(b * c.hidden), c.biases ? &m.b_in : nullptr);
        for (double & v : xz) v = stored(c.act, v);
        std::vector<double> xc(size_t(c.inner));
        for (int64_t d = 0; d < c.inner; ++d) {
            double * st = &m.conv_state.at((b * c.inner + d) * (W - 1));
            double acc = c.biases ? m.conv_b.at(d) : 0.0;
            for (int64_t k = 0; k < W; ++k) acc += m.conv_w.at(d * W + k) * (k < W - 1 ? st[k] : xz[size_t(d)]);
            xc[size_t(d)] = stored(c.act, silu(acc));
            for (int64_t k = 0; k + 1 < W - 1; ++k) st[k] = st[k + 1];
            st[W - 2] = stored(c.act, xz[size_t(d)]);
        }
        std::vector<double> xdbl = matvec(m.w_x, xc.data(), nullptr);
        for (double & v : xdbl) v = stored(c.act, v);
        std::vector<double> y_inner(size_t(c.inner));
        for (int64_t d = 0; d < c.inner; ++d) {
            double dt = m.dt_bias.at(d);
            for (int64_t r = 0; r < c.rank; ++r) dt += m.w_dt.at(d * c.rank + r) * xdbl[size_t(r)];
            dt = softplus(dt);
            double acc = 0.0;
            for (int64_t n = 0; n < c.dstate; ++n) {
                double & h = m.ssm_state.at((b * c.inner + d) * c.dstate + n);
                h = std::exp(dt * m.A.at(d * c.dstate + n)) * h + dt * xc[size_t(d)] * xdbl[size_t(c.rank + n)];
                acc += xdbl[size_t(c.rank + c.dstate + n)] * h;
            }
            const double yv = (acc + m.D.at(d) * xc[size_t(d)]) * silu(xz[size_t(c.inner + d)]);
            y_inner[size_t(d)] = stored(c.act, yv);
        }
        std::vector<double> y = matvec(m.w_out, y_inner.data(), c.biases ? &m.b_out : nullptr);
        for (double v : y) out.push_back(stored(c.act, v));
    }
    return out;
}

// Whether the one CUDA kernel takes the case (mamba.h): batch 1, one 16-bit dtype throughout, widths up to 5120.
bool fusable(const Case & c) {
    return c.batch == 1 && c.act == c.weight && (c.act == DType::BF16 || c.act == DType::F16) && c.hidden % 8 == 0 && c.inner % 8 == 0 &&
           c.hidden <= 5120 && c.inner <= 5120 && c.rank % 8 == 0 && c.width >= 2 && c.width <= 4 && c.dstate % 4 == 0 && c.dstate <= 128;
}

// Whether x_proj folds on CUDA (step_xproj.cuh), with in_proj's conv step in its GEMV unless conv_separate
// (MAMBA_CUDA_LINEAR_CONV=separate). At batch 1 into in_proj: its GEMV with the conv step (16-byte weight rows), whole
// blocks of conv channels (inner a multiple of 32 covers every block size), x_proj's columns of a block within the
// kernel's 28 KB. At 2 to 16 rows into the conv step (conv_xproj_step.cu), where the conv step runs apart from in_proj:
// cuBLAS's GEMM takes the projection from 2048 outputs or 8 rows of one 16-bit dtype without a bias (gemv.cu), and
// x_proj's rows are whole 16-byte pieces. Both need the state update's vectorized build.
bool xproj_foldable(const Case & c, bool conv_separate = false) {
    const int64_t elem = int64_t(mt::dtype_size(c.weight));
    const bool update = c.rank * elem % 16 == 0 && c.dstate % 4 == 0;
    if (c.batch == 1)
        return !conv_separate && update && c.inner % 32 == 0 && c.hidden * elem % 16 == 0 && (c.rank + 2 * c.dstate) * 32 * elem <= 28 * 1024;
    const bool sixteen_bit = c.act == c.weight && (c.weight == DType::BF16 || c.weight == DType::F16);
    const bool gemm = sixteen_bit && !c.biases && (2 * c.inner >= 2048 || c.batch >= 8);
    return c.batch <= 16 && (gemm || conv_separate) && update && c.inner * elem % 16 == 0;
}

class Mamba1StepTest : public mt::BackendTest {
protected:
    bool device_has_clusters() {
        mamba_device_info info{};
        return mamba_device_get_info(MAMBA_DEVICE_CUDA, 0, &info) == MAMBA_STATUS_OK && info.compute_capability_major >= 9;
    }

    // A step call with `variable` set to `value` fails with INVALID_ARGUMENT naming the accepted values.
    void expect_setting_rejected(const char * variable, const char * value, const char * accepted) {
        const Case c{1, 64, 128, 8, 16, 4, DType::BF16, DType::BF16};
        Mixer m(c);
        m.upload_unbiased(ctx());
        mamba_mamba1_step_args a = m.args(false);
        const mt::ScopedEnv env(variable, value);
        EXPECT_EQ(mamba_mamba1_step(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
        const std::string expected = std::string("mamba_mamba1_step: ") + variable + " must be one of " + accepted + " (or unset), not '" + value + "'";
        EXPECT_STREQ(mamba_last_error(), expected.c_str());
    }

    // A CUDA context made with MAMBA_CUDA_TRACE=1, which prints each launch to stderr.
    static mt::ContextPtr traced_context() {
        const mt::ScopedEnv trace("MAMBA_CUDA_TRACE", "1");
        return mt::make_context(MAMBA_DEVICE_CUDA);
    }

    // What one step of a (zero-filled) mixer of shape c prints on `traced`: its launches. The step must succeed.
    static std::string step_launches(mamba_context * traced, const Case & c) {
        Mixer m(c);
        m.upload_unbiased(traced);
        mamba_mamba1_step_args a = m.args(false);
        ::testing::internal::CaptureStderr();
        const mamba_status status = mamba_mamba1_step(traced, &a);
        const std::string log = ::testing::internal::GetCapturedStderr();
        EXPECT_EQ(status, MAMBA_STATUS_OK) << mamba_last_error();
        return log;
    }

    void run(const Case & c) {
        if (c.cuda_only && !on_cuda()) GTEST_SKIP() << "a CUDA-sized shape";
        SCOPED_TRACE(describe(c));
        // "fused" where the one kernel must run (so that a fallback fails), the default otherwise.
        const bool fused = on_cuda() && fusable(c) && device_has_clusters();
        struct Variant {
            const char *step, *xproj, *pre;
        };
        // The pre-norm folds where in_proj runs the conv step (16-byte weight rows) at batch 1 ("" without a pre-norm).
        const char * pre_fold = c.pre != PreNorm::None && c.batch == 1 && c.hidden * int64_t(mt::dtype_size(c.weight)) % 16 == 0 ? "fused" : "";
        const char * linear_conv = std::getenv("MAMBA_CUDA_LINEAR_CONV");
        const bool foldable = xproj_foldable(c, linear_conv != nullptr && std::string(linear_conv) == "separate") && (c.batch == 1 || device_has_clusters());
        const char * xproj_fold = foldable ? "fused" : "";
        // The one kernel (which reads the norm's output) or the default; on CUDA also the three or four kernels with the
        // pre-norm folded, x_proj's fold on and off, and with the pre-norm as its own kernel.
        std::vector<Variant> variants{{fused ? "fused" : "", "", ""}};
        if (on_cuda()) variants.insert(variants.end(), {{"auto", "", ""}, {"separate", xproj_fold, pre_fold}, {"separate", "separate", pre_fold}});
        if (on_cuda() && c.pre != PreNorm::None) variants.push_back({"separate", xproj_fold, "separate"});
        for (const Variant & variant : variants) {
            SCOPED_TRACE(std::string("MAMBA_CUDA_MAMBA1_STEP=") + variant.step + " MAMBA_CUDA_MAMBA1_XPROJ=" + variant.xproj +
                         " MAMBA_CUDA_STEP_PRE_NORM=" + variant.pre);
            const mt::ScopedEnv env("MAMBA_CUDA_MAMBA1_STEP", variant.step), xproj_env("MAMBA_CUDA_MAMBA1_XPROJ", variant.xproj),
                pre_env("MAMBA_CUDA_STEP_PRE_NORM", variant.pre);
            std::mt19937_64 rng(11 + uint64_t(c.hidden * 31 + c.inner * 7 + c.dstate));
            Mixer m(c);
            const double in_scale = 1.0 / std::sqrt(double(c.hidden)), inner_scale = 1.0 / std::sqrt(double(c.inner));
            m.w_in.fill_uniform(rng, -in_scale, in_scale);
            m.b_in.fill_uniform(rng, -0.5, 0.5);
            m.conv_w.fill_uniform(rng, -0.5, 0.5);
            m.conv_b.fill_uniform(rng, -0.5, 0.5);
            m.conv_state.fill_uniform(rng, -1, 1);
            m.w_x.fill_uniform(rng, -inner_scale, inner_scale);
            m.w_dt.fill_uniform(rng, -1.0 / std::sqrt(double(c.rank)), 1.0 / std::sqrt(double(c.rank)));
            m.dt_bias.fill_uniform(rng, -4, -1);
            m.A.fill_uniform(rng, -8, -0.5);
            m.D.fill_uniform(rng, -1, 1);
            m.ssm_state.fill_uniform(rng, -1, 1);
            m.w_out.fill_uniform(rng, -inner_scale, inner_scale);
            m.b_out.fill_uniform(rng, -0.5, 0.5);
            for (Tensor * t : {&m.w_in, &m.b_in, &m.conv_w, &m.conv_b, &m.conv_state, &m.w_x, &m.w_dt, &m.dt_bias, &m.A, &m.D, &m.ssm_state, &m.w_out,
                               &m.b_out}) {
                t->round_to_dtype();
                t->upload(ctx());
            }
            for (Tensor * t : {&m.xz, &m.xc, &m.xdbl, &m.y_inner}) t->upload_poisoned(ctx());
            m.pre.fill_and_upload(ctx(), rng);
            mt::LeadIn lead(ctx());
            // 16-bit intermediates can round the other way when the sums run in another order; what that
            // moves stays within a few units of the activation dtype's rounding.
            const double tol = c.act == DType::F32 ? 2e-4 : 24 * mt::dtype_epsilon(c.act);
            for (int step = 0; step < c.steps; ++step) {
                SCOPED_TRACE("step " + std::to_string(step));
                m.x.fill_uniform(rng, -2, 2);
                m.x.round_to_dtype();
                m.x.upload(ctx());
                m.y.upload_poisoned(ctx());
                m.pre.next_step(ctx(), rng, m.x);  // with the pre-norm: a new input, m.x its norm's output
                const std::vector<double> expected = reference_step(c, m);
                const std::vector<double> conv_expected = m.conv_state.values(), ssm_expected = m.ssm_state.values();
                mamba_mamba1_step_args a = m.args(c.biases);
                if (c.lead_in) lead.queue();
                MAMBA_ASSERT_OK(mamba_mamba1_step(ctx(), &a));
                m.y.download(ctx());
                m.conv_state.download(ctx());
                m.ssm_state.download(ctx());
                EXPECT_CLOSE(m.y.values(), expected, tol, tol);
                EXPECT_CLOSE(m.conv_state.values(), conv_expected, tol, tol);
                EXPECT_CLOSE(m.ssm_state.values(), ssm_expected, tol, tol);
                m.pre.check(ctx());
                // Carry the reference's states on, so that one step's rounding does not accumulate.
                m.conv_state.values() = conv_expected;
                m.ssm_state.values() = ssm_expected;
                m.conv_state.upload(ctx());
                m.ssm_state.upload(ctx());
            }
        }
    }
};

TEST_P(Mamba1StepTest, FewChannelsPerBlock) { run({1, 64, 128, 8, 16, 4, DType::BF16, DType::BF16}); }
TEST_P(Mamba1StepTest, BiasesWidth3Dstate8) { run({1, 128, 256, 16, 8, 3, DType::BF16, DType::BF16, true}); }
TEST_P(Mamba1StepTest, Float16Width2Dstate12) { run({1, 96, 192, 8, 12, 2, DType::F16, DType::F16, true}); }
TEST_P(Mamba1StepTest, Dstate128) { run({1, 64, 64, 8, 128, 4, DType::BF16, DType::BF16}); }
TEST_P(Mamba1StepTest, Mamba130mShape) { run({1, 768, 1536, 48, 16, 4, DType::BF16, DType::BF16, false, true, 2}); }
TEST_P(Mamba1StepTest, Mamba28bShapeAfterAnotherOp) { run({1, 2560, 5120, 160, 16, 4, DType::BF16, DType::BF16, false, true, 2, true}); }
TEST_P(Mamba1StepTest, Float32TakesTheFourOps) { run({1, 64, 128, 8, 16, 4, DType::F32, DType::F32, true}); }
TEST_P(Mamba1StepTest, MixedDtypesTakeTheFourOps) { run({1, 64, 128, 8, 16, 4, DType::F32, DType::BF16}); }
TEST_P(Mamba1StepTest, Batch2TakesTheFourOps) { run({2, 64, 128, 8, 16, 4, DType::BF16, DType::BF16, true}); }
// From 8 rows (or 2048 in_proj outputs) cuBLAS takes in_proj, and x_proj folds into the conv step: 2 blocks of 64
// channels; 200 channels (blocks of 64, 64, 64 and 8); float16 at 16 rows with a width-3 filter and dstate 8; the
// mamba-130m shape at 2 rows and the mamba-2.8b shape at 8.
TEST_P(Mamba1StepTest, Batch8FoldsXProjIntoTheConvStep) { run({8, 64, 128, 8, 16, 4, DType::BF16, DType::BF16}); }
TEST_P(Mamba1StepTest, Batch8ChannelsEndInAPartBlock) { run({8, 64, 200, 8, 16, 4, DType::BF16, DType::BF16}); }
TEST_P(Mamba1StepTest, Batch16Float16Width3Dstate8) { run({16, 96, 192, 8, 8, 3, DType::F16, DType::F16}); }
TEST_P(Mamba1StepTest, Batch2Mamba130mShape) { run({2, 768, 1536, 48, 16, 4, DType::BF16, DType::BF16, false, true, 2, true}); }
TEST_P(Mamba1StepTest, Batch8Mamba28bShapeAfterAnotherOp) { run({8, 2560, 5120, 160, 16, 4, DType::BF16, DType::BF16, false, true, 2, true}); }
TEST_P(Mamba1StepTest, XProjFoldsIntoTheConvStepWhereInProjRunsApart) {
    // With MAMBA_CUDA_LINEAR_CONV=separate in_proj's GEMV leaves the conv step to its own kernel at any row count, and
    // from 2 rows x_proj folds into it: biases, float32 (x_proj's weight in 4-byte elements), mixed dtypes.
    const mt::ScopedEnv conv("MAMBA_CUDA_LINEAR_CONV", "separate");
    run({2, 64, 128, 8, 16, 4, DType::BF16, DType::BF16, true});
    run({4, 64, 128, 8, 16, 4, DType::F32, DType::F32, true});
    run({3, 64, 136, 8, 16, 4, DType::F32, DType::BF16});
}

TEST_P(Mamba1StepTest, PreNormFewChannels) { run(with_pre_norm({1, 64, 128, 8, 16, 4, DType::BF16, DType::BF16, true}, PreNorm::WithResidual)); }
TEST_P(Mamba1StepTest, PreNormFirstBlockHasNoResidual) { run(with_pre_norm({1, 128, 256, 16, 8, 3, DType::BF16, DType::BF16}, PreNorm::NoResidual)); }
TEST_P(Mamba1StepTest, PreNormFloat16) { run(with_pre_norm({1, 96, 192, 8, 12, 2, DType::F16, DType::F16, true}, PreNorm::WithResidual)); }
TEST_P(Mamba1StepTest, PreNormTwoXTiles) { run(with_pre_norm({1, 4160, 256, 8, 16, 4, DType::BF16, DType::BF16}, PreNorm::WithResidual)); }
TEST_P(Mamba1StepTest, PreNormFloat32) { run(with_pre_norm({1, 64, 128, 8, 16, 4, DType::F32, DType::F32, true}, PreNorm::WithResidual)); }
TEST_P(Mamba1StepTest, PreNormBatch2) { run(with_pre_norm({2, 64, 128, 8, 16, 4, DType::BF16, DType::BF16}, PreNorm::WithResidual)); }
TEST_P(Mamba1StepTest, PreNormMamba28bShapeAfterAnotherOp) {
    run(with_pre_norm({1, 2560, 5120, 160, 16, 4, DType::BF16, DType::BF16, false, true, 2, true}, PreNorm::WithResidual));
}

TEST_P(Mamba1StepTest, PreNormBadArguments) {
    const Case c = with_pre_norm({1, 64, 128, 8, 16, 4, DType::BF16, DType::BF16}, PreNorm::WithResidual);
    Mixer m(c);
    m.upload_unbiased(ctx());
    m.pre.upload_all(ctx());
    mt::expect_pre_norm_errors(ctx(), "mamba_mamba1_step", m.args(false), m.y, [](mamba_context * x, const mamba_mamba1_step_args * a) { return mamba_mamba1_step(x, a); });
}

TEST_P(Mamba1StepTest, ForcedPreNormFoldThatCannotRunSaysWhy) {
    if (!on_cuda()) GTEST_SKIP() << "MAMBA_CUDA_STEP_PRE_NORM is read by the CUDA backend";
    const mt::ScopedEnv env("MAMBA_CUDA_STEP_PRE_NORM", "fused");
    {
        const Case c = with_pre_norm({2, 64, 128, 8, 16, 4, DType::BF16, DType::BF16}, PreNorm::WithResidual);
        Mixer m(c);
        m.upload_unbiased(ctx());
        m.pre.upload_all(ctx());
        mamba_mamba1_step_args a = m.args(false);
        EXPECT_EQ(mamba_mamba1_step(ctx(), &a), MAMBA_STATUS_UNSUPPORTED);
        EXPECT_STREQ(mamba_last_error(), "mamba_mamba1_step: MAMBA_CUDA_STEP_PRE_NORM=fused, but the pre-norm cannot fold into in_proj: it takes batch 1, not 2");
    }
    const Case c = with_pre_norm({1, 64, 128, 8, 16, 4, DType::BF16, DType::BF16}, PreNorm::WithResidual);
    Mixer m(c);
    m.upload_unbiased(ctx());
    m.pre.upload_all(ctx());
    {
        const mt::ScopedEnv conv("MAMBA_CUDA_LINEAR_CONV", "separate");
        mamba_mamba1_step_args a = m.args(false);
        EXPECT_EQ(mamba_mamba1_step(ctx(), &a), MAMBA_STATUS_UNSUPPORTED);
        EXPECT_NE(std::string(mamba_last_error()).find("the pre-norm cannot fold into in_proj: in_proj does not run the conv step in its GEMV"), std::string::npos)
            << mamba_last_error();
    }
    {
        const mt::ScopedEnv conv("MAMBA_CUDA_STEP_PRE_NORM", "both");
        mamba_mamba1_step_args a = m.args(false);
        EXPECT_EQ(mamba_mamba1_step(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
        EXPECT_STREQ(mamba_last_error(), "mamba_mamba1_step: MAMBA_CUDA_STEP_PRE_NORM must be one of auto, fused, separate (or unset), not 'both'");
    }
    mamba_mamba1_step_args a = m.args(false);
    MAMBA_ASSERT_OK(mamba_mamba1_step(ctx(), &a));  // the fold runs where it can
}

TEST_P(Mamba1StepTest, FourKernelsWithEitherWeightPriority) {
    // The four ops stream their weights evict-first in L2 unless MAMBA_CUDA_GEMV_EVICT says otherwise; the
    // priority changes how they run, never what they compute (run() takes the four ops under "separate" among
    // its variants). Batch 2 too (cuBLAS takes none of these shapes' rows at 2). The CPU backend reads no such
    // variable.
    for (const char * evict : {"normal", "first"}) {
        SCOPED_TRACE(std::string("MAMBA_CUDA_GEMV_EVICT=") + evict);
        const mt::ScopedEnv priority("MAMBA_CUDA_GEMV_EVICT", evict);
        run({1, 768, 1536, 48, 16, 4, DType::BF16, DType::BF16, false, true, 2});
        run({2, 128, 256, 16, 8, 3, DType::F16, DType::F16, true});
    }
}

TEST_P(Mamba1StepTest, OneKernelSettingsChangeNoResult) {
    // The one kernel's tuning variables (out_proj's pacing, the weights' L2 priority, the timeline) change how
    // it runs, never what it computes; the mamba-130m shape streams several stages of each matrix a block, so
    // a pace of 1 holds the loader back. The CPU backend reads none of them.
    const struct {
        const char *pace, *evict, *timeline;
    } settings[] = {{"0", "normal", "0"}, {"1", "first", "1"}, {"4", "normal", "0"}};
    for (const auto & v : settings) {
        SCOPED_TRACE(std::string("pace ") + v.pace + " evict " + v.evict + " timeline " + v.timeline);
        const mt::ScopedEnv pace("MAMBA_CUDA_MAMBA1_STEP_PACE", v.pace), evict("MAMBA_CUDA_MAMBA1_STEP_EVICT", v.evict),
            timeline("MAMBA_CUDA_MAMBA1_STEP_TIMELINE", v.timeline);
        run({1, 768, 1536, 48, 16, 4, DType::BF16, DType::BF16, false, true, 2});
    }
}

TEST_P(Mamba1StepTest, XProjReplicasChangeNoResult) {
    // The folded x_proj's sums in 1 to 8 copies change which atomic adds queue together, never what the step
    // computes (beyond float64 rounding). The CPU backend reads neither variable.
    for (const char * replicas : {"1", "2", "4", "8"}) {
        SCOPED_TRACE(std::string("MAMBA_CUDA_MAMBA1_XPROJ_REPLICAS=") + replicas);
        const mt::ScopedEnv copies("MAMBA_CUDA_MAMBA1_XPROJ_REPLICAS", replicas);
        run({1, 768, 1536, 48, 16, 4, DType::BF16, DType::BF16, false, true, 2});
    }
    if (on_cuda()) expect_setting_rejected("MAMBA_CUDA_MAMBA1_XPROJ_REPLICAS", "3", "1, 2, 4, 8");
}

TEST_P(Mamba1StepTest, StateUpdateWeightsInSharedMemoryOrRegisters) {
    // The update from x_proj's sums copies its block's dt_proj rows to shared memory where they fit 48 KB with dt_low, B
    // and C: rows of 1, 6 (split unevenly over a channel's 4 lanes) and 20 chunks, 8 to 64 channels a block. Float32
    // rows of rank 192 (48 KB for 64 channels) do not fit, and stay in registers.
    run({1, 64, 128, 8, 16, 4, DType::BF16, DType::BF16});
    run({1, 768, 1536, 48, 16, 4, DType::BF16, DType::BF16, false, true, 2});
    run({1, 64, 64, 8, 128, 4, DType::BF16, DType::BF16});
    run({1, 128, 256, 40, 8, 3, DType::F32, DType::F32, true, false, 2});
    run({1, 64, 128, 192, 16, 4, DType::F32, DType::F32, true, false, 2});
}

TEST_P(Mamba1StepTest, XProjSumsClearedByOutProjOrByTheUpdate) {
    // x_proj's sums go back to zero for the next step either at the end of out_proj's GEMV (the default; the tiled
    // kernel at hidden 2560 and 64, the warp kernel at 768) or in the state update's last block: three steps in a row
    // match the reference either way. The CPU backend reads neither setting.
    for (const char * by : {"out_proj", "update"}) {
        SCOPED_TRACE(std::string("MAMBA_CUDA_MAMBA1_SUMS_CLEAR=") + by);
        const mt::ScopedEnv clear("MAMBA_CUDA_MAMBA1_SUMS_CLEAR", by);
        run({1, 64, 128, 8, 16, 4, DType::BF16, DType::BF16, false, false, 3});
        run({1, 768, 1536, 48, 16, 4, DType::BF16, DType::BF16, false, true, 3});
        run(with_pre_norm({1, 64, 128, 8, 16, 4, DType::F32, DType::F32, true, false, 3}, PreNorm::WithResidual));
    }
    if (on_cuda()) expect_setting_rejected("MAMBA_CUDA_MAMBA1_SUMS_CLEAR", "in_proj", "out_proj, update");
}

TEST_P(Mamba1StepTest, StateUpdateReleasePointsChangeNoResult) {
    // Where the state update lets out_proj start (MAMBA_CUDA_UPDATE_RELEASE: before its own wait, the default of the
    // update from x_proj's sums, or after it) changes no result: the update from the sums at the mamba-2.8b shape after
    // another op (out_proj's early and staged loads while in_proj may still run), a small shape over three steps, and
    // the four kernels at batch 2. The CPU backend reads no such variable.
    for (const char * release : {"before_wait", "start"}) {
        SCOPED_TRACE(std::string("MAMBA_CUDA_UPDATE_RELEASE=") + release);
        const mt::ScopedEnv env("MAMBA_CUDA_UPDATE_RELEASE", release);
        run({1, 2560, 5120, 160, 16, 4, DType::BF16, DType::BF16, false, true, 2, true});
        run(with_pre_norm({1, 64, 128, 8, 16, 4, DType::BF16, DType::BF16, true, false, 3}, PreNorm::WithResidual));
        run({2, 64, 128, 8, 16, 4, DType::BF16, DType::BF16, true});
    }
    if (!on_cuda()) return;
    expect_setting_rejected("MAMBA_CUDA_UPDATE_RELEASE", "early", "start, before_wait");
    // Rejected before in_proj runs: the conv state stays as it was.
    const Case c{1, 64, 128, 8, 16, 4, DType::BF16, DType::BF16};
    Mixer m(c);
    std::mt19937_64 rng(29);
    for (Tensor * t : {&m.x, &m.w_in, &m.conv_state, &m.conv_w}) t->fill_uniform(rng, -1, 1);
    m.upload_unbiased(ctx());
    m.conv_state.download(ctx());  // as stored, rounded to its dtype
    const std::vector<double> conv_before = m.conv_state.values();
    mamba_mamba1_step_args a = m.args(false);
    const mt::ScopedEnv env("MAMBA_CUDA_UPDATE_RELEASE", "early");
    EXPECT_EQ(mamba_mamba1_step(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
    m.conv_state.download(ctx());
    EXPECT_EQ(m.conv_state.values(), conv_before);
}

TEST_P(Mamba1StepTest, OutProjWeightsStagedOrNot) {
    // At one row out_proj's GEMV copies every vector a lane has in its first x tile past the registers' batch into
    // shared memory before its wait (gemv.cu, "Staged W"); MAMBA_CUDA_GEMV_STAGE=one stages the second batch only (its
    // own build, an 8192-column tile), "off" nothing, and the result is the same. The mamba-2.8b shape (3 of a lane's 5
    // vectors a row staged, the second batch partial; 2 with "one"), and the edges of the x tiles at 1088 outputs (over
    // the warp kernel's 1024, so the tiled kernel, in blocks of 4 outputs, a warp's 8 column slices 256 vectors apart):
    // 4608 inputs, 576 vectors a row, where of the staged vectors 512-1023 only 512-575 are in range (the rest copied
    // as zeros); 8320 inputs, two tiles of either build, the first holding 3 (default, 5120 columns) or 4 ("one")
    // vectors a lane, the second loaded after the wait. And both staged batches whole with more of the tile after them:
    // 4352 outputs, 4096 inputs (on 108-132 SMs blocks of 16 outputs, a warp's 2 column slices 64 vectors apart: 8
    // vectors a lane, 4 of them staged, the last 2 loaded after the wait). The CPU backend reads no such variable.
    for (const char * stage : {"auto", "one", "off"}) {
        SCOPED_TRACE(std::string("MAMBA_CUDA_GEMV_STAGE=") + stage);
        const mt::ScopedEnv env("MAMBA_CUDA_GEMV_STAGE", stage);
        run({1, 2560, 5120, 160, 16, 4, DType::BF16, DType::BF16, false, true, 2, true});
        run({1, 1088, 4608, 8, 16, 4, DType::BF16, DType::BF16, true, true, 2, true});
        run({1, 1088, 8320, 8, 16, 4, DType::F16, DType::F16, true, true, 2, true});
        run({1, 4352, 4096, 8, 16, 4, DType::BF16, DType::BF16, true, true, 2, true});
    }
    if (on_cuda()) expect_setting_rejected("MAMBA_CUDA_GEMV_STAGE", "all", "auto, one, off");
}

TEST_P(Mamba1StepTest, OutProjStagesItsWeightsWhereAskedAndAllowed) {
    // Which out_proj kernel the mamba-2.8b step launches (a context made with MAMBA_CUDA_TRACE=1 prints each launch):
    // the staged build by default, the one-batch build with MAMBA_CUDA_GEMV_STAGE=one, the plain early one with "off",
    // and the plain early one for the mamba-1.4b shape, whose tile a lane covers in one batch (nothing left to stage);
    // the staged builds for the two tile-edge cases of OutProjWeightsStagedOrNot.
    if (!on_cuda()) GTEST_SKIP() << "the CUDA backend's kernel choice";
    const mt::ContextPtr traced = traced_context();
    ASSERT_NE(traced, nullptr);
    const struct {
        Case shape;
        const char * stage;
        bool staged;
    } cases[] = {{{1, 2560, 5120, 160, 16, 4, DType::BF16, DType::BF16}, "auto", true},
                 {{1, 2560, 5120, 160, 16, 4, DType::BF16, DType::BF16}, "off", false},
                 {{1, 2048, 4096, 128, 16, 4, DType::BF16, DType::BF16}, "auto", false},
                 {{1, 1088, 4608, 8, 16, 4, DType::BF16, DType::BF16}, "auto", true},
                 {{1, 1088, 8320, 8, 16, 4, DType::F16, DType::F16}, "auto", true},
                 {{1, 2560, 5120, 160, 16, 4, DType::BF16, DType::BF16}, "one", true},
                 {{1, 2048, 4096, 128, 16, 4, DType::BF16, DType::BF16}, "one", false},
                 {{1, 1088, 8320, 8, 16, 4, DType::F16, DType::F16}, "one", true}};
    for (const auto & c : cases) {
        SCOPED_TRACE(describe(c.shape) + " MAMBA_CUDA_GEMV_STAGE=" + c.stage);
        const mt::ScopedEnv stage("MAMBA_CUDA_GEMV_STAGE", c.stage);
        const std::string log = step_launches(traced.get(), c.shape);
        // The two staged builds' names up to the launch shape that follows them ("... grid X"), so that neither name
        // matches the other's line.
        const std::string staged = "mamba trace gemv_tiled_kernel early staged grid ";
        const std::string staged_one = "mamba trace gemv_tiled_kernel early staged one grid ";
        const bool one = std::string(c.stage) == "one";
        EXPECT_EQ(log.find(one ? staged_one : staged) != std::string::npos, c.staged) << log;
        EXPECT_EQ(log.find(one ? staged : staged_one), std::string::npos) << log;  // never the other build
        EXPECT_NE(log.find(c.staged ? (one ? staged_one : staged) : "mamba trace gemv_tiled_kernel early grid "), std::string::npos) << log;
        // The mamba-2.8b shape's dynamic shared memory: 3 staged vectors a lane by default, 2 with "one", of 4 rows x 256
        // threads x 16 bytes (blocks of 8 outputs, 4 column slices, on 108-148 SMs).
        if (c.staged && c.shape.hidden == 2560) {
            EXPECT_NE(log.find(one ? "early staged one grid 320x1x1 block 256 smem 32768:" : "early staged grid 320x1x1 block 256 smem 49152:"), std::string::npos) << log;
        }
    }
}

TEST_P(Mamba1StepTest, MisspeltOneKernelSettingIsRejected) {
    if (!on_cuda()) GTEST_SKIP() << "the one kernel's settings are read by the CUDA backend";
    const Case c{1, 64, 128, 8, 16, 4, DType::BF16, DType::BF16};
    Mixer m(c);
    m.upload_unbiased(ctx());
    mamba_mamba1_step_args a = m.args(false);
    // Read at the top of every call: also the calls that take the four kernels fail, on any CUDA device; the one
    // kernel itself runs on compute capability 9.0.
    std::vector<const char *> choices{"separate"};
    if (device_has_clusters()) choices.push_back("fused");
    for (const char * choice : choices) {
        SCOPED_TRACE(std::string("MAMBA_CUDA_MAMBA1_STEP=") + choice);
        const mt::ScopedEnv step("MAMBA_CUDA_MAMBA1_STEP", choice);
        {
            const mt::ScopedEnv pace("MAMBA_CUDA_MAMBA1_STEP_PACE", "5");
            EXPECT_EQ(mamba_mamba1_step(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
            EXPECT_STREQ(mamba_last_error(), "mamba_mamba1_step: MAMBA_CUDA_MAMBA1_STEP_PACE must be one of 0, 1, 2, 3, 4, 6, 8 (or unset), not '5'");
        }
        {
            const mt::ScopedEnv evict("MAMBA_CUDA_MAMBA1_STEP_EVICT", "last");
            EXPECT_EQ(mamba_mamba1_step(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
            EXPECT_STREQ(mamba_last_error(), "mamba_mamba1_step: MAMBA_CUDA_MAMBA1_STEP_EVICT must be one of first, normal (or unset), not 'last'");
        }
        {
            const mt::ScopedEnv timeline("MAMBA_CUDA_MAMBA1_STEP_TIMELINE", "yes");
            EXPECT_EQ(mamba_mamba1_step(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
            EXPECT_STREQ(mamba_last_error(), "mamba_mamba1_step: MAMBA_CUDA_MAMBA1_STEP_TIMELINE must be one of 0, 1 (or unset), not 'yes'");
        }
        MAMBA_ASSERT_OK(mamba_mamba1_step(ctx(), &a));  // the same call with the variables unset
    }
}

TEST_P(Mamba1StepTest, BadArgumentsNameTheirPart) {
    const Case c{1, 64, 128, 8, 16, 4, DType::BF16, DType::BF16};
    Mixer m(c);
    m.upload_unbiased(ctx());
    {
        Tensor short_xdbl({1, c.rank + 2 * c.dstate - 1}, c.act);
        short_xdbl.upload(ctx());
        mamba_mamba1_step_args a = m.args(false);
        a.xdbl = short_xdbl.dl();
        EXPECT_EQ(mamba_mamba1_step(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
        EXPECT_NE(std::string(mamba_last_error()).find("'xdbl'"), std::string::npos) << mamba_last_error();
    }
    {
        Tensor wide_out({c.hidden, c.inner + 8}, c.weight);
        wide_out.upload(ctx());
        mamba_mamba1_step_args a = m.args(false);
        a.out_proj_weight = wide_out.dl();
        EXPECT_EQ(mamba_mamba1_step(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
        EXPECT_EQ(std::string(mamba_last_error()).rfind("mamba_mamba1_step: out_proj (mamba_linear): ", 0), 0u) << mamba_last_error();
    }
    {
        mamba_mamba1_step_args a = m.args(false);
        a.y_inner = m.xc.dl();  // two scratch outputs in one buffer
        EXPECT_EQ(mamba_mamba1_step(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
        EXPECT_NE(std::string(mamba_last_error()).find("overlap"), std::string::npos) << mamba_last_error();
    }
    {
        mamba_mamba1_step_args a = m.args(false);
        a.A = nullptr;
        EXPECT_EQ(mamba_mamba1_step(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
        EXPECT_STREQ(mamba_last_error(), "mamba_mamba1_step: argument 'A' is null");
    }
}

TEST_P(Mamba1StepTest, ForcedKernelThatCannotRunSaysWhy) {
    if (!on_cuda()) GTEST_SKIP() << "MAMBA_CUDA_MAMBA1_STEP is read by the CUDA backend";
    const Case c{2, 64, 128, 8, 16, 4, DType::BF16, DType::BF16};
    Mixer m(c);
    m.upload_unbiased(ctx());
    mamba_mamba1_step_args a = m.args(false);
    {
        const mt::ScopedEnv env("MAMBA_CUDA_MAMBA1_STEP", "fused");
        EXPECT_EQ(mamba_mamba1_step(ctx(), &a), MAMBA_STATUS_UNSUPPORTED);
        const std::string why = device_has_clusters() ? "it takes batch 1, not 2" : "it needs compute capability 9.0";
        EXPECT_NE(std::string(mamba_last_error()).find("MAMBA_CUDA_MAMBA1_STEP=fused, but the one-kernel step cannot run: " + why), std::string::npos)
            << mamba_last_error();
    }
    {
        const mt::ScopedEnv env("MAMBA_CUDA_MAMBA1_STEP", "one");
        EXPECT_EQ(mamba_mamba1_step(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
        EXPECT_STREQ(mamba_last_error(), "mamba_mamba1_step: MAMBA_CUDA_MAMBA1_STEP must be one of auto, fused, separate (or unset), not 'one'");
    }
    {
        const mt::ScopedEnv env("MAMBA_CUDA_MAMBA1_XPROJ", "fused");
        EXPECT_EQ(mamba_mamba1_step(ctx(), &a), MAMBA_STATUS_UNSUPPORTED);
        EXPECT_STREQ(mamba_last_error(), "mamba_mamba1_step: MAMBA_CUDA_MAMBA1_XPROJ=fused, but x_proj cannot fold into the conv step: in_proj's GEMV runs the conv step");
    }
    {
        const mt::ScopedEnv env("MAMBA_CUDA_MAMBA1_XPROJ", "yes");
        EXPECT_EQ(mamba_mamba1_step(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
        EXPECT_STREQ(mamba_last_error(), "mamba_mamba1_step: MAMBA_CUDA_MAMBA1_XPROJ must be one of auto, fused, separate (or unset), not 'yes'");
    }
}

TEST_P(Mamba1StepTest, BatchedStepRunsXProjInsideTheConvStep) {
    // Which kernels the batch-8 step launches (a context made with MAMBA_CUDA_TRACE=1 prints each launch): the conv step
    // with x_proj's sums in it and no plain conv step by default, the plain one with MAMBA_CUDA_MAMBA1_XPROJ=separate. At
    // 17 rows, past the fold's 16, "fused" says why.
    if (!on_cuda()) GTEST_SKIP() << "the CUDA backend's kernel choice";
    const mt::ContextPtr traced = traced_context();
    ASSERT_NE(traced, nullptr);
    const Case c{8, 64, 128, 8, 16, 4, DType::BF16, DType::BF16};
    for (const char * xproj : {"", "separate"}) {
        SCOPED_TRACE(std::string("MAMBA_CUDA_MAMBA1_XPROJ=") + xproj);
        const mt::ScopedEnv env("MAMBA_CUDA_MAMBA1_XPROJ", xproj);
        const std::string log = step_launches(traced.get(), c);
        const bool folded = std::string(xproj).empty();
        EXPECT_EQ(log.find("mamba trace conv_xproj_step_kernel") != std::string::npos, folded) << log;
        EXPECT_EQ(log.find("mamba trace causal_conv1d_update_kernel") != std::string::npos, !folded) << log;
    }
    const Case rows17{17, 64, 128, 8, 16, 4, DType::BF16, DType::BF16};
    Mixer m(rows17);
    m.upload_unbiased(ctx());
    mamba_mamba1_step_args a = m.args(false);
    const mt::ScopedEnv env("MAMBA_CUDA_MAMBA1_XPROJ", "fused");
    EXPECT_EQ(mamba_mamba1_step(ctx(), &a), MAMBA_STATUS_UNSUPPORTED);
    EXPECT_STREQ(mamba_last_error(), "mamba_mamba1_step: MAMBA_CUDA_MAMBA1_XPROJ=fused, but x_proj cannot fold into the conv step: it takes 2 to 16 batch rows, not 17");
}

TEST_P(Mamba1StepTest, BatchedFoldRepeatsItsResultExactly) {
    // The conv step's clusters store their sums (no atomic adds), so the same step from the same states gives the same
    // bits; and so does the CPU backend.
    if (on_cuda() && !device_has_clusters()) GTEST_SKIP() << "the fold's clusters need compute capability 9.0";
    const Case c{8, 64, 200, 8, 16, 4, DType::BF16, DType::BF16};
    std::mt19937_64 rng(5);
    Mixer m(c);
    for (Tensor * t : {&m.x, &m.w_in, &m.conv_w, &m.conv_state, &m.w_x, &m.w_dt, &m.D, &m.ssm_state, &m.w_out}) t->fill_uniform(rng, -0.5, 0.5);
    m.dt_bias.fill_uniform(rng, -4, -1);
    m.A.fill_uniform(rng, -8, -0.5);
    m.upload_unbiased(ctx());
    const std::vector<double> conv0 = m.conv_state.values(), ssm0 = m.ssm_state.values();
    const mt::ScopedEnv env("MAMBA_CUDA_MAMBA1_XPROJ", on_cuda() ? "fused" : nullptr);
    std::vector<double> first;
    for (int run = 0; run < 2; ++run) {
        m.conv_state.values() = conv0;
        m.ssm_state.values() = ssm0;
        m.conv_state.upload(ctx());
        m.ssm_state.upload(ctx());
        mamba_mamba1_step_args a = m.args(false);
        MAMBA_ASSERT_OK(mamba_mamba1_step(ctx(), &a));
        m.y.download(ctx());
        if (run == 0) first = m.y.values();
        else EXPECT_EQ(m.y.values(), first);
    }
}

TEST_P(Mamba1StepTest, ForcedXProjFoldThatCannotRunSaysWhy) {
    if (!on_cuda()) GTEST_SKIP() << "MAMBA_CUDA_MAMBA1_XPROJ is read by the CUDA backend";
    const Case c{1, 64, 128, 8, 16, 4, DType::BF16, DType::BF16};
    Mixer m(c);
    m.upload_unbiased(ctx());
    const mt::ScopedEnv env("MAMBA_CUDA_MAMBA1_XPROJ", "fused");
    {
        // The fold lives in in_proj's conv epilogue.
        const mt::ScopedEnv conv("MAMBA_CUDA_LINEAR_CONV", "separate");
        mamba_mamba1_step_args a = m.args(false);
        EXPECT_EQ(mamba_mamba1_step(ctx(), &a), MAMBA_STATUS_UNSUPPORTED);
        EXPECT_NE(std::string(mamba_last_error()).find("x_proj cannot fold into in_proj: in_proj does not run the conv step in its GEMV"), std::string::npos)
            << mamba_last_error();
    }
    {
        Tensor w_x_f16({c.rank + 2 * c.dstate, c.inner}, DType::F16);
        w_x_f16.upload(ctx());
        mamba_mamba1_step_args a = m.args(false);
        a.x_proj_weight = w_x_f16.dl();
        EXPECT_EQ(mamba_mamba1_step(ctx(), &a), MAMBA_STATUS_UNSUPPORTED);
        EXPECT_NE(std::string(mamba_last_error()).find("x_proj_weight is float16 and in_proj_weight bfloat16; the fold takes one dtype"), std::string::npos)
            << mamba_last_error();
    }
    mamba_mamba1_step_args a = m.args(false);
    MAMBA_ASSERT_OK(mamba_mamba1_step(ctx(), &a));  // the fold runs where it can
}

MAMBA_INSTANTIATE_BACKENDS(Mamba1StepTest);

}  // namespace
