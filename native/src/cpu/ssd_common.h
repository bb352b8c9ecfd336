// Pieces the CPU SSD scan and its decode step share: the dt transform and a guard that keeps OpenBLAS
// single-threaded while OpenMP threads call it.
#pragma once

#include <cmath>

#include <cblas.h>

#include "core/numeric.h"

namespace mamba::cpu {

// dt -> dt + bias, softplus, clamp. The pair (0, +inf) means "no limit" and is not applied, so that a
// negative dt (possible without softplus) passes through unchanged, as in the reference Mamba-2 code.
struct DtTransform {
    bool softplus = false;
    bool clamp = false;
    float lo = 0.0f, hi = 0.0f;

    DtTransform(bool dt_softplus, float dt_min, float dt_max)
        : softplus(dt_softplus), clamp(!(dt_min == 0.0f && std::isinf(dt_max) && dt_max > 0.0f)), lo(dt_min), hi(dt_max) {}

    float operator()(float dt, float bias) const {
        float v = dt + bias;
        if (softplus) v = mamba::softplus(v);
        if (clamp) v = std::fmin(std::fmax(v, lo), hi);
        return v;
    }
};

// While alive, OpenBLAS runs each call on the calling thread only: our OpenMP threads already split the
// work, and OpenBLAS's own thread pool on top of them would oversubscribe the cores.
class SingleThreadedBlas {
public:
#if defined(OPENBLAS_VERSION)
    SingleThreadedBlas() : previous_(openblas_get_num_threads()) {
        if (previous_ != 1) openblas_set_num_threads(1);
    }
    ~SingleThreadedBlas() {
        if (previous_ != 1) openblas_set_num_threads(previous_);
    }

private:
    int previous_;
#else
    SingleThreadedBlas() = default;
#endif
public:
    SingleThreadedBlas(const SingleThreadedBlas &) = delete;
    SingleThreadedBlas & operator=(const SingleThreadedBlas &) = delete;
};

}  // namespace mamba::cpu
