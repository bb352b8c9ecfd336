// mamba_norm_linear (a norm and the linear layer reading its output, fused into the decode GEMV on CUDA)
// against a float64 reference of norm-then-linear, and against the two separate calls on the same
// backend: both norm kinds, with and without residual, gate, groups, bias; every activation and weight
// dtype; 1, 2 and 5 rows; outputs poisoned; bad arguments named.
#include "backend_test.h"

namespace {

using mt::DType;
using mt::Tensor;

double silu(double v) { return v / (1.0 + std::exp(-v)); }

enum class Kind { Rms, Gated };

struct Case {
    Kind kind;
    int64_t rows, hidden, out;
    DType act, weight;          // act: x, residual, z, the normed tensor and y
    bool residual = false;      // Rms: residual added, residual_out (float32) written
    bool gate = false;          // Gated: z
    bool norm_before_gate = false;
    int64_t group_size = 0;     // Gated: 0 = one group
    bool bias = false;
};

std::string describe(const Case & c) {
    return std::string(c.kind == Kind::Rms ? "rms" : "gated") + " rows " + std::to_string(c.rows) + " hidden " + std::to_string(c.hidden) + " out " +
           std::to_string(c.out) + " act " + mt::dtype_name(c.act) + " w " + mt::dtype_name(c.weight) + (c.residual ? " residual" : "") +
           (c.gate ? " z" : "") + (c.norm_before_gate ? " norm_before_gate" : "") + " group " + std::to_string(c.group_size) + (c.bias ? " bias" : "");
}

struct Inputs {
    Tensor x, other, norm_w, w, b;  // other: residual or z
};

// Float64 norm of every row: the normed values and (Rms) the sum x + residual.
void reference_norm(const Case & c, const Inputs & in, std::vector<double> & normed, std::vector<double> & sum) {
    const int64_t H = c.hidden, group = c.kind == Kind::Gated && c.group_size > 0 ? c.group_size : H;
    normed.assign(size_t(c.rows * H), 0.0);
    sum.assign(size_t(c.rows * H), 0.0);
    const bool has_other = c.kind == Kind::Rms ? c.residual : c.gate;
    for (int64_t r = 0; r < c.rows; ++r)
        for (int64_t g0 = 0; g0 < H; g0 += group) {
            double ss = 0.0;
            for (int64_t i = g0; i < g0 + group; ++i) {
                const size_t at = size_t(r * H + i);
                double v = in.x.at(int64_t(at));
                if (c.kind == Kind::Rms && has_other) v += in.other.at(int64_t(at));
                if (c.kind == Kind::Gated && has_other && !c.norm_before_gate) v *= silu(in.other.at(int64_t(at)));
                sum[at] = v;
                ss += v * v;
            }
            const double inv = 1.0 / std::sqrt(ss / double(group) + 1e-5);
            for (int64_t i = g0; i < g0 + group; ++i) {
                const size_t at = size_t(r * H + i);
                double v = sum[at] * inv * in.norm_w.at(i);
                if (c.kind == Kind::Gated && has_other && c.norm_before_gate) v *= silu(in.other.at(int64_t(at)));
                normed[at] = v;
            }
        }
}

// y = normed W^T + bias in float64, and sum |normed w| (+ |bias|) per output: the scale of the rounding
// errors (float32 accumulation, the normed tensor's own rounding).
void reference_linear(const Case & c, const Inputs & in, const std::vector<double> & normed, std::vector<double> & y, std::vector<double> & magnitude) {
    y.assign(size_t(c.rows * c.out), 0.0);
    magnitude.assign(size_t(c.rows * c.out), 0.0);
    for (int64_t r = 0; r < c.rows; ++r)
        for (int64_t o = 0; o < c.out; ++o) {
            double s = c.bias ? in.b.at(o) : 0.0, m = c.bias ? std::fabs(in.b.at(o)) : 0.0;
            for (int64_t k = 0; k < c.hidden; ++k) {
                const double t = normed[size_t(r * c.hidden + k)] * in.w.at(o * c.hidden + k);
                s += t;
                m += std::fabs(t);
            }
            y[size_t(r * c.out + o)] = s;
            magnitude[size_t(r * c.out + o)] = m;
        }
}

// max over i of |got - want| / (scale_abs[i] * abs_factor + rel * |want| + floor); NaN counts as the worst.
double worst_error(const std::vector<double> & got, const std::vector<double> & want, const std::vector<double> & scale, double abs_factor, double rel,
                   double floor, int64_t & at) {
    double worst = 0.0;
    at = -1;
    for (size_t i = 0; i < want.size(); ++i) {
        const double tol = scale[i] * abs_factor + rel * std::fabs(want[i]) + floor;
        const double err = std::fabs(got[i] - want[i]) / tol;
        if (!(err <= worst)) {
            worst = std::isnan(err) ? INFINITY : err;
            at = int64_t(i);
        }
    }
    return worst;
}

// Forces the CUDA path (the CPU ignores it): fused where it applies, or the two ops.
const char * const kModes[] = {"fused", "separate"};

}  // namespace

class NormLinearTest : public mt::BackendTest {
protected:
    // Outputs of one call: the normed tensor, y and (Rms with residual) residual_out.
    struct Outputs {
        Tensor normed, y, residual_out;
    };

    Outputs make_outputs(const Case & c) {
        Outputs o{Tensor({c.rows, c.hidden}, c.act), Tensor({c.rows, c.out}, c.act), Tensor({c.rows, c.hidden}, DType::F32)};
        o.normed.upload_poisoned(ctx());
        o.y.upload_poisoned(ctx());
        o.residual_out.upload_poisoned(ctx());
        return o;
    }

    // The two argument structs of the norm, pointing at `in` and `out`.
    void norm_args(const Case & c, Inputs & in, Outputs & out, mamba_rms_norm_args & rms, mamba_gated_rms_norm_args & gated) {
        rms = mamba_rms_norm_args{};
        gated = mamba_gated_rms_norm_args{};
        rms.x = gated.x = in.x.dl();
        rms.weight = gated.weight = in.norm_w.dl();
        rms.y = gated.y = out.normed.dl();
        rms.eps = gated.eps = 1e-5f;
        if (c.residual) {
            rms.residual = in.other.dl();
            rms.residual_out = out.residual_out.dl();
        }
        if (c.gate) gated.z = in.other.dl();
        gated.group_size = c.group_size;
        gated.norm_before_gate = c.norm_before_gate;
    }

    void run(const Case & c) {
        SCOPED_TRACE(describe(c));
        std::mt19937_64 rng(7 + uint64_t(c.rows * 1000003 + c.hidden * 1009 + c.out * 13 + int(c.act) * 3 + int(c.weight)));
        Inputs in{Tensor({c.rows, c.hidden}, c.act), Tensor({c.rows, c.hidden}, c.act), Tensor({c.hidden}, c.act), Tensor({c.out, c.hidden}, c.weight),
                  Tensor({c.out}, c.weight)};
        in.x.fill_uniform(rng, -2, 2);
        in.other.fill_uniform(rng, -3, 3);
        in.norm_w.fill_uniform(rng, 0.5, 1.5);
        in.w.fill_uniform(rng, -1, 1);
        in.b.fill_uniform(rng, -1, 1);
        for (Tensor * t : {&in.x, &in.other, &in.norm_w, &in.w, &in.b}) t->upload(ctx());

        std::vector<double> normed_ref, sum_ref, y_ref, magnitude;
        reference_norm(c, in, normed_ref, sum_ref);
        reference_linear(c, in, normed_ref, y_ref, magnitude);
        const double act_eps = mt::dtype_epsilon(c.act);

        for (const char * mode : kernel_variants(kModes)) {
            SCOPED_TRACE(mode);
            mt::ScopedEnv env("MAMBA_CUDA_NORM_LINEAR", mode);
            // Fused call.
            Outputs fused = make_outputs(c);
            mamba_rms_norm_args rms;
            mamba_gated_rms_norm_args gated;
            norm_args(c, in, fused, rms, gated);
            mamba_norm_linear_args a{};
            if (c.kind == Kind::Rms) a.rms_norm = &rms;
            else a.gated_rms_norm = &gated;
            a.weight = in.w.dl();
            a.bias = c.bias ? in.b.dl() : nullptr;
            a.y = fused.y.dl();
            MAMBA_ASSERT_OK(mamba_norm_linear(ctx(), &a));
            fused.normed.download(ctx());
            fused.y.download(ctx());
            int64_t at = -1;
            // The normed tensor: the norm's float32 arithmetic and one rounding to its dtype.
            const std::vector<double> ones(normed_ref.size(), 1.0);
            double err = worst_error(fused.normed.values(), normed_ref, ones, 2e-6, 4 * act_eps + 2e-6, 0.0, at);
            EXPECT_LE(err, 1.0) << "normed at " << at;
            // y: float32 accumulation, the normed tensor's rounding (up to act_eps of each term) and y's own.
            err = worst_error(fused.y.values(), y_ref, magnitude, 3e-5 + 1.01 * act_eps, 1.01 * act_eps, 1e-6, at);
            EXPECT_LE(err, 1.0) << "y at " << at << ": got " << (at >= 0 ? fused.y.values()[size_t(at)] : 0.0) << ", expected "
                                << (at >= 0 ? y_ref[size_t(at)] : 0.0);
            if (c.residual) {
                fused.residual_out.download(ctx());
                EXPECT_CLOSE(fused.residual_out.values(), sum_ref, 1e-6, 1e-6);
            }

            // The same norm and linear as two calls on this backend.
            Outputs separate = make_outputs(c);
            norm_args(c, in, separate, rms, gated);
            if (c.kind == Kind::Rms) MAMBA_ASSERT_OK(mamba_rms_norm(ctx(), &rms));
            else MAMBA_ASSERT_OK(mamba_gated_rms_norm(ctx(), &gated));
            mamba_linear_args l{};
            l.x = separate.normed.dl();
            l.weight = in.w.dl();
            l.bias = a.bias;
            l.y = separate.y.dl();
            MAMBA_ASSERT_OK(mamba_linear(ctx(), &l));
            separate.normed.download(ctx());
            separate.y.download(ctx());
            if (!on_cuda()) {
                // The CPU runs the very same two ops: the same bits.
                EXPECT_EQ(fused.normed.values(), separate.normed.values());
                EXPECT_EQ(fused.y.values(), separate.y.values());
                continue;
            }
            // CUDA: the fused kernel sums the squares in another order, which may move a normed element by
            // one rounding step of its dtype (two unit roundoffs), and y by that times its weight.
            err = worst_error(fused.normed.values(), separate.normed.values(), ones, 1e-7, 2.02 * act_eps + 2e-6, 0.0, at);
            EXPECT_LE(err, 1.0) << "normed vs separate at " << at;
            err = worst_error(fused.y.values(), separate.y.values(), magnitude, 2e-5 + 2.02 * act_eps, 2.02 * act_eps, 1e-6, at);
            EXPECT_LE(err, 1.0) << "y vs separate at " << at;
        }
    }
};

TEST_P(NormLinearTest, RmsNormMatchesReferenceAndSeparateOps) {
    const DType all[] = {DType::F32, DType::BF16, DType::F16};
    int variant = 0;
    for (DType act : all)
        for (DType w : all)
            for (int64_t rows : {1, 2, 5})
                for (bool residual : {false, true}) {
                    ++variant;
                    Case c{Kind::Rms, rows, 200, 67, act, w};
                    c.residual = residual;
                    c.bias = variant % 2 == 0;
                    run(c);
                }
}

TEST_P(NormLinearTest, GatedRmsNormMatchesReferenceAndSeparateOps) {
    const DType all[] = {DType::F32, DType::BF16, DType::F16};
    int variant = 0;
    for (DType act : all)
        for (DType w : all)
            for (int64_t rows : {1, 2, 5})
                for (bool gate : {false, true})
                    for (bool before : {false, true}) {
                        ++variant;
                        Case c{Kind::Gated, rows, 160, 45, act, w};
                        c.gate = gate;
                        c.norm_before_gate = before;
                        c.group_size = variant % 3 == 0 ? 0 : variant % 3 == 1 ? 40 : 20;  // 1, 4 or 8 groups
                        c.bias = variant % 2 == 0;
                        run(c);
                    }
}

TEST_P(NormLinearTest, OddSizesAndGroupsBeyondTheFusedLimits) {
    // Hidden sizes that are not a whole number of vectors, one element, more groups than the fused
    // kernel takes (8), and rows too long for one x tile (5 rows: 1024 columns): all must still be right.
    run({Kind::Rms, 1, 1, 5, DType::F32, DType::F32, true});
    run({Kind::Rms, 2, 37, 33, DType::BF16, DType::BF16, true, false, false, 0, true});
    run({Kind::Gated, 5, 99, 17, DType::F16, DType::BF16, false, true, false, 33, true});
    run({Kind::Gated, 1, 64, 20, DType::BF16, DType::BF16, false, true, false, 4});
    run({Kind::Rms, 5, 1500, 40, DType::BF16, DType::BF16, true});
    run({Kind::Gated, 5, 1500, 40, DType::BF16, DType::BF16, false, true, false, 300, true});
}

TEST_P(NormLinearTest, DecodeShapesOfMamba2And130m) {
    // mamba2-2.7b out_proj (gated norm over d_inner 5120, one group) and mamba-130m in_proj (768 -> 3072).
    run({Kind::Gated, 1, 5120, 256, DType::BF16, DType::BF16, false, true, false, 0});
    run({Kind::Gated, 2, 5120, 130, DType::BF16, DType::BF16, false, true, false, 640});
    run({Kind::Rms, 1, 768, 3072, DType::BF16, DType::BF16, true});
    run({Kind::Rms, 1, 2560, 300, DType::F32, DType::BF16, true});
}

TEST_P(NormLinearTest, InvalidArgumentsNameTheField) {
    Tensor x({2, 12}, DType::F32), nw({12}, DType::F32), normed({2, 12}, DType::F32), w({5, 12}, DType::F32), y({2, 5}, DType::F32);
    Tensor w_bad({5, 11}, DType::F32), y_bad({2, 6}, DType::F32), bias_bad({4}, DType::F32);
    for (Tensor * t : {&x, &nw, &normed, &w, &y, &w_bad, &y_bad, &bias_bad}) t->upload(ctx());
    mamba_rms_norm_args rms{};
    rms.x = x.dl();
    rms.weight = nw.dl();
    rms.y = normed.dl();
    rms.eps = 1e-5f;
    mamba_gated_rms_norm_args gated{x.dl(), nullptr, nw.dl(), normed.dl(), 0, 1e-5f, 0};
    mamba_norm_linear_args ok{};
    ok.rms_norm = &rms;
    ok.weight = w.dl();
    ok.y = y.dl();
    MAMBA_ASSERT_OK(mamba_norm_linear(ctx(), &ok));
    auto expect_error = [&](const mamba_norm_linear_args & a, const std::string & message) {
        EXPECT_EQ(mamba_norm_linear(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT) << message;
        EXPECT_NE(std::string(mamba_last_error()).find(message), std::string::npos) << mamba_last_error();
    };
    EXPECT_EQ(mamba_norm_linear(ctx(), nullptr), MAMBA_STATUS_INVALID_ARGUMENT);
    auto a = ok;
    a.rms_norm = nullptr;
    expect_error(a, "exactly one of 'rms_norm' and 'gated_rms_norm' must be set; neither is");
    a = ok;
    a.gated_rms_norm = &gated;
    expect_error(a, "exactly one of 'rms_norm' and 'gated_rms_norm' must be set; both are");
    a = ok;
    a.weight = nullptr;
    expect_error(a, "argument 'weight' is null");
    a = ok;
    a.weight = w_bad.dl();
    expect_error(a, "argument 'weight' has shape (5, 11)");
    a = ok;
    a.y = y_bad.dl();
    expect_error(a, "argument 'y' has shape (2, 6)");
    a = ok;
    a.bias = bias_bad.dl();
    expect_error(a, "argument 'bias' has shape (4,)");
    a = ok;
    a.y = normed.dl();  // wrong shape for y anyway; a (2, 12) weight makes it the right one
    Tensor w_square({12, 12}, DType::F32);
    w_square.upload(ctx());
    a.weight = w_square.dl();
    expect_error(a, "overlap");
    mamba_rms_norm_args rms_bad = rms;
    rms_bad.x = nullptr;
    a = ok;
    a.rms_norm = &rms_bad;
    expect_error(a, "rms_norm: argument 'x' is null");
    mamba_gated_rms_norm_args gated_bad = gated;
    gated_bad.group_size = 5;
    a = ok;
    a.rms_norm = nullptr;
    a.gated_rms_norm = &gated_bad;
    expect_error(a, "gated_rms_norm: group_size 5 does not divide dim 12");
    a.gated_rms_norm = &gated;
    MAMBA_ASSERT_OK(mamba_norm_linear(ctx(), &a));
}

TEST_P(NormLinearTest, ChainOfFusedCallsIsTheSameWithAndWithoutPdl) {
    // Each call reads what the previous one wrote (x, residual, z): a fused kernel that read its inputs
    // before waiting for its producer would see stale values under PDL and drift from the PDL-off run.
    // The kernels are deterministic, so the comparison is exact. CPU: no PDL, nothing to compare.
    if (!on_cuda()) GTEST_SKIP() << "PDL is a CUDA launch feature";
    constexpr int64_t kRows = 2, kHidden = 512, kLayers = 4, kSteps = 6;
    struct Chain {
        mamba_context * ctx;
        Tensor h_a{{kRows, kHidden}, DType::F32}, h_b{{kRows, kHidden}, DType::F32}, r_a{{kRows, kHidden}, DType::F32}, r_b{{kRows, kHidden}, DType::F32};
        Tensor normed{{kRows, kHidden}, DType::F32}, gated{{kRows, kHidden}, DType::F32}, norm_w{{kHidden}, DType::F32};
        std::vector<Tensor> w_in, w_out;
        bool flip = false;
        explicit Chain(mamba_context * c, uint64_t seed) : ctx(c) {
            std::mt19937_64 rng(seed);
            for (Tensor * t : {&h_a, &r_a}) t->fill_uniform(rng, -1, 1);
            norm_w.fill_uniform(rng, 0.5, 1.5);
            for (int64_t l = 0; l < kLayers; ++l) {
                w_in.emplace_back(std::vector<int64_t>{kHidden, kHidden}, DType::BF16);
                w_out.emplace_back(std::vector<int64_t>{kHidden, kHidden}, DType::BF16);
                w_in.back().fill_uniform(rng, -0.08, 0.08);
                w_out.back().fill_uniform(rng, -0.08, 0.08);
            }
            for (Tensor * t : {&h_a, &r_a, &norm_w}) t->upload(ctx);
            for (Tensor * t : {&h_b, &r_b, &normed, &gated}) t->upload_poisoned(ctx);
            for (int64_t l = 0; l < kLayers; ++l) {
                w_in[size_t(l)].upload(ctx);
                w_out[size_t(l)].upload(ctx);
            }
        }
        // Per layer: h_b = (add + RMSNorm of h_a) W_in^T, then h_a = (gated norm of h_b, gate = the normed) W_out^T.
        mamba_status step() {
            for (int64_t l = 0; l < kLayers; ++l) {
                mamba_rms_norm_args rms{};
                rms.x = h_a.dl();
                rms.residual = (flip ? r_b : r_a).dl();
                rms.residual_out = (flip ? r_a : r_b).dl();
                rms.weight = norm_w.dl();
                rms.y = normed.dl();
                rms.eps = 1e-5f;
                mamba_norm_linear_args in{};
                in.rms_norm = &rms;
                in.weight = w_in[size_t(l)].dl();
                in.y = h_b.dl();
                mamba_status s = mamba_norm_linear(ctx, &in);
                if (s != MAMBA_STATUS_OK) return s;
                mamba_gated_rms_norm_args g{h_b.dl(), normed.dl(), norm_w.dl(), gated.dl(), kHidden / 4, 1e-5f, 0};
                mamba_norm_linear_args out{};
                out.gated_rms_norm = &g;
                out.weight = w_out[size_t(l)].dl();
                out.y = h_a.dl();
                if ((s = mamba_norm_linear(ctx, &out)) != MAMBA_STATUS_OK) return s;
                flip = !flip;  // the residual stream alternates between r_a and r_b
            }
            return MAMBA_STATUS_OK;
        }
        std::vector<double> results() {
            std::vector<double> all;
            for (Tensor * t : {&h_a, &r_a, &r_b, &normed, &gated}) {
                t->download(ctx);
                all.insert(all.end(), t->values().begin(), t->values().end());
            }
            return all;
        }
    };
    const auto context_with_pdl = [&](bool pdl) {
        const mt::ScopedEnv scoped("MAMBA_CUDA_PDL", pdl ? "1" : "0");
        return mt::make_context(GetParam());
    };
    mt::ContextPtr on = context_with_pdl(true), off = context_with_pdl(false);
    ASSERT_TRUE(on && off);
    Chain a(on.get(), 5), b(off.get(), 5);
    std::vector<double> previous;
    for (int64_t s = 0; s < kSteps; ++s) {
        MAMBA_ASSERT_OK(a.step());
        MAMBA_ASSERT_OK(b.step());
        const std::vector<double> ra = a.results(), rb = b.results();
        for (double v : ra) ASSERT_TRUE(std::isfinite(v)) << "step " << s;
        ASSERT_EQ(ra, rb) << "step " << s;
        EXPECT_NE(ra, previous) << "the chain must change at every step";
        previous = ra;
    }
}

MAMBA_INSTANTIATE_BACKENDS(NormLinearTest);
