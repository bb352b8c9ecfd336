// float64 building blocks of the mixer-step references (test_mamba1_step.cpp, test_mamba2_step.cpp).
#pragma once

#include <cmath>
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

}  // namespace mt
