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

// Runs the tensor-core chunked kernel when it handles the problem (bf16 x, B and C; dstate <= 128;
// enough shared memory on the device) and returns true; returns false, having done nothing, otherwise.
bool try_ssd_chunked(mamba_context & ctx, const SsdArgs & a, int64_t nseq);

}  // namespace mamba::cuda
