// mamba_softmax (and log-softmax) against a float64 reference, per backend, input dtype, layout and row
// length, including logits far from zero and masked (-inf) entries.
#include <limits>

#include "backend_test.h"

namespace {

using mt::DType;
using mt::Tensor;

constexpr double kInf = std::numeric_limits<double>::infinity();

std::vector<double> reference_softmax(const Tensor & x, bool log) {
    const int64_t rows = x.shape()[0], n = x.shape()[1];
    std::vector<double> y(size_t(rows * n));
    for (int64_t r = 0; r < rows; ++r) {
        double m = -kInf;
        for (int64_t i = 0; i < n; ++i) m = std::max(m, x.at(r * n + i));
        double s = 0;
        for (int64_t i = 0; i < n; ++i) s += std::exp(x.at(r * n + i) - m);
        for (int64_t i = 0; i < n; ++i) {
            const double v = x.at(r * n + i);
            y[size_t(r * n + i)] = log ? v - m - std::log(s) : std::exp(v - m) / s;
        }
    }
    return y;
}

// Probabilities: relative to each value, as small ones matter to sampling. Log-probabilities: a few
// float32 roundings of values up to ~100 in magnitude.
void expect_matches(const std::vector<double> & actual, const std::vector<double> & expected, bool log) {
    std::vector<double> a, e;
    for (size_t i = 0; i < expected.size(); ++i) {
        if (std::isinf(expected[i])) {
            EXPECT_EQ(actual[i], expected[i]) << "at " << i;  // masked entries: -inf exactly
        } else {
            a.push_back(actual[i]);
            e.push_back(expected[i]);
        }
    }
    if (log) EXPECT_CLOSE(a, e, 2e-5, 1e-6);
    else EXPECT_CLOSE(a, e, 1e-30, 1e-5);
}

}  // namespace

class SoftmaxTest : public mt::BackendTest {
protected:
    std::mt19937_64 rng_{123};

    // Logits in [center - spread, center + spread]; every `mask_every`-th entry set to -inf (0: none).
    void run(int64_t rows, int64_t n, DType dt, bool log, bool strided, double center, double spread, int64_t mask_every) {
        SCOPED_TRACE(std::string(mt::dtype_name(dt)) + (log ? " log_softmax" : " softmax") + " (" + std::to_string(rows) + ", " + std::to_string(n) +
                     ")" + (strided ? " strided" : "") + " center " + std::to_string(center) + (mask_every ? " masked" : ""));
        const std::vector<int64_t> shape{rows, n};
        Tensor x(shape, dt, strided ? mt::padded_strides(shape, 1, 3) : std::vector<int64_t>{});
        Tensor y(shape, DType::F32, strided ? std::vector<int64_t>{1, rows} : std::vector<int64_t>{});
        x.fill_uniform(rng_, center - spread, center + spread);
        if (mask_every)
            for (int64_t i = 0; i < x.numel(); i += mask_every) x.at(i) = -kInf;
        x.upload(ctx());
        y.upload_poisoned(ctx());
        MAMBA_ASSERT_OK(mamba_softmax(ctx(), x.dl(), y.dl(), log));
        y.download(ctx());
        expect_matches(y.values(), reference_softmax(x, log), log);
    }
};

TEST_P(SoftmaxTest, MatchesFloat64Reference) {
    for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
        for (bool log : {false, true}) {
            for (bool strided : {false, true}) {
                run(1, 1, dt, log, strided, 0, 1, 0);
                run(3, 100, dt, log, strided, 0, 8, 0);
                run(17, 3000, dt, log, strided, 0, 20, 7);
                // a single vocabulary-sized row, split over threads, with logits far from 0
                run(1, 50280, dt, log, strided, dt == DType::F32 ? 1000 : 100, 30, 0);
                run(2, 50280, dt, log, strided, -50, 30, 101);
            }
        }
    }
}

// Rows are cut into pieces when there are fewer rows than threads; odd counts must not change the result.
TEST_P(SoftmaxTest, SplitsOverManyThreads) {
    ctx_ = mt::make_context(GetParam(), 0, 7);
    for (bool log : {false, true}) {
        run(1, 60001, DType::F32, log, false, 5, 40, 13);
        run(3, 50000, DType::BF16, log, true, -20, 10, 0);
    }
}

TEST_P(SoftmaxTest, InPlaceOnFloat32) {
    std::mt19937_64 rng(6);
    Tensor x({4, 5000}, DType::F32);
    x.fill_uniform(rng, -10, 10);
    const auto expected = reference_softmax(x, false);
    x.upload(ctx());
    MAMBA_ASSERT_OK(mamba_softmax(ctx(), x.dl(), x.dl(), 0));
    x.download(ctx());
    expect_matches(x.values(), expected, false);
}

// Like torch.softmax: a row with nothing but -inf, or with a NaN, has no distribution and gives NaN.
TEST_P(SoftmaxTest, RowsWithoutADistributionGiveNaN) {
    Tensor x({3, 4}, DType::F32), y({3, 4}, DType::F32);
    const double nan = std::numeric_limits<double>::quiet_NaN();
    x.values() = {-kInf, -kInf, -kInf, -kInf, 1, nan, 2, 3, 0.5, 1, -kInf, 2};
    x.upload(ctx());
    for (bool log : {false, true}) {
        y.upload_poisoned(ctx());
        MAMBA_ASSERT_OK(mamba_softmax(ctx(), x.dl(), y.dl(), log));
        y.download(ctx());
        for (int i = 0; i < 8; ++i) EXPECT_TRUE(std::isnan(y.at(i))) << i;
        Tensor good({1, 4}, DType::F32);
        good.values() = {0.5, 1, -kInf, 2};
        const auto ref = reference_softmax(good, log);
        expect_matches({y.at(8), y.at(9), y.at(10), y.at(11)}, ref, log);
    }
}

TEST_P(SoftmaxTest, InvalidArgumentsNameTheArgument) {
    Tensor x({2, 8}, DType::F32), y({2, 8}, DType::F32), y_bf16({2, 8}, DType::BF16), y_bad({2, 7}, DType::F32), x3({2, 2, 2}, DType::F32);
    Tensor xi({2, 8}, DType::I64);
    for (Tensor * t : {&x, &y, &y_bf16, &y_bad, &x3, &xi}) t->upload(ctx());
    auto expect_error = [&](const DLTensor * in, DLTensor * out, mamba_status status, const std::string & message) {
        EXPECT_EQ(mamba_softmax(ctx(), in, out, 0), status) << message;
        EXPECT_NE(std::string(mamba_last_error()).find(message), std::string::npos) << mamba_last_error();
    };
    expect_error(x.dl(), y_bf16.dl(), MAMBA_STATUS_UNSUPPORTED, "mamba_softmax: argument 'y' has dtype bfloat16; expected float32");
    expect_error(x.dl(), y_bad.dl(), MAMBA_STATUS_INVALID_ARGUMENT, "argument 'y' has shape (2, 7), expected (2, 8)");
    expect_error(x3.dl(), y.dl(), MAMBA_STATUS_INVALID_ARGUMENT, "argument 'x' has 3 axes");
    expect_error(xi.dl(), y.dl(), MAMBA_STATUS_UNSUPPORTED, "argument 'x' has dtype int64");
    expect_error(nullptr, y.dl(), MAMBA_STATUS_INVALID_ARGUMENT, "argument 'x' is null");
    expect_error(x.dl(), nullptr, MAMBA_STATUS_INVALID_ARGUMENT, "argument 'y' is null");
    // y one element into x's memory: overlapping, not the same view
    mt::View x_view(x, {2, 7}, {8, 1}), y_view(x, {2, 7}, {8, 1}, sizeof(float));
    expect_error(x_view.dl(), y_view.dl(), MAMBA_STATUS_INVALID_ARGUMENT, "arguments 'y' and 'x' overlap in memory without being the same view");
}

MAMBA_INSTANTIATE_BACKENDS(SoftmaxTest);
