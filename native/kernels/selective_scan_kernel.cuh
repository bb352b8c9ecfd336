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


// ---- one thread per channel ---------------------------------------------------------------------
// For many channels and dstate <= 16: each thread owns a whole channel (16 recurrences in registers),
// so no lane reduction is needed, and the block's channels share one group's B and C, staged per chunk
// in shared memory as float [step][state] and read back as broadcast float4s. u, delta and z of the
// next chunk are loaded (16 bytes a tensor) while the current chunk runs.
// Requires: variable B/C, every block inside one group, 16-byte aligned rows, len % 8 == 0.
struct ChannelScanTraits {
    static constexpr int kThreads = 64;  // channels per block
    static constexpr int kN = 16;        // states per channel (padded)
    static constexpr int kChunk = 8;
};

template <class T>
__global__ void __launch_bounds__(ChannelScanTraits::kThreads) selective_scan_channel_kernel(ScanArgs a) {
    constexpr int N = ChannelScanTraits::kN, CH = ChannelScanTraits::kChunk, kThreads = ChannelScanTraits::kThreads;
    __shared__ __align__(16) float s_B[2][CH][N];
    __shared__ __align__(16) float s_C[2][CH][N];

    const int64_t b = blockIdx.y;
    const int64_t d_first = int64_t(blockIdx.x) * kThreads;
    const int64_t d_raw = d_first + threadIdx.x;
    const bool channel_valid = d_raw < a.dim;
    const int64_t d = channel_valid ? d_raw : a.dim - 1;
    const int64_t g = d_first / a.channels_per_group;  // the whole block is in one group

    const T * up = reinterpret_cast<const T *>(a.u) + b * a.u_sb + d * a.u_sd;
    const T * dp = reinterpret_cast<const T *>(a.delta) + b * a.dl_sb + d * a.dl_sd;
    const T * zp = a.has_z ? reinterpret_cast<const T *>(a.z) + b * a.z_sb + d * a.z_sd : nullptr;
    T * yp = reinterpret_cast<T *>(a.y) + b * a.y_sb + d * a.y_sd;
    const T * Bp = reinterpret_cast<const T *>(a.B) + b * a.B_sb + g * a.B_sg;
    const T * Cp = reinterpret_cast<const T *>(a.C) + b * a.C_sb + g * a.C_sg;

    float A2[N], h[N];
#pragma unroll
    for (int n = 0; n < N; ++n) {
        const bool valid = n < a.dstate;
        A2[n] = valid ? a.A[d * a.A_sd + n * a.A_sn] * kLog2e : 0.0f;
        h[n] = valid && a.has_init ? a.init[b * a.init_sb + d * a.init_sd + n * a.init_sn] : 0.0f;
    }
    const float Dv = a.has_D ? a.D[d * a.D_s] : 0.0f;
    const float bias = a.has_bias ? a.delta_bias[d * a.bias_s] : 0.0f;

    // Staging role: threads 0..15 load a B row's chunk, 16..31 a C row's (16 bytes or two).
    const int stage_n = threadIdx.x & 15;
    const bool stage_c = threadIdx.x >= 16 && threadIdx.x < 32;
    const bool stager = threadIdx.x < 32;
    const T * stage_row = stage_c ? Cp + stage_n * a.C_sn : Bp + stage_n * a.B_sn;
    const bool stage_valid = stage_n < a.dstate;

    float un[CH], dn[CH], zn[CH];
    load_floats<T, CH>(up, un, true);
    load_floats<T, CH>(dp, dn, true);
    if (a.has_z) load_floats<T, CH>(zp, zn, true);
    const int64_t chunks = a.len / CH;
    for (int64_t c = 0; c < chunks; ++c) {
        const int64_t t0 = c * CH;
        const int buf = int(c & 1);
        float uu[CH], dl[CH], zz[CH];
#pragma unroll
        for (int k = 0; k < CH; ++k) {
            uu[k] = un[k];
            dl[k] = dn[k];
            zz[k] = a.has_z ? zn[k] : 0.0f;
        }
        if (stager) {
            float v[CH];
            if (stage_valid) load_floats<T, CH>(stage_row + t0, v, true);
#pragma unroll
            for (int k = 0; k < CH; ++k) {
                const float x = stage_valid ? v[k] : 0.0f;
                if (stage_c) s_C[buf][k][stage_n] = x;
                else s_B[buf][k][stage_n] = x;
            }
        }
        if (c + 1 < chunks) {
            load_floats<T, CH>(up + t0 + CH, un, true);
            load_floats<T, CH>(dp + t0 + CH, dn, true);
            if (a.has_z) load_floats<T, CH>(zp + t0 + CH, zn, true);
        }
        __syncthreads();
        float out[CH];
#pragma unroll
        for (int k = 0; k < CH; ++k) {
            float dt = dl[k] + bias;
            if (a.softplus) dt = softplus_f(dt);
            const float du = dt * uu[k];
            const float4 * Bq = reinterpret_cast<const float4 *>(s_B[buf][k]);
            const float4 * Cq = reinterpret_cast<const float4 *>(s_C[buf][k]);
            float acc0 = 0.0f, acc1 = 0.0f;
#pragma unroll
            for (int q = 0; q < N / 4; ++q) {
                const float4 Bv = Bq[q], Cv = Cq[q];
                h[4 * q + 0] = exp2f(dt * A2[4 * q + 0]) * h[4 * q + 0] + du * Bv.x;
                h[4 * q + 1] = exp2f(dt * A2[4 * q + 1]) * h[4 * q + 1] + du * Bv.y;
                h[4 * q + 2] = exp2f(dt * A2[4 * q + 2]) * h[4 * q + 2] + du * Bv.z;
                h[4 * q + 3] = exp2f(dt * A2[4 * q + 3]) * h[4 * q + 3] + du * Bv.w;
                acc0 += Cv.x * h[4 * q + 0] + Cv.z * h[4 * q + 2];
                acc1 += Cv.y * h[4 * q + 1] + Cv.w * h[4 * q + 3];
            }
            float y = acc0 + acc1 + Dv * uu[k];
            if (a.has_z) y *= silu_f(zz[k]);
            out[k] = y;
        }
        if (channel_valid) store_floats<T, CH>(yp + t0, out, true);
    }
    if (a.has_fin && channel_valid) {
#pragma unroll
        for (int n = 0; n < N; ++n)
            if (n < a.dstate) a.fin[b * a.fin_sb + d * a.fin_sd + n * a.fin_sn] = h[n];
    }
}

template <class T>
bool try_channel_scan(mamba_context & ctx, const ScanArgs & a, int64_t batch, bool variable) {
    constexpr int kThreads = ChannelScanTraits::kThreads;
    const bool one_group_per_block = a.channels_per_group % kThreads == 0 || a.channels_per_group >= a.dim;
    const bool enough_channels = batch * a.dim >= 16384;
    if (!variable || !a.vec || a.dstate > ChannelScanTraits::kN || a.len % ChannelScanTraits::kChunk != 0 || a.len == 0 || !one_group_per_block ||
        !enough_channels || batch > 65535)
        return false;
    const dim3 grid(unsigned(ceil_div(a.dim, kThreads)), unsigned(batch));
    selective_scan_channel_kernel<T><<<grid, kThreads, 0, stream_of(ctx)>>>(a);
    MAMBA_CUDA_CHECK_LAUNCH("selective_scan_channel_kernel");
    return true;
}

template <class T>
void dispatch_scan(mamba_context & ctx, const ScanArgs & a, int64_t batch, bool variable) {
    if (fast_paths_enabled() && try_channel_scan<T>(ctx, a, batch, variable)) return;
    if (variable) dispatch_scan_config<T, true>(ctx, a, batch);
    else dispatch_scan_config<T, false>(ctx, a, batch);
}

// Defined in selective_scan_<type>.cu.
void run_bf16(mamba_context & ctx, const ScanArgs & a, int64_t batch, bool variable);
void run_f16(mamba_context & ctx, const ScanArgs & a, int64_t batch, bool variable);
void run_f32(mamba_context & ctx, const ScanArgs & a, int64_t batch, bool variable);

}  // namespace mamba::cuda::scan
