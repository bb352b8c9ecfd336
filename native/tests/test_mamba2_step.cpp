// mamba_mamba2_step per backend against a float64 reference of the four ops it stands for (rounded where
// those ops store their outputs), over several steps in a row: shapes whose norm CUDA folds into the state
// update and out_proj (forced with MAMBA_CUDA_MAMBA2_STEP=fused, so a silent fallback fails), from a few
// heads to the mamba2-2.7b shape, with and without an op just before (the kernels' early loads), the gate
// before or after the norm, several B/C groups, per-channel D, float16 and float32, batch 2; shapes that take
// the four ops (two norm groups, batched rows cuBLAS takes); and bad arguments. On CUDA every case also runs
// with "auto" and "separate", and at batch 1 with the state update's blocks of 64, 32 and 16 rows
// (MAMBA_CUDA_SSD_UPDATE_ROWS). Cases with the block's pre-norm (pre_norm_weight) also run with the norm folded
// into in_proj (MAMBA_CUDA_STEP_PRE_NORM=fused where the case allows it) and as its own kernel.
#include <cmath>

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
    int64_t batch, hidden, heads, headdim, groups, dstate, width;
    DType act, weight;
    bool biases = false;
    bool lead_in = false;
    int steps = 3;
    bool cuda_only = false;
    bool before_gate = false;
    int64_t norm_groups = 1;
    bool d_per_channel = false;
    float dt_max = INFINITY;
    PreNorm pre = PreNorm::None;

    int64_t inner() const { return heads * headdim; }
    int64_t conv_dim() const { return inner() + 2 * groups * dstate; }
    int64_t proj() const { return inner() + conv_dim() + heads; }
};

std::string describe(const Case & c) {
    return "batch " + std::to_string(c.batch) + " hidden " + std::to_string(c.hidden) + " heads " + std::to_string(c.heads) + " headdim " +
           std::to_string(c.headdim) + " groups " + std::to_string(c.groups) + " dstate " + std::to_string(c.dstate) + " width " + std::to_string(c.width) +
           " act " + mt::dtype_name(c.act) + " weight " + mt::dtype_name(c.weight) + (c.biases ? " biases" : "") + (c.lead_in ? " lead-in" : "") +
           (c.before_gate ? " norm-before-gate" : "") + " norm groups " + std::to_string(c.norm_groups) + (c.d_per_channel ? " D per channel" : "") + mt::describe(c.pre);
}

// The tensors of one mixer and its state.
struct Mixer {
    Tensor x, w_in, b_in, conv_state, conv_w, conv_b, dt_bias, A, D, ssm_state, norm_w, w_out, b_out, y, proj, xbc, y_inner, normed;
    mt::PreNormTensors pre;  // with Case::pre: x is then the norm's output, pre.x the step's input

    explicit Mixer(const Case & c)
        : x({c.batch, c.hidden}, c.act), w_in({c.proj(), c.hidden}, c.weight), b_in({c.proj()}, c.weight),
          conv_state({c.batch, c.conv_dim(), c.width - 1}, c.act), conv_w({c.conv_dim(), c.width}, c.weight), conv_b({c.conv_dim()}, c.weight),
          dt_bias({c.heads}, DType::F32), A({c.heads}, DType::F32),
          D(c.d_per_channel ? std::vector<int64_t>{c.heads, c.headdim} : std::vector<int64_t>{c.heads}, DType::F32),
          ssm_state({c.batch, c.heads, c.headdim, c.dstate}, DType::F32), norm_w({c.inner()}, c.weight), w_out({c.hidden, c.inner()}, c.weight),
          b_out({c.hidden}, c.weight), y({c.batch, c.hidden}, c.act), proj({c.batch, c.proj()}, c.act), xbc({c.batch, c.conv_dim()}, c.act),
          y_inner({c.batch, c.inner()}, c.act), normed({c.batch, c.inner()}, c.act), pre(c.pre, c.batch, c.hidden, c.act, c.weight) {}

    void upload_all(mamba_context * ctx) {
        for (Tensor * t : {&x, &w_in, &b_in, &conv_state, &conv_w, &conv_b, &dt_bias, &A, &D, &ssm_state, &norm_w, &w_out, &b_out, &y, &proj, &xbc, &y_inner,
                           &normed})
            t->upload(ctx);
    }

    mamba_mamba2_step_args args(const Case & c) {
        mamba_mamba2_step_args a{};
        a.x = x.dl();
        a.in_proj_weight = w_in.dl();
        a.in_proj_bias = c.biases ? b_in.dl() : nullptr;
        a.conv_state = conv_state.dl();
        a.conv_weight = conv_w.dl();
        a.conv_bias = c.biases ? conv_b.dl() : nullptr;
        a.dt_bias = dt_bias.dl();
        a.A = A.dl();
        a.D = D.dl();
        a.ssm_state = ssm_state.dl();
        a.norm_weight = norm_w.dl();
        a.out_proj_weight = w_out.dl();
        a.out_proj_bias = c.biases ? b_out.dl() : nullptr;
        a.y = y.dl();
        a.proj = proj.dl();
        a.xbc = xbc.dl();
        a.y_inner = y_inner.dl();
        a.normed = normed.dl();
        a.norm_group_size = c.norm_groups == 1 ? 0 : c.inner() / c.norm_groups;
        a.eps = 1e-5f;
        a.norm_before_gate = c.before_gate ? 1 : 0;
        a.dt_min = 0.0f;
        a.dt_max = c.dt_max;
        pre.set(a);
        return a;
    }
};

// One step in float64 for every batch row; conv_state and ssm_state (the test's values) are updated. Each
// intermediate is rounded to the dtype of the tensor the separate ops store it in.
std::vector<double> reference_step(const Case & c, Mixer & m) {
    const int64_t W = c.width, inner = c.inner(), cd = c.conv_dim(), P = c.headdim, N = c.dstate;
    std::vector<double> out;
    for (int64_t b = 0; b < c.batch; ++b) {
        std::vector<double> proj = matvec(m.w_in, &m.x.at(b * c.hidden), c.biases ? &m.b_in : nullptr);
        for (double & v : proj) v = stored(c.act, v);
        std::vector<double> xbc(static_cast<size_t>(cd));
        for (int64_t d = 0; d < cd; ++d) {
            double * st = &m.conv_state.at((b * cd + d) * (W - 1));
            const double in = proj[size_t(inner + d)];
            double acc = c.biases ? m.conv_b.at(d) : 0.0;
            for (int64_t k = 0; k < W; ++k) acc += m.conv_w.at(d * W + k) * (k < W - 1 ? st[k] : in);
            xbc[size_t(d)] = stored(c.act, silu(acc));
            for (int64_t k = 0; k + 1 < W - 1; ++k) st[k] = st[k + 1];
            st[W - 2] = in;
        }
        std::vector<double> y_inner(static_cast<size_t>(inner));
        for (int64_t h = 0; h < c.heads; ++h) {
            const int64_t g = h / (c.heads / c.groups);
            const double dt = std::min(softplus(proj[size_t(inner + cd + h)] + m.dt_bias.at(h)), double(c.dt_max));
            const double decay = std::exp(dt * m.A.at(h));
            for (int64_t p = 0; p < P; ++p) {
                const double xv = xbc[size_t(h * P + p)];
                double acc = 0.0;
                for (int64_t n = 0; n < N; ++n) {
                    double & s = m.ssm_state.at(((b * c.heads + h) * P + p) * N + n);
                    s = decay * s + dt * xv * xbc[size_t(inner + g * N + n)];
                    acc += xbc[size_t(inner + c.groups * N + g * N + n)] * s;
                }
                const double d = c.d_per_channel ? m.D.at(h * P + p) : m.D.at(h);
                y_inner[size_t(h * P + p)] = stored(c.act, acc + d * xv);
            }
        }
        std::vector<double> normed(static_cast<size_t>(inner));
        const int64_t gs = inner / c.norm_groups;
        for (int64_t g0 = 0; g0 < inner; g0 += gs) {
            double sum_sq = 0.0;
            for (int64_t i = g0; i < g0 + gs; ++i) {
                const double v = c.before_gate ? y_inner[size_t(i)] : y_inner[size_t(i)] * silu(proj[size_t(i)]);
                sum_sq += v * v;
            }
            const double inv = 1.0 / std::sqrt(sum_sq / double(gs) + 1e-5);
            for (int64_t i = g0; i < g0 + gs; ++i) {
                const double gate = silu(proj[size_t(i)]);
                const double v = c.before_gate ? y_inner[size_t(i)] * inv * m.norm_w.at(i) * gate : y_inner[size_t(i)] * gate * inv * m.norm_w.at(i);
                normed[size_t(i)] = stored(c.act, v);
            }
        }
        std::vector<double> y = matvec(m.w_out, normed.data(), c.biases ? &m.b_out : nullptr);
        for (double v : y) out.push_back(stored(c.act, v));
    }
    return out;
}

// Whether CUDA folds the norm (mamba.h): one norm group, out_proj's rows on the GEMV (one row, or outputs
// under 2048 at 2 to 4 rows), at most 512 partial sums (the test's tensors are aligned and dstate % 4 == 0).
bool foldable(const Case & c) {
    return c.norm_groups == 1 && c.batch <= 4 && (c.batch == 1 || c.hidden < 2048) && c.dstate % 4 == 0 && c.batch * c.heads * ((c.headdim + 63) / 64) <= 512;
}

class Mamba2StepTest : public mt::BackendTest {
protected:
    void run(const Case & c) {
        if (c.cuda_only && !on_cuda()) GTEST_SKIP() << "a CUDA-sized shape";
        SCOPED_TRACE(describe(c));
        // "fused" where the norm must fold (so that a fallback fails), the default otherwise.
        // The pre-norm folds where in_proj runs the conv step (16-byte weight rows) at batch 1.
        const char * pre_fold = c.pre != PreNorm::None && c.batch == 1 && c.hidden * int64_t(mt::dtype_size(c.weight)) % 16 == 0 ? "fused" : "";
        // rows: the state update's rows per block (MAMBA_CUDA_SSD_UPDATE_ROWS), each forced at batch 1 besides the default.
        struct Variant {
            const char *step, *pre, *rows = "";
        };
        const char * step_first = on_cuda() && foldable(c) ? "fused" : "";
        std::vector<Variant> variants{{step_first, pre_fold}};
        if (on_cuda()) variants.insert(variants.end(), {{"auto", ""}, {"separate", pre_fold}});
        if (on_cuda() && c.pre != PreNorm::None) variants.push_back({"", "separate"});
        if (on_cuda() && c.batch == 1) variants.insert(variants.end(), {{step_first, pre_fold, "64"}, {step_first, pre_fold, "32"}, {step_first, pre_fold, "16"}});
        for (const Variant & variant : variants) {
            SCOPED_TRACE(std::string("MAMBA_CUDA_MAMBA2_STEP=") + variant.step + " MAMBA_CUDA_STEP_PRE_NORM=" + variant.pre +
                         " MAMBA_CUDA_SSD_UPDATE_ROWS=" + variant.rows);
            const mt::ScopedEnv env("MAMBA_CUDA_MAMBA2_STEP", variant.step), pre_env("MAMBA_CUDA_STEP_PRE_NORM", variant.pre),
                rows_env("MAMBA_CUDA_SSD_UPDATE_ROWS", variant.rows);
            std::mt19937_64 rng(23 + uint64_t(c.hidden * 31 + c.heads * 7 + c.dstate));
            Mixer m(c);
            const double in_scale = 1.0 / std::sqrt(double(c.hidden)), inner_scale = 1.0 / std::sqrt(double(c.inner()));
            m.w_in.fill_uniform(rng, -in_scale, in_scale);
            m.b_in.fill_uniform(rng, -0.5, 0.5);
            m.conv_w.fill_uniform(rng, -0.5, 0.5);
            m.conv_b.fill_uniform(rng, -0.5, 0.5);
            m.conv_state.fill_uniform(rng, -1, 1);
            m.dt_bias.fill_uniform(rng, -4, -1);
            m.A.fill_uniform(rng, -8, -0.5);
            m.D.fill_uniform(rng, -1, 1);
            m.ssm_state.fill_uniform(rng, -1, 1);
            m.norm_w.fill_uniform(rng, 0.5, 1.5);
            m.w_out.fill_uniform(rng, -inner_scale, inner_scale);
            m.b_out.fill_uniform(rng, -0.5, 0.5);
            for (Tensor * t : {&m.w_in, &m.b_in, &m.conv_w, &m.conv_b, &m.conv_state, &m.dt_bias, &m.A, &m.D, &m.ssm_state, &m.norm_w, &m.w_out, &m.b_out}) {
                t->round_to_dtype();
                t->upload(ctx());
            }
            for (Tensor * t : {&m.proj, &m.xbc, &m.y_inner, &m.normed}) t->upload_poisoned(ctx());
            m.pre.fill_and_upload(ctx(), rng);
            mt::LeadIn lead(ctx());
            // 16-bit intermediates can round the other way when the sums run in another order (or the folded
            // norm scales out_proj's sums rather than its inputs); that stays within a few units of rounding.
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
                mamba_mamba2_step_args a = m.args(c);
                if (c.lead_in) lead.queue();
                MAMBA_ASSERT_OK(mamba_mamba2_step(ctx(), &a));
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

TEST_P(Mamba2StepTest, FewHeads) { run({1, 64, 4, 16, 1, 16, 4, DType::BF16, DType::BF16}); }
TEST_P(Mamba2StepTest, BiasesGroupsAndHeaddim64) { run({1, 256, 8, 64, 2, 128, 4, DType::BF16, DType::BF16, true}); }
TEST_P(Mamba2StepTest, Float16NormBeforeGateWidth3) {
    Case c{1, 96, 6, 32, 3, 8, 3, DType::F16, DType::F16, true};
    c.before_gate = true;
    c.d_per_channel = true;
    run(c);
}
TEST_P(Mamba2StepTest, HeaddimOver64AndDtLimit) {
    Case c{1, 128, 2, 96, 1, 16, 4, DType::BF16, DType::BF16};
    c.dt_max = 0.05f;
    run(c);
}
TEST_P(Mamba2StepTest, Float32) { run({1, 64, 4, 16, 1, 16, 4, DType::F32, DType::F32, true}); }
TEST_P(Mamba2StepTest, MixedDtypes) { run({1, 64, 4, 16, 1, 16, 4, DType::F32, DType::BF16}); }
TEST_P(Mamba2StepTest, Batch2) { run({2, 128, 4, 32, 1, 16, 4, DType::BF16, DType::BF16, true, true}); }
// The most rows the folded norm takes (forced: unforced it folds at batch 1 only), the GEMV's 4-row build.
TEST_P(Mamba2StepTest, Batch4) { run({4, 128, 4, 32, 1, 16, 4, DType::BF16, DType::BF16, true, true}); }
TEST_P(Mamba2StepTest, Mamba2130mShape) { run({1, 768, 24, 64, 1, 128, 4, DType::BF16, DType::BF16, false, true, 2}); }
TEST_P(Mamba2StepTest, Mamba27bShapeAfterAnotherOp) { run({1, 2560, 80, 64, 1, 128, 4, DType::BF16, DType::BF16, false, true, 2, true}); }
TEST_P(Mamba2StepTest, Batch2OnCublasTakesTheFourOps) { run({2, 2048, 32, 64, 1, 16, 4, DType::BF16, DType::BF16, false, false, 2, true}); }
TEST_P(Mamba2StepTest, StateUpdateReleasePointsChangeNoResult) {
    // Where the state update lets out_proj start (MAMBA_CUDA_UPDATE_RELEASE: after its wait, the default, or before it)
    // changes no result: the mamba2-2.7b shape after another op (the folded norm, out_proj's early loads) and batch 2.
    // The CPU backend reads no such variable.
    for (const char * release : {"start", "before_wait"}) {
        SCOPED_TRACE(std::string("MAMBA_CUDA_UPDATE_RELEASE=") + release);
        const mt::ScopedEnv env("MAMBA_CUDA_UPDATE_RELEASE", release);
        run({1, 2560, 80, 64, 1, 128, 4, DType::BF16, DType::BF16, false, true, 2, true});
        run({2, 128, 4, 32, 1, 16, 4, DType::BF16, DType::BF16, true, true});
    }
}

TEST_P(Mamba2StepTest, MisspeltReleaseSettingFailsBeforeAnyWork) {
    // A misspelt MAMBA_CUDA_UPDATE_RELEASE fails the call before in_proj runs, with the folded norm and without: the
    // conv and SSM states stay as they were.
    if (!on_cuda()) GTEST_SKIP() << "MAMBA_CUDA_UPDATE_RELEASE is read by the CUDA backend";
    const Case c{1, 64, 4, 16, 1, 16, 4, DType::BF16, DType::BF16};
    for (const char * step : {"auto", "separate"}) {
        SCOPED_TRACE(std::string("MAMBA_CUDA_MAMBA2_STEP=") + step);
        const mt::ScopedEnv kernels("MAMBA_CUDA_MAMBA2_STEP", step), release("MAMBA_CUDA_UPDATE_RELEASE", "early");
        Mixer m(c);
        std::mt19937_64 rng(23);
        for (Tensor * t : {&m.x, &m.w_in, &m.b_in, &m.conv_state, &m.conv_w, &m.conv_b, &m.ssm_state}) t->fill_uniform(rng, -1, 1);
        m.upload_all(ctx());
        // As stored (rounded to the tensors' dtypes), so that an unchanged state compares equal.
        m.conv_state.download(ctx());
        m.ssm_state.download(ctx());
        const std::vector<double> conv_before = m.conv_state.values(), ssm_before = m.ssm_state.values();
        mamba_mamba2_step_args a = m.args(c);
        EXPECT_EQ(mamba_mamba2_step(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
        EXPECT_STREQ(mamba_last_error(), "mamba_mamba2_step: MAMBA_CUDA_UPDATE_RELEASE must be one of start, before_wait (or unset), not 'early'");
        m.conv_state.download(ctx());
        m.ssm_state.download(ctx());
        EXPECT_EQ(m.conv_state.values(), conv_before);
        EXPECT_EQ(m.ssm_state.values(), ssm_before);
    }
}

TEST_P(Mamba2StepTest, TwoNormGroupsTakeTheFourOps) {
    Case c{1, 64, 4, 16, 1, 16, 4, DType::BF16, DType::BF16};
    c.norm_groups = 2;
    run(c);
}

Case with_pre_norm(Case c, PreNorm pre) {
    c.pre = pre;
    return c;
}

TEST_P(Mamba2StepTest, PreNormFewHeads) { run(with_pre_norm({1, 64, 4, 16, 1, 16, 4, DType::BF16, DType::BF16, true}, PreNorm::WithResidual)); }
TEST_P(Mamba2StepTest, PreNormFirstBlockHasNoResidual) { run(with_pre_norm({1, 64, 4, 16, 1, 16, 4, DType::F16, DType::F16}, PreNorm::NoResidual)); }
TEST_P(Mamba2StepTest, PreNormFloat32) { run(with_pre_norm({1, 64, 4, 16, 1, 16, 4, DType::F32, DType::F32, true}, PreNorm::WithResidual)); }
TEST_P(Mamba2StepTest, PreNormTwoXTiles) { run(with_pre_norm({1, 8200, 4, 16, 1, 16, 4, DType::BF16, DType::BF16}, PreNorm::WithResidual)); }
TEST_P(Mamba2StepTest, PreNormBatch2) { run(with_pre_norm({2, 128, 4, 32, 1, 16, 4, DType::BF16, DType::BF16, true, true}, PreNorm::WithResidual)); }
TEST_P(Mamba2StepTest, PreNormMamba27bShapeAfterAnotherOp) {
    run(with_pre_norm({1, 2560, 80, 64, 1, 128, 4, DType::BF16, DType::BF16, false, true, 2, true}, PreNorm::WithResidual));
}

TEST_P(Mamba2StepTest, PreNormBadArguments) {
    const Case c = with_pre_norm({1, 64, 4, 16, 1, 16, 4, DType::BF16, DType::BF16}, PreNorm::WithResidual);
    Mixer m(c);
    m.upload_all(ctx());
    m.pre.upload_all(ctx());
    mt::expect_pre_norm_errors(ctx(), "mamba_mamba2_step", m.args(c), m.y, [](mamba_context * x, const mamba_mamba2_step_args * a) { return mamba_mamba2_step(x, a); });
}

TEST_P(Mamba2StepTest, ForcedPreNormFoldThatCannotRunSaysWhy) {
    if (!on_cuda()) GTEST_SKIP() << "MAMBA_CUDA_STEP_PRE_NORM is read by the CUDA backend";
    const Case c = with_pre_norm({2, 128, 4, 32, 1, 16, 4, DType::BF16, DType::BF16}, PreNorm::WithResidual);
    Mixer m(c);
    m.upload_all(ctx());
    m.pre.upload_all(ctx());
    const mt::ScopedEnv env("MAMBA_CUDA_STEP_PRE_NORM", "fused");
    mamba_mamba2_step_args a = m.args(c);
    EXPECT_EQ(mamba_mamba2_step(ctx(), &a), MAMBA_STATUS_UNSUPPORTED);
    EXPECT_STREQ(mamba_last_error(), "mamba_mamba2_step: MAMBA_CUDA_STEP_PRE_NORM=fused, but the pre-norm cannot fold into in_proj: it takes batch 1, not 2");
}

TEST_P(Mamba2StepTest, ForcedFoldThatCannotRunSaysWhy) {
    if (!on_cuda()) GTEST_SKIP() << "MAMBA_CUDA_MAMBA2_STEP is read by the CUDA backend";
    Case c{1, 64, 4, 16, 1, 16, 4, DType::BF16, DType::BF16};
    c.norm_groups = 2;
    Mixer m(c);
    m.upload_all(ctx());
    mamba_mamba2_step_args a = m.args(c);
    {
        const mt::ScopedEnv env("MAMBA_CUDA_MAMBA2_STEP", "fused");
        EXPECT_EQ(mamba_mamba2_step(ctx(), &a), MAMBA_STATUS_UNSUPPORTED);
        EXPECT_STREQ(mamba_last_error(),
                     "mamba_mamba2_step: MAMBA_CUDA_MAMBA2_STEP=fused, but the norm cannot be folded into the step's kernels: the norm has 2 groups; folding "
                     "takes one");
    }
    {
        const mt::ScopedEnv env("MAMBA_CUDA_MAMBA2_STEP", "one");
        EXPECT_EQ(mamba_mamba2_step(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
        EXPECT_STREQ(mamba_last_error(), "mamba_mamba2_step: MAMBA_CUDA_MAMBA2_STEP must be one of auto, fused, separate (or unset), not 'one'");
    }
}

TEST_P(Mamba2StepTest, BadArgumentsNameTheirPart) {
    const Case c{1, 64, 4, 16, 1, 16, 4, DType::BF16, DType::BF16};
    Mixer m(c);
    m.upload_all(ctx());
    {
        Tensor narrow_conv({c.conv_dim() - 1, c.width}, c.weight);
        narrow_conv.upload(ctx());
        mamba_mamba2_step_args a = m.args(c);
        a.conv_weight = narrow_conv.dl();
        EXPECT_EQ(mamba_mamba2_step(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
        EXPECT_NE(std::string(mamba_last_error()).find("argument 'conv_weight' has shape"), std::string::npos) << mamba_last_error();
    }
    {
        Tensor three_heads({3}, DType::F32);
        three_heads.upload(ctx());
        mamba_mamba2_step_args a = m.args(c);
        a.A = three_heads.dl();
        EXPECT_EQ(mamba_mamba2_step(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
        EXPECT_NE(std::string(mamba_last_error()).find("argument 'A' has shape"), std::string::npos) << mamba_last_error();
    }
    {
        Tensor wide_out({c.hidden, c.inner() + 8}, c.weight);
        wide_out.upload(ctx());
        mamba_mamba2_step_args a = m.args(c);
        a.out_proj_weight = wide_out.dl();
        EXPECT_EQ(mamba_mamba2_step(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
        EXPECT_EQ(std::string(mamba_last_error()).rfind("mamba_mamba2_step: out_proj (mamba_linear): ", 0), 0u) << mamba_last_error();
    }
    {
        Tensor short_norm({c.inner() - 1}, c.weight);
        short_norm.upload(ctx());
        mamba_mamba2_step_args a = m.args(c);
        a.norm_weight = short_norm.dl();
        EXPECT_EQ(mamba_mamba2_step(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
        EXPECT_NE(std::string(mamba_last_error()).find("'A'"), std::string::npos) << mamba_last_error();
    }
    {
        Tensor no_channels({0}, c.weight);
        no_channels.upload(ctx());
        mamba_mamba2_step_args a = m.args(c);
        a.norm_weight = no_channels.dl();
        EXPECT_EQ(mamba_mamba2_step(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
        EXPECT_STREQ(mamba_last_error(), "mamba_mamba2_step: argument 'norm_weight' has shape (0,): inner (its length) must be at least 1");
    }
    {
        mamba_mamba2_step_args a = m.args(c);
        a.normed = m.y_inner.dl();  // two scratch outputs in one buffer
        EXPECT_EQ(mamba_mamba2_step(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
        EXPECT_NE(std::string(mamba_last_error()).find("overlap"), std::string::npos) << mamba_last_error();
    }
    {
        mamba_mamba2_step_args a = m.args(c);
        a.norm_weight = nullptr;
        EXPECT_EQ(mamba_mamba2_step(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
        EXPECT_STREQ(mamba_last_error(), "mamba_mamba2_step: argument 'norm_weight' is null");
    }
}

MAMBA_INSTANTIATE_BACKENDS(Mamba2StepTest);

}  // namespace
