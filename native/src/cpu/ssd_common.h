// Pieces the CPU SSD scan and its decode step share: the dt transform and a guard that keeps OpenBLAS
// single-threaded while OpenMP threads call it.
#pragma once

#include <cmath>
#include <cstdint>

#include <cblas.h>

#include "core/numeric.h"
#include "cpu/vec_math.h"

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

// y[i] *= silu(z[i]) over a row.
inline void multiply_by_silu(float * y, const float * z, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) y[i] *= silu_fast(z[i]);
}

// Rows of a view one step apart along its time axis: row t's address without per-row index arithmetic.
// Rows of one head are a whole (heads x headdim) row of the tensor apart, which defeats the hardware
// prefetcher, so fetch() asks for a row a few steps ahead.
struct Rows {
    char * base = nullptr;
    int64_t step_bytes = 0, row_bytes = 0;

    char * operator[](int64_t t) const { return base + t * step_bytes; }
    void fetch(int64_t t, bool for_write = false) const {
        const char * p = base + t * step_bytes;
        for (int64_t off = 0; off < row_bytes && off < 512; off += 64) {
            if (for_write) __builtin_prefetch(p + off, 1);
            else __builtin_prefetch(p + off);
        }
    }
};



}  // namespace mamba::cpu
