// Arguments of the Mamba-2 SSD forward kernels (ssd.cu's recurrence kernels and ssd_chunked.cu's
// tensor-core chunked kernel) and the entry point of the chunked one.
#pragma once

#include "common.cuh"

namespace mamba::cuda {

struct SsdArgs {
    AnyPtr x, dt, B, C, z, y;
    const float *A, *D, *dt_bias, *init;
    float * fin;
    const char * cu_seqlens;
    int cu_dtype;
    int64_t cu_stride;
    int64_t x_s[4], dt_s[3], B_s[4], C_s[4], z_s[4], y_s[4];
    int64_t A_s, D_s0, D_s1, bias_s, init_s[4], fin_s[4];
    int64_t len, heads, headdim, dstate, heads_per_group;
    float dt_min, dt_max;
    bool softplus, clamp, has_D, D_per_channel, has_z, has_bias, has_init, has_fin, packed;
};

// Entry i of cu_seqlens (int32 or int64, any stride) of a packed problem.
__device__ __forceinline__ int64_t cu_at(const SsdArgs & a, int64_t i) {
    return a.cu_dtype == int(DType::I32) ? int64_t(reinterpret_cast<const int32_t *>(a.cu_seqlens)[i * a.cu_stride])
                                         : reinterpret_cast<const int64_t *>(a.cu_seqlens)[i * a.cu_stride];
}

// The batch row b and the steps [t_begin, t_end) of sequence seq: a batch row, or a packed sequence
// of cu_seqlens (whose rows all live in batch row 0).
__device__ inline void sequence_span(const SsdArgs & a, int64_t seq, int64_t & b, int64_t & t_begin, int64_t & t_end) {
    if (a.packed) {
        b = 0;
        t_begin = cu_at(a, seq);
        t_end = cu_at(a, seq + 1);
    } else {
        b = seq;
        t_begin = 0;
        t_end = a.len;
    }
}

// Runs the tensor-core chunked kernel when it handles the problem (bf16 x, B and C; dstate <= 128;
// enough shared memory on the device) and returns true; returns false, having done nothing, otherwise.
bool try_ssd_chunked(mamba_context & ctx, const SsdArgs & a, int64_t nseq);

}  // namespace mamba::cuda
