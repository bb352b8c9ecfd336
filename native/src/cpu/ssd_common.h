// Pieces the CPU SSD scan and its decode step share: the dt transform and a guard that keeps OpenBLAS
// single-threaded while OpenMP threads call it.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <mutex>

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

// e^-a for a in [0, 87], within 2e-7 relative, without branches, float comparisons (which may not be
// if-converted under strict floating point rules) or library calls, so that loops over it vectorize:
// e^x = 2^n e^r with n = round(x / ln 2), |r| <= ln 2 / 2 and e^r by its degree-6 Taylor polynomial.
inline float exp_of_negative(float a) {
    const float x = -a;
    constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding and subtracting it rounds to an integer
    const float n = (x * 1.44269504088896341f + kRound) - kRound;
    const float r = (x - n * 0.693145751953125f) - n * 1.428606765330187e-06f;  // ln 2 in two parts
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    return p * bits_to_float(uint32_t(int32_t(n) + 127) << 23);
}

// silu(z) = z sigmoid(z) with sigmoid from e = e^-|z| as 1 / (1 + e) or e / (1 + e) by sign, so it never
// overflows; |z| is clamped to 87 in the integer domain (e^-87 is already below float32 resolution of 1).
inline float silu_vectorizable(float z) {
    const uint32_t bits = float_to_bits(z);
    const uint32_t magnitude = std::min(bits & 0x7fffffffu, 0x42ae0000u);  // min(|z|, 87); NaN becomes 87
    const float e = exp_of_negative(bits_to_float(magnitude));
    const float negative = float(bits >> 31);                            // 1 for z < 0, else 0
    return z * (1.0f + (e - 1.0f) * negative) / (1.0f + e);               // NaN z stays NaN through the product
}

// y[i] *= silu(z[i]) over a row.
inline void multiply_by_silu(float * y, const float * z, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] *= silu_vectorizable(z[i]);
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

// While alive, OpenBLAS runs each call on the calling thread only: our OpenMP threads already split the
// work, and OpenBLAS's own thread pool on top of them would oversubscribe the cores. The setting is
// process-wide, so overlapping scopes (contexts used from several threads) share it: the first to enter
// saves and lowers it, the last to leave restores it.
class SingleThreadedBlas {
public:
    SingleThreadedBlas() {
#if defined(OPENBLAS_VERSION)
        std::lock_guard<std::mutex> lock(state().mutex);
        if (state().users++ == 0) {
            state().saved = openblas_get_num_threads();
            if (state().saved != 1) openblas_set_num_threads(1);
        }
#endif
    }
    ~SingleThreadedBlas() {
#if defined(OPENBLAS_VERSION)
        std::lock_guard<std::mutex> lock(state().mutex);
        if (--state().users == 0 && state().saved != 1) openblas_set_num_threads(state().saved);
#endif
    }
    SingleThreadedBlas(const SingleThreadedBlas &) = delete;
    SingleThreadedBlas & operator=(const SingleThreadedBlas &) = delete;

private:
    struct Shared {
        std::mutex mutex;
        int users = 0;
        int saved = 1;
    };
    static Shared & state() {
        static Shared shared;
        return shared;
    }
};

}  // namespace mamba::cpu
