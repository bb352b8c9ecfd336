// What the two CUDA sampling kernels share (sampling.cu: one block a row; sampling_cluster.cu: one
// thread-block cluster a row): their arguments, the order-preserving keys of the radix selection, the
// repetition penalty, the choice of a cut's bin and the write of the drawn token. Both follow the CPU
// backend step for step (sampling.cu's header), so that all three draw the same token.
#pragma once

#include "common.cuh"
#include "core/rng.h"

namespace mamba::cuda::sampling {

struct SampleArgs {
    AnyPtr logits;
    int64_t l_s0, l_s1;
    const char * history;
    int hist_dtype;
    int64_t h_s0, h_s1, history_len;
    char * tokens;
    int tok_dtype;
    int64_t tok_s;
    int64_t vocab;
    float temperature, top_p, min_p, penalty;
    int top_k;
    uint64_t seed, step;
    float *v, *w;  // block kernel only, per row: scaled logits and surviving weights (batch * vocab each)
    unsigned long long * error_index;  // first bad history entry (flat row-major index)
    unsigned long long error_tag;      // or'ed into the index (nonzero for the deferred word of a capture)
};

// Order-preserving unsigned key of a float (larger float, larger key).
__device__ __forceinline__ uint32_t float_key(float f) {
    const uint32_t b = __float_as_uint(f);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// History entry j of `row`.
__device__ __forceinline__ int64_t history_id(const SampleArgs & a, int64_t row, int64_t j) {
    const int64_t off = row * a.h_s0 + j * a.h_s1;
    return a.hist_dtype == int(DType::I32) ? int64_t(reinterpret_cast<const int32_t *>(a.history)[off])
                                           : reinterpret_cast<const int64_t *>(a.history)[off];
}

// HF's repetition penalty of one logit: positive ones divided, negative ones multiplied.
__device__ __forceinline__ float penalized(float logit, float penalty) { return logit < 0.0f ? logit * penalty : __fdiv_rn(logit, penalty); }

// A candidate's weight relative to the most likely token: exp in double, rounded to float, like the
// CPU's expf; underflow and NaN give 0 (never drawn).
__device__ __forceinline__ float relative_weight(float scaled_logit, float max_value) {
    const float e = float(exp(double(__fsub_rn(scaled_logit, max_value))));
    return e > 0.0f ? e : 0.0f;
}

__device__ __forceinline__ void write_token(const SampleArgs & a, int64_t row, int64_t token) {
    if (a.tok_dtype == int(DType::I32)) reinterpret_cast<int32_t *>(a.tokens)[row * a.tok_s] = int32_t(token);
    else reinterpret_cast<int64_t *>(a.tokens)[row * a.tok_s] = token;
}

// One round of a radix selection, run by all 32 lanes of one warp. `hist` holds the count or weight of
// the candidates in each of 256 bins of this round's key byte; `above`, everything known to lie above
// them. Returns the highest bin whose weight from the top reaches `target` and, in *above_out, the weight
// strictly above that bin; every lane gets both. Lane l owns bins 255-8l down to 248-8l: the lanes' sums
// are scanned by shuffles, then each lane walks its 8 bins and the lowest lane that finds one wins.
// When rounding leaves the target above everything, the lowest nonempty bin (0 when none).
__device__ inline int select_bin(const double * hist, double above, double target, double * above_out) {
    const unsigned full = 0xffffffffu;
    const int lane = threadIdx.x & 31;
    double own = 0.0;
#pragma unroll
    for (int j = 0; j < 8; ++j) own += hist[255 - 8 * lane - j];
    double inc = own;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const double up = __shfl_up_sync(full, inc, o);
        if (lane >= o) inc += up;
    }
    double acc = above + (inc - own);
    int found = -1;
    for (int j = 0; j < 8; ++j) {
        const int bin = 255 - 8 * lane - j;
        if (acc + hist[bin] >= target) {
            found = bin;
            break;
        }
        acc += hist[bin];
    }
    const unsigned hit = __ballot_sync(full, found >= 0);
    if (hit != 0) {
        const int winner = __ffs(hit) - 1;
        *above_out = __shfl_sync(full, acc, winner);
        return __shfl_sync(full, found, winner);
    }
    int lowest = 256;
    for (int bin = 8 * lane; bin < 8 * lane + 8; ++bin)
        if (hist[bin] > 0.0) {
            lowest = bin;
            break;
        }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) lowest = min(lowest, __shfl_xor_sync(full, lowest, o));
    const int chosen = lowest == 256 ? 0 : lowest;
    double higher = 0.0;
    for (int bin = 8 * lane; bin < 8 * lane + 8; ++bin)
        if (bin > chosen) higher += hist[bin];
    *above_out = above + warp_sum(higher);
    return chosen;
}

// The uniform draw's target: u in [0, 1) from Philox at (seed; step, row), times the total weight.
__device__ __forceinline__ double draw_target(const SampleArgs & a, int64_t row, double total) {
    const Philox4x32 bits = sampling_random_bits(a.seed, a.step, uint64_t(row));
    return uniform_double(bits.v[0], bits.v[1]) * total;
}

}  // namespace mamba::cuda::sampling
