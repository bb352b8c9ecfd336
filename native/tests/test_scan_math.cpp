// The scan's FMA-pipe math (native/kernels/scan_math.h: exp2_poly, log1p_unit) evaluated on the host with
// the device's float32 operations, against float64: maximum relative error over the range the scan uses
// and the mean error (a biased decay drifts a long recurrence).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>

#include "../kernels/scan_math.h"

namespace {

using mamba::scan_math::bits_float;
using mamba::scan_math::exp2_poly;
using mamba::scan_math::float_bits;
using mamba::scan_math::log1p_unit;

struct ErrorStats {
    double max_rel = 0, sum = 0;
    int64_t count = 0;
    float worst = 0;
    void add(float x, double got, double want) {
        const double e = (got - want) / want;
        if (std::fabs(e) > max_rel) max_rel = std::fabs(e), worst = x;
        sum += e;
        ++count;
    }
    double mean() const { return sum / double(count); }
};

TEST(ScanMath, Exp2PolyOverTheDecayRange) {
    // Decays: x = dt * A * log2(e) <= 0, down to where 2^x leaves the normal floats.
    ErrorStats st;
    // Every 31st float in [-1, -2^-12] (the reduced argument f covers [-0.5, 0.5] densely), every 101st elsewhere.
    for (float x = -126.0f; x < 0.0f; x = bits_float(float_bits(x) - (x < -1.0f || x > -0x1p-12f ? 101u : 31u))) st.add(x, exp2_poly(x), std::exp2(double(x)));
    st.add(0.0f, exp2_poly(0.0f), 1.0);
    EXPECT_LT(st.max_rel, 2.5e-7) << "worst x " << st.worst;
    EXPECT_LT(std::fabs(st.mean()), 5e-9);
    EXPECT_GT(st.count, 3000000);
    std::printf("exp2_poly on [-126, 0]: max relative error %.3g (at %.9g), mean %.3g over %lld points\n", st.max_rel, st.worst, st.mean(), (long long)st.count);
    EXPECT_EQ(exp2_poly(0.0f), 1.0f);
    EXPECT_EQ(exp2_poly(-1.0f), 0.5f);
}

TEST(ScanMath, Exp2PolyGrowthAndClamp) {
    ErrorStats st;
    for (float x = 1e-30f; x <= 126.0f; x = bits_float(float_bits(x) + 4099u)) st.add(x, exp2_poly(x), std::exp2(double(x)));
    EXPECT_LT(st.max_rel, 2.5e-7) << "worst x " << st.worst;
    // Beyond the range: clamped to 2^-126 (zero for any state update) and 2^126, never negative or NaN.
    for (float x : {-126.5f, -200.0f, -1e30f, -INFINITY}) {
        EXPECT_GE(exp2_poly(x), 0.0f);
        EXPECT_LE(exp2_poly(x), std::ldexp(1.0f, -125));
    }
    EXPECT_NEAR(exp2_poly(1e30f), std::ldexp(1.0f, 126), std::ldexp(1.0f, 104));
}

TEST(ScanMath, Log1pUnitForSoftplus) {
    ErrorStats st;
    for (float e = 1e-37f; e <= 1.0f; e = bits_float(float_bits(e) + 211u)) st.add(e, log1p_unit(e), std::log1p(double(e)));
    st.add(1.0f, log1p_unit(1.0f), std::log1p(1.0));
    EXPECT_LT(st.max_rel, 3e-7) << "worst e " << st.worst;
    std::printf("log1p_unit on [1e-37, 1]: max relative error %.3g (at %.9g)\n", st.max_rel, st.worst);
    EXPECT_EQ(log1p_unit(0.0f), 0.0f);
    // softplus(x) = max(x, 0) + log1p(exp(-|x|)) over the deltas a model produces.
    ErrorStats sp;
    for (double x = -30.0; x <= 30.0; x += 1.0 / 1024) {
        const float xf = float(x);
        const float got = std::fmax(xf, 0.0f) + log1p_unit(std::exp(-std::fabs(xf)));
        sp.add(xf, got, std::log1p(std::exp(double(xf))));
    }
    EXPECT_LT(sp.max_rel, 5e-7) << "worst x " << sp.worst;
    std::printf("softplus on [-30, 30]: max relative error %.3g (at %.9g)\n", sp.max_rel, sp.worst);
}

}  // namespace
