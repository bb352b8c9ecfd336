// The fused Mamba-1 scan kernel (see selective_scan.cu for the design), instantiated per element type
// in selective_scan_<type>.cu so the variants compile in parallel.
#pragma once

#include "common.cuh"

namespace mamba::cuda::scan {

struct ScanArgs {
    const char *u, *delta, *B, *C, *z;
    char * y;
    const float *A, *D, *delta_bias, *init;
    float * fin;
    int64_t u_sb, u_sd, dl_sb, dl_sd, z_sb, z_sd, y_sb, y_sd;
    // Variable B/C: (batch, groups, dstate, len) with unit stride over len. Invariant: (dim, dstate),
    // where B_sg is the stride over dim and B_sb is unused.
    int64_t B_sb, B_sg, B_sn, C_sb, C_sg, C_sn;
    int64_t A_sd, A_sn, D_s, bias_s;
    int64_t init_sb, init_sd, init_sn, fin_sb, fin_sd, fin_sn;
    int64_t dim, len, dstate, channels_per_group;
    bool softplus, has_D, has_z, has_bias, has_init, has_fin, vec;
};

// Compile-time shape of one scan configuration.
template <class T, int kStatesPerLane, int kLanesPerChannel, bool kVariableBC>
struct ScanTraits {
    using Elem = T;
    static constexpr int kThreads = 128;
    static constexpr int kSPT = kStatesPerLane;
    static constexpr int kG = kLanesPerChannel;
    static constexpr int kChunk = 8;
    static constexpr int kChannels = kThreads / kG;                          // channels per block
    static constexpr int kStepsPerLane = kChunk >= kG ? kChunk / kG : 1;     // discretization work split
    static constexpr int kActiveLanes = kChunk / kStepsPerLane;
    static constexpr bool kVarBC = kVariableBC;
};

template <class Tr>
__global__ void __launch_bounds__(Tr::kThreads) selective_scan_kernel(ScanArgs a) {
    using T = typename Tr::Elem;
    constexpr int SPT = Tr::kSPT, G = Tr::kG, CH = Tr::kChunk, SPL = Tr::kStepsPerLane;
    __shared__ float s_dt[Tr::kChannels][CH + 1], s_du[Tr::kChannels][CH + 1], s_skip[Tr::kChannels][CH + 1],
        s_gate[Tr::kChannels][CH + 1], s_y[Tr::kChannels][CH + 1];

    const int lane_g = threadIdx.x % G, cl = threadIdx.x / G;
    const int64_t b = blockIdx.y;
    const int64_t d_raw = int64_t(blockIdx.x) * Tr::kChannels + cl;
    const bool channel_valid = d_raw < a.dim;
    const int64_t d = channel_valid ? d_raw : a.dim - 1;  // idle lanes shadow a real channel; they never store
    const int64_t g = d / a.channels_per_group;

    const T * up = reinterpret_cast<const T *>(a.u) + b * a.u_sb + d * a.u_sd;
    const T * dp = reinterpret_cast<const T *>(a.delta) + b * a.dl_sb + d * a.dl_sd;
    const T * zp = a.has_z ? reinterpret_cast<const T *>(a.z) + b * a.z_sb + d * a.z_sd : nullptr;
    T * yp = reinterpret_cast<T *>(a.y) + b * a.y_sb + d * a.y_sd;
    const T *Bp, *Cp;
    if constexpr (Tr::kVarBC) {
        Bp = reinterpret_cast<const T *>(a.B) + b * a.B_sb + g * a.B_sg;
        Cp = reinterpret_cast<const T *>(a.C) + b * a.C_sb + g * a.C_sg;
    } else {
        Bp = reinterpret_cast<const T *>(a.B) + d * a.B_sg;
        Cp = reinterpret_cast<const T *>(a.C) + d * a.C_sg;
    }

    float A2[SPT], h[SPT], Bc[SPT], Cc[SPT];
#pragma unroll
    for (int s = 0; s < SPT; ++s) {
        const int64_t n = int64_t(lane_g) * SPT + s;
        const bool valid = n < a.dstate;
        A2[s] = valid ? a.A[d * a.A_sd + n * a.A_sn] * kLog2e : 0.0f;
        h[s] = valid && a.has_init ? a.init[b * a.init_sb + d * a.init_sd + n * a.init_sn] : 0.0f;
        Bc[s] = Cc[s] = 0.0f;
        if constexpr (!Tr::kVarBC) {
            if (valid) {
                Bc[s] = to_f32<T>(Bp[n * a.B_sn]);
                Cc[s] = to_f32<T>(Cp[n * a.C_sn]);
            }
        }
    }
    const float Dv = a.has_D ? a.D[d * a.D_s] : 0.0f;
    const float bias = a.has_bias ? a.delta_bias[d * a.bias_s] : 0.0f;

    for (int64_t t0 = 0; t0 < a.len; t0 += CH) {
        const bool full = t0 + CH <= a.len;
        // 1. Discretize this chunk's steps, split over the group's lanes.
        if (lane_g < Tr::kActiveLanes) {
            const int k0 = lane_g * SPL;
            const int64_t t = t0 + k0;
            float uu[SPL], dl[SPL], zz[SPL];
            if (full) {
                load_floats<T, SPL>(up + t, uu, a.vec);
                load_floats<T, SPL>(dp + t, dl, a.vec);
                if (a.has_z) load_floats<T, SPL>(zp + t, zz, a.vec);
            } else {
#pragma unroll
                for (int i = 0; i < SPL; ++i) {
                    const bool in = t + i < a.len;
                    uu[i] = in ? to_f32<T>(up[t + i]) : 0.0f;
                    dl[i] = in ? to_f32<T>(dp[t + i]) : 0.0f;
                    zz[i] = in && a.has_z ? to_f32<T>(zp[t + i]) : 0.0f;
                }
            }
#pragma unroll
            for (int i = 0; i < SPL; ++i) {
                const bool in = t + i < a.len;
                float dt = dl[i] + bias;
                if (a.softplus) dt = softplus_f(dt);
                // Steps past the end leave h unchanged: decay exp2(0) = 1 and no input.
                s_dt[cl][k0 + i] = in ? dt : 0.0f;
                s_du[cl][k0 + i] = in ? dt * uu[i] : 0.0f;
                s_skip[cl][k0 + i] = Dv * uu[i];
                s_gate[cl][k0 + i] = a.has_z ? silu_f(zz[i]) : 1.0f;
            }
        }
        // 2. B and C of this lane's states for the chunk.
        float Bv[SPT][CH], Cv[SPT][CH];
        if constexpr (Tr::kVarBC) {
#pragma unroll
            for (int s = 0; s < SPT; ++s) {
                const int64_t n = int64_t(lane_g) * SPT + s;
                if (n < a.dstate && full) {
                    load_floats<T, CH>(Bp + n * a.B_sn + t0, Bv[s], a.vec);
                    load_floats<T, CH>(Cp + n * a.C_sn + t0, Cv[s], a.vec);
                } else {
#pragma unroll
                    for (int k = 0; k < CH; ++k) {
                        const bool in = n < a.dstate && t0 + k < a.len;
                        Bv[s][k] = in ? to_f32<T>(Bp[n * a.B_sn + t0 + k]) : 0.0f;
                        Cv[s][k] = in ? to_f32<T>(Cp[n * a.C_sn + t0 + k]) : 0.0f;
                    }
                }
            }
        }
        __syncwarp();
        // 3. The recurrence over the chunk's steps.
#pragma unroll
        for (int k = 0; k < CH; ++k) {
            const float dt = s_dt[cl][k], du = s_du[cl][k];
            float acc = 0.0f;
#pragma unroll
            for (int s = 0; s < SPT; ++s) {
                const float Bk = Tr::kVarBC ? Bv[s][k] : Bc[s];
                const float Ck = Tr::kVarBC ? Cv[s][k] : Cc[s];
                h[s] = exp2f(dt * A2[s]) * h[s] + du * Bk;
                acc += Ck * h[s];
            }
#pragma unroll
            for (int o = G / 2; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
            if (lane_g == 0) s_y[cl][k] = (acc + s_skip[cl][k]) * s_gate[cl][k];
        }
        __syncwarp();
        // 4. Write y for the chunk.
        if (lane_g < Tr::kActiveLanes && channel_valid) {
            const int k0 = lane_g * SPL;
            const int64_t t = t0 + k0;
            float out[SPL];
#pragma unroll
            for (int i = 0; i < SPL; ++i) out[i] = s_y[cl][k0 + i];
            if (full) {
                store_floats<T, SPL>(yp + t, out, a.vec);
            } else {
#pragma unroll
                for (int i = 0; i < SPL; ++i)
                    if (t + i < a.len) yp[t + i] = from_f32<T>(out[i]);
            }
        }
        __syncwarp();
    }
    if (a.has_fin && channel_valid) {
#pragma unroll
        for (int s = 0; s < SPT; ++s) {
            const int64_t n = int64_t(lane_g) * SPT + s;
            if (n < a.dstate) a.fin[b * a.fin_sb + d * a.fin_sd + n * a.fin_sn] = h[s];
        }
    }
}

template <class Tr>
void launch_scan(mamba_context & ctx, const ScanArgs & a, int64_t batch) {
    if (batch > 65535) fail(MAMBA_STATUS_UNSUPPORTED, "selective_scan on CUDA supports batch <= 65535");
    const dim3 grid(unsigned(ceil_div(a.dim, Tr::kChannels)), unsigned(batch));
    selective_scan_kernel<Tr><<<grid, Tr::kThreads, 0, stream_of(ctx)>>>(a);
    MAMBA_CUDA_CHECK_LAUNCH("selective_scan_kernel");
}

template <class T, bool kVar>
void dispatch_scan_config(mamba_context & ctx, const ScanArgs & a, int64_t batch) {
    const int64_t N = a.dstate;
    // Fewer lanes per channel when there are channels enough to fill the device; more otherwise.
    const bool many_channels = batch * a.dim >= 8 * 132 * 128 / 4;
    if (N <= 4) launch_scan<ScanTraits<T, 4, 1, kVar>>(ctx, a, batch);
    else if (N <= 8) launch_scan<ScanTraits<T, 4, 2, kVar>>(ctx, a, batch);
    else if (N <= 16 && many_channels) launch_scan<ScanTraits<T, 4, 4, kVar>>(ctx, a, batch);
    else if (N <= 16) launch_scan<ScanTraits<T, 2, 8, kVar>>(ctx, a, batch);
    else if (N <= 32) launch_scan<ScanTraits<T, 4, 8, kVar>>(ctx, a, batch);
    else if (N <= 64) launch_scan<ScanTraits<T, 4, 16, kVar>>(ctx, a, batch);
    else if (N <= 128) launch_scan<ScanTraits<T, 4, 32, kVar>>(ctx, a, batch);
    else launch_scan<ScanTraits<T, 8, 32, kVar>>(ctx, a, batch);
}

template <class T>
void dispatch_scan(mamba_context & ctx, const ScanArgs & a, int64_t batch, bool variable) {
    if (variable) dispatch_scan_config<T, true>(ctx, a, batch);
    else dispatch_scan_config<T, false>(ctx, a, batch);
}

// Defined in selective_scan_<type>.cu.
void run_bf16(mamba_context & ctx, const ScanArgs & a, int64_t batch, bool variable);
void run_f16(mamba_context & ctx, const ScanArgs & a, int64_t batch, bool variable);
void run_f32(mamba_context & ctx, const ScanArgs & a, int64_t batch, bool variable);

}  // namespace mamba::cuda::scan
