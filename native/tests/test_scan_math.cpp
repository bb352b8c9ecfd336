// The scan's FMA-pipe math (native/kernels/scan_math.h: log1p_unit for softplus) evaluated on the host with
// the device's float32 operations, against float64: maximum relative error over the range the scan uses.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "../kernels/scan_math.h"

namespace {

using mamba::scan_math::log1p_unit;

uint32_t float_bits(float x) {
    uint32_t u;
    std::memcpy(&u, &x, 4);
    return u;
}
float bits_float(uint32_t u) {
    float x;
    std::memcpy(&x, &u, 4);
    return x;
}

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
};

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
