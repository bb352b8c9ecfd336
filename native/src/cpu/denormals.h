// Flush-to-zero and denormals-are-zero on the calling thread while in scope (x86 MXCSR; elsewhere a no-op).
// The recurrences' decays are running products of exp(dt A) that pass through float32's denormal range
// (below 1.2e-38) on their way to 0; on x86 each arithmetic operation on a denormal takes a microcode assist
// of about a hundred cycles, in our loops and inside BLAS alike. Values that small are far below float32's
// rounding of any output they feed, so treating them as 0 changes no result beyond it. The scope restores
// the caller's mode: the library never leaves a thread's floating-point state changed.
#pragma once

#if defined(__SSE__) || defined(_M_X64)
#include <xmmintrin.h>
#endif

namespace mamba::cpu {

class ScopedFlushDenormals {
public:
#if defined(__SSE__) || defined(_M_X64)
    ScopedFlushDenormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | kFlushToZero | kDenormalsAreZero); }
    ~ScopedFlushDenormals() { _mm_setcsr(saved_); }
#else
    ScopedFlushDenormals() = default;
#endif
    ScopedFlushDenormals(const ScopedFlushDenormals &) = delete;
    ScopedFlushDenormals & operator=(const ScopedFlushDenormals &) = delete;

private:
#if defined(__SSE__) || defined(_M_X64)
    static constexpr unsigned int kFlushToZero = 0x8000u, kDenormalsAreZero = 0x0040u;
    unsigned int saved_;
#endif
};

}  // namespace mamba::cpu
