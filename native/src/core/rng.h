// Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011): a counter-based
// generator, so the random numbers of a draw are a pure function of (key, counter) with no state to carry
// between calls. The CPU and CUDA backends share this header so both see the same stream.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define MAMBA_RNG_HD __host__ __device__ __forceinline__
#else
#define MAMBA_RNG_HD inline
#endif

namespace mamba {

struct Philox4x32 {
    uint32_t v[4];
};

namespace philox_detail {
constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
// Key increments per round: the golden ratio and sqrt(3) - 1 as 32-bit fractions.
constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;

MAMBA_RNG_HD void mul_hi_lo(uint32_t a, uint32_t b, uint32_t & hi, uint32_t & lo) {
    const uint64_t p = uint64_t(a) * uint64_t(b);
    hi = uint32_t(p >> 32);
    lo = uint32_t(p);
}
}  // namespace philox_detail

// Ten rounds of Philox on a 128-bit counter with a 64-bit key.
MAMBA_RNG_HD Philox4x32 philox4x32_10(Philox4x32 counter, uint32_t key0, uint32_t key1) {
    using namespace philox_detail;
    uint32_t c0 = counter.v[0], c1 = counter.v[1], c2 = counter.v[2], c3 = counter.v[3];
    for (int round = 0; round < 10; ++round) {
        uint32_t hi0, lo0, hi1, lo1;
        mul_hi_lo(kMul0, c0, hi0, lo0);
        mul_hi_lo(kMul1, c2, hi1, lo1);
        const uint32_t n0 = hi1 ^ c1 ^ key0, n2 = hi0 ^ c3 ^ key1;
        c0 = n0;
        c1 = lo1;
        c2 = n2;
        c3 = lo0;
        key0 += kWeyl0;
        key1 += kWeyl1;
    }
    return Philox4x32{{c0, c1, c2, c3}};
}

// The four words drawn for one sampled token: key = seed, counter = (step, row).
MAMBA_RNG_HD Philox4x32 sampling_random_bits(uint64_t seed, uint64_t step, uint64_t row) {
    const Philox4x32 counter{{uint32_t(step), uint32_t(step >> 32), uint32_t(row), uint32_t(row >> 32)}};
    return philox4x32_10(counter, uint32_t(seed), uint32_t(seed >> 32));
}

// A uniform double in [0, 1) with 53 random bits taken from two words.
MAMBA_RNG_HD double uniform_double(uint32_t high_word, uint32_t low_word) {
    const uint64_t bits = (uint64_t(high_word) << 21) | (uint64_t(low_word) >> 11);
    return double(bits) * (1.0 / 9007199254740992.0);  // 2^-53
}

}  // namespace mamba
