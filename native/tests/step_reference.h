// float64 building blocks of the mixer-step references (test_mamba1_step.cpp, test_mamba2_step.cpp).
#pragma once

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "support.h"

namespace mt {

inline double silu(double v) { return v / (1.0 + std::exp(-v)); }
inline double softplus(double v) { return v > 20.0 ? v : std::log1p(std::exp(v)); }

// v as a tensor of dtype d holds it.
inline double stored(DType d, double v) {
    char buf[8];
    from_double(d, buf, v);
    return to_double(d, buf);
}

// out[o] = sum_k w[o, k] * in[k] (+ bias[o]), w row-major (out, in).
inline std::vector<double> matvec(const Tensor & w, const double * in, const Tensor * bias) {
    const int64_t out = w.shape()[0], k = w.shape()[1];
    std::vector<double> r(size_t(out), 0.0);
    for (int64_t o = 0; o < out; ++o) {
        double s = bias ? bias->at(o) : 0.0;
        for (int64_t i = 0; i < k; ++i) s += w.at(o * k + i) * in[i];
        r[size_t(o)] = s;
    }
    return r;
}

// The residual block's pre-norm that both steps take (pre_norm_weight): none, without the residual stream (the first
// block, whose input is the embedding) or with it (every later block).
enum class PreNorm { None, NoResidual, WithResidual };

inline std::string describe(PreNorm p) {
    return p == PreNorm::None ? "" : p == PreNorm::NoResidual ? " pre-norm" : " pre-norm with residual";
}

// The pre-norm's tensors and its float64 reference: the step's input x and the residual (float32, as the models keep
// the stream), the norm's weight (of the weights' dtype), residual_out (float32) and the pre_normed scratch.
class PreNormTensors {
    PreNorm kind_;
    DType act_;
    std::vector<double> expected_sum_;

public:
    static constexpr float kEps = 1e-5f;

    PreNormTensors(PreNorm kind, int64_t batch, int64_t hidden, DType act, DType weight)
        : kind_(kind), act_(act), x({batch, hidden}, act), residual({batch, hidden}, DType::F32), weight({hidden}, weight),
          residual_out({batch, hidden}, DType::F32), normed({batch, hidden}, act) {}

    bool on() const { return kind_ != PreNorm::None; }

    // The step's arguments with the pre-norm: x is then the norm's input.
    template <class Args>
    void set(Args & a) {
        if (!on()) return;
        a.x = x.dl();
        a.pre_norm_weight = weight.dl();
        a.residual = kind_ == PreNorm::WithResidual ? residual.dl() : nullptr;
        a.residual_out = residual_out.dl();
        a.pre_normed = normed.dl();
        a.pre_norm_eps = kEps;
    }

    void fill_and_upload(mamba_context * ctx, std::mt19937_64 & rng) {
        if (!on()) return;
        weight.fill_uniform(rng, 0.5, 1.5);
        weight.round_to_dtype();
        weight.upload(ctx);
        normed.upload_poisoned(ctx);
    }

    void upload_all(mamba_context * ctx) {
        for (Tensor * t : {&x, &residual, &weight, &residual_out, &normed}) t->upload(ctx);
    }

    // A new input (and residual) for the next step; `mixer_x` takes the norm's output as the step stores it in
    // pre_normed, the mixer's input the reference then starts from.
    void next_step(mamba_context * ctx, std::mt19937_64 & rng, Tensor & mixer_x) {
        if (!on()) return;
        x.fill_uniform(rng, -2, 2);
        x.round_to_dtype();
        x.upload(ctx);
        residual.fill_uniform(rng, -3, 3);
        residual.round_to_dtype();
        if (kind_ == PreNorm::WithResidual) residual.upload(ctx);
        residual_out.upload_poisoned(ctx);
        const int64_t rows = x.shape()[0], hidden = x.shape()[1];
        expected_sum_.assign(size_t(rows * hidden), 0.0);
        for (int64_t b = 0; b < rows; ++b) {
            double sq = 0.0;
            for (int64_t i = 0; i < hidden; ++i) {
                const int64_t k = b * hidden + i;
                const double r = x.at(k) + (kind_ == PreNorm::WithResidual ? residual.at(k) : 0.0);
                expected_sum_[size_t(k)] = r;
                sq += r * r;
            }
            const double inv = 1.0 / std::sqrt(sq / double(hidden) + double(kEps));
            for (int64_t i = 0; i < hidden; ++i) {
                const int64_t k = b * hidden + i;
                mixer_x.at(k) = stored(act_, expected_sum_[size_t(k)] * inv * weight.at(i));
            }
        }
    }

    // residual_out holds x + residual (in float32).
    void check(mamba_context * ctx) {
        if (!on()) return;
        residual_out.download(ctx);
        EXPECT_CLOSE(residual_out.values(), expected_sum_, 1e-6, 1e-6);
    }

    Tensor x, residual, weight, residual_out, normed;
};

// The pre-norm's argument errors, the same for both steps: `args` has the pre-norm set (with a residual), `y` is the
// step's output; `call` runs the step.
template <class Args, class Call>
void expect_pre_norm_errors(mamba_context * ctx, const std::string & op, const Args & args, Tensor & y, Call && call) {
    {
        Args a = args;
        a.pre_normed = nullptr;
        EXPECT_EQ(call(ctx, &a), MAMBA_STATUS_INVALID_ARGUMENT);
        EXPECT_EQ(std::string(mamba_last_error()), op + ": argument 'pre_normed' is null; the pre-norm (pre_norm_weight) needs it");
    }
    {
        Args a = args;
        a.residual_out = nullptr;
        EXPECT_EQ(call(ctx, &a), MAMBA_STATUS_INVALID_ARGUMENT);
        EXPECT_EQ(std::string(mamba_last_error()), op + ": argument 'residual_out' is null; the pre-norm (pre_norm_weight) needs it");
    }
    {
        Args a = args;
        a.pre_norm_weight = nullptr;
        EXPECT_EQ(call(ctx, &a), MAMBA_STATUS_INVALID_ARGUMENT);
        EXPECT_EQ(std::string(mamba_last_error()), op + ": residual, residual_out and pre_normed belong to the pre-norm, and pre_norm_weight is null");
    }
    {
        Args a = args;  // the stream updated in place: other blocks of in_proj may still read what block 0 writes
        a.residual_out = const_cast<DLTensor *>(a.residual);
        EXPECT_EQ(call(ctx, &a), MAMBA_STATUS_INVALID_ARGUMENT);
        EXPECT_NE(std::string(mamba_last_error()).find("'residual_out'"), std::string::npos) << mamba_last_error();
        EXPECT_NE(std::string(mamba_last_error()).find("overlap"), std::string::npos) << mamba_last_error();
    }
    {
        Args a = args;
        a.residual_out = y.dl();
        EXPECT_EQ(call(ctx, &a), MAMBA_STATUS_INVALID_ARGUMENT);
        EXPECT_NE(std::string(mamba_last_error()).find("overlap"), std::string::npos) << mamba_last_error();
    }
    {
        Tensor short_weight({y.shape()[1] - 1}, DType::F32);
        short_weight.upload(ctx);
        Args a = args;
        a.pre_norm_weight = short_weight.dl();
        EXPECT_EQ(call(ctx, &a), MAMBA_STATUS_INVALID_ARGUMENT);
        EXPECT_EQ(std::string(mamba_last_error()).rfind(op + ": the pre-norm (mamba_rms_norm): ", 0), 0u) << mamba_last_error();
    }
    Args a = args;
    MAMBA_ASSERT_OK(call(ctx, &a));
}

}  // namespace mt
