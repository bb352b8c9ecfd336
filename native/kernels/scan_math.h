// Math of the selective scan's inner step that runs on the FMA pipe instead of the special-function
// unit (MUFU). Plain C++ usable on the host too, so that the CPU tests measure the exact device
// arithmetic (same operations, same float32 roundings; only the MUFU reciprocal differs).
// log1p_unit: log(1 + e) for e in [0, 1], the non-linear part of softplus(x) = max(x, 0) + log1p(e^-|x|),
//   as 2 atanh(s) with s = e / (2 + e) <= 1/3: odd series up to s^13 (truncation below 1.5e-8 relative),
//   no branch (the generic log1pf costs about 30 instructions and two branches a step).
#pragma once

#include <math.h>

#include <cmath>

#if defined(__CUDACC__)
#define MAMBA_SCAN_MATH __host__ __device__ __forceinline__
#else
#define MAMBA_SCAN_MATH inline
#endif

namespace mamba::scan_math {

MAMBA_SCAN_MATH float fma_f(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
    return __fmaf_rn(a, b, c);
#else
    return std::fma(a, b, c);
#endif
}

// e / (2 + e): the fast reciprocal on the device (MUFU.RCP, about 1 ulp), a division on the host.
MAMBA_SCAN_MATH float ratio_2pe(float e) {
#if defined(__CUDA_ARCH__)
    return __fdividef(e, 2.0f + e);
#else
    return e / (2.0f + e);
#endif
}

// log(1 + e) for e in [0, 1].
MAMBA_SCAN_MATH float log1p_unit(float e) {
    const float s = ratio_2pe(e);
    const float s2 = s * s;
    // 2 atanh(s) = s * (2 + 2/3 s^2 + 2/5 s^4 + ... + 2/13 s^12)
    float q = fma_f(2.0f / 13.0f, s2, 2.0f / 11.0f);
    q = fma_f(q, s2, 2.0f / 9.0f);
    q = fma_f(q, s2, 2.0f / 7.0f);
    q = fma_f(q, s2, 2.0f / 5.0f);
    q = fma_f(q, s2, 2.0f / 3.0f);
    q = fma_f(q, s2, 2.0f);
    return s * q;
}

}  // namespace mamba::scan_math
