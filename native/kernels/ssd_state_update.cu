// Mamba-2 decode step (mamba_ssd_state_update): one step of the SSD recurrence per (batch, head, row p):
//   dt = clamp(softplus(dt + dt_bias)); s[n] = exp(dt*A) * s[n] + dt*x[p]*B[n]; y[p] = sum_n C[n]*s[n] (+ D*x)(*silu(z)).
// The float32 state is read once and written once with 16-byte accesses; each warp owns 8 rows p and
// each lane 4 consecutive states of every 128, the state loads of all 8 rows issued first.
// Bytes: 2 * batch*heads*headdim*dstate*4 (state read + write dominate) + small vectors.
// FLOPs: about 5 per state element.
#include <cmath>

#include "common.cuh"
#include "ops/ssd.h"

namespace mamba::cuda {

namespace {

// dt_min = 0 with dt_max = +inf means no limit at all: a negative dt (no softplus) is used as it is.
bool dt_is_clamped(float dt_min, float dt_max) { return !(dt_min == 0.0f && std::isinf(dt_max) && dt_max > 0.0f); }

template <int N>
void copy4(int64_t (&dst)[N], const Tensor & t) {
    for (int i = 0; i < N; ++i) dst[i] = t.stride[i];
}

// Float32 parameter tensors are read directly; anything else is converted into the workspace.
struct F32Params {
    WorkspaceCarver carver;
    std::vector<std::pair<const Tensor *, size_t>> todo;
    void plan(const std::optional<Tensor> & t) {
        if (t && t->dtype != DType::F32) todo.push_back({&*t, carver.add(size_t(t->numel()) * 4)});
    }
    void plan(const Tensor & t) {
        if (t.dtype != DType::F32) todo.push_back({&t, carver.add(size_t(t.numel()) * 4)});
    }
    char * ws = nullptr;
    void run(mamba_context & ctx) { ws = carver.take(ctx); }
    Tensor get(mamba_context & ctx, const Tensor & t) {
        for (auto & [src, off] : todo)
            if (src == &t) {
                Tensor v = contiguous_like(ws + off, DType::F32, t);
                copy_tensor(ctx, t, v);
                return v;
            }
        return t;
    }
};

}  // namespace

namespace {

struct SsdUpdateArgs {
    float * state;
    AnyPtr x, dt, B, C, z, y;
    const float *A, *D, *dt_bias;
    int64_t st_s[4], x_s[3], dt_s[2], B_s[3], C_s[3], z_s[3], y_s[3];
    int64_t A_s, D_s0, D_s1, bias_s;
    int64_t heads, headdim, dstate, heads_per_group;
    float dt_min, dt_max;
    bool softplus, clamp, has_D, D_per_channel, has_z, has_bias, vec;
};

constexpr int kUpdateRowsPerWarp = 8;
constexpr int kUpdateWarps = 4;

// Block: (row block, head, batch). Warp w owns rows p0 .. p0+7; lane owns 4 consecutive states of
// every 128, so each float4 of the state is read and written once. The state loads of all 8 rows are
// issued first, before the small vectors, so that 8 x 16 bytes per lane are in flight.
template <bool kVec>
__global__ void __launch_bounds__(32 * kUpdateWarps) ssd_state_update_kernel(SsdUpdateArgs a) {
    constexpr int R = kUpdateRowsPerWarp;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t b = blockIdx.z, h = blockIdx.y;
    const int64_t p0 = (int64_t(blockIdx.x) * kUpdateWarps + warp) * R;
    const int64_t g = h / a.heads_per_group;
    float * rows[R];
#pragma unroll
    for (int r = 0; r < R; ++r) rows[r] = a.state + b * a.st_s[0] + h * a.st_s[1] + (p0 + r) * a.st_s[2];
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; ++r) acc[r] = 0.0f;
    float dt = 0.0f, decay = 0.0f, xv[R];
    bool first = true;
    for (int64_t n0 = int64_t(lane) * 4; n0 - int64_t(lane) * 4 < a.dstate; n0 += 128) {
        const bool in_range = n0 < a.dstate;
        float4 s[R];
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const bool ok = in_range && p0 + r < a.headdim;
            if (!ok) {
                s[r] = make_float4(0.f, 0.f, 0.f, 0.f);
            } else if (kVec) {
                s[r] = *reinterpret_cast<const float4 *>(rows[r] + n0);
            } else {
                float v[4];
                for (int i = 0; i < 4; ++i) v[i] = n0 + i < a.dstate ? rows[r][(n0 + i) * a.st_s[3]] : 0.0f;
                s[r] = make_float4(v[0], v[1], v[2], v[3]);
            }
        }
        if (first) {
            // Per (batch, head) scalars and this warp's x, while the state loads are in flight.
            dt = a.dt.load(b * a.dt_s[0] + h * a.dt_s[1]);
            if (a.has_bias) dt += a.dt_bias[h * a.bias_s];
            if (a.softplus) dt = softplus_f(dt);
            if (a.clamp) dt = fminf(fmaxf(dt, a.dt_min), a.dt_max);
            decay = __expf(dt * a.A[h * a.A_s]);
#pragma unroll
            for (int r = 0; r < R; ++r) xv[r] = p0 + r < a.headdim ? a.x.load(b * a.x_s[0] + h * a.x_s[1] + (p0 + r) * a.x_s[2]) : 0.0f;
            first = false;
        }
        float Bn[4], Cn[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const bool in = n0 + i < a.dstate;
            Bn[i] = in ? a.B.load(b * a.B_s[0] + g * a.B_s[1] + (n0 + i) * a.B_s[2]) : 0.0f;
            Cn[i] = in ? a.C.load(b * a.C_s[0] + g * a.C_s[1] + (n0 + i) * a.C_s[2]) : 0.0f;
        }
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const float dtx = dt * xv[r];
            s[r].x = decay * s[r].x + dtx * Bn[0];
            s[r].y = decay * s[r].y + dtx * Bn[1];
            s[r].z = decay * s[r].z + dtx * Bn[2];
            s[r].w = decay * s[r].w + dtx * Bn[3];
            acc[r] += Cn[0] * s[r].x + Cn[1] * s[r].y + Cn[2] * s[r].z + Cn[3] * s[r].w;
            if (!in_range || p0 + r >= a.headdim) continue;
            if (kVec) {
                *reinterpret_cast<float4 *>(rows[r] + n0) = s[r];
            } else {
                const float v[4] = {s[r].x, s[r].y, s[r].z, s[r].w};
                for (int i = 0; i < 4; ++i)
                    if (n0 + i < a.dstate) rows[r][(n0 + i) * a.st_s[3]] = v[i];
            }
        }
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
        const float total = warp_sum(acc[r]);
        const int64_t p = p0 + r;
        if (lane == r && p < a.headdim) {
            float out = total;
            if (a.has_D) out += (a.D_per_channel ? a.D[h * a.D_s0 + p * a.D_s1] : a.D[h * a.D_s0]) * xv[r];
            if (a.has_z) out *= silu_f(a.z.load(b * a.z_s[0] + h * a.z_s[1] + p * a.z_s[2]));
            a.y.store(b * a.y_s[0] + h * a.y_s[1] + p * a.y_s[2], out);
        }
    }
}

}  // namespace

void ssd_state_update(mamba_context & ctx, const SsdStateUpdateParams & p) {
    if (p.batch == 0 || p.heads == 0 || p.headdim == 0) return;
    if (p.state.dtype != DType::F32) fail(MAMBA_STATUS_UNSUPPORTED, "argument 'state' must be float32 on CUDA");
    F32Params f32;
    f32.plan(p.A);
    f32.plan(p.D);
    f32.plan(p.dt_bias);
    f32.run(ctx);
    SsdUpdateArgs a{};
    a.state = p.state.ptr<float>();
    copy4(a.st_s, p.state);
    a.x = any(p.x);
    copy4(a.x_s, p.x);
    a.dt = any(p.dt);
    copy4(a.dt_s, p.dt);
    a.B = any(p.B);
    copy4(a.B_s, p.B);
    a.C = any(p.C);
    copy4(a.C_s, p.C);
    a.y = any(p.y);
    copy4(a.y_s, p.y);
    a.has_z = p.z.has_value();
    if (a.has_z) {
        a.z = any(*p.z);
        copy4(a.z_s, *p.z);
    }
    const Tensor A = f32.get(ctx, p.A);
    a.A = A.ptr<float>();
    a.A_s = A.stride[0];
    a.has_D = p.D.has_value();
    a.D_per_channel = p.D_per_channel;
    if (a.has_D) {
        const Tensor D = f32.get(ctx, *p.D);
        a.D = D.ptr<float>();
        a.D_s0 = D.stride[0];
        a.D_s1 = D.ndim > 1 ? D.stride[1] : 0;
    }
    a.has_bias = p.dt_bias.has_value();
    if (a.has_bias) {
        const Tensor bias = f32.get(ctx, *p.dt_bias);
        a.dt_bias = bias.ptr<float>();
        a.bias_s = bias.stride[0];
    }
    a.heads = p.heads;
    a.headdim = p.headdim;
    a.dstate = p.dstate;
    a.heads_per_group = p.heads / p.groups;
    a.dt_min = p.dt_min;
    a.dt_max = p.dt_max;
    a.softplus = p.dt_softplus;
    a.clamp = dt_is_clamped(p.dt_min, p.dt_max);
    const auto st = p.state;
    a.vec = (reinterpret_cast<uintptr_t>(st.data) & 15u) == 0 && st.stride[3] == 1 && p.dstate % 4 == 0 && st.stride[0] % 4 == 0 &&
            st.stride[1] % 4 == 0 && st.stride[2] % 4 == 0;
    if (p.batch > 65535 || p.heads > 65535) fail(MAMBA_STATUS_UNSUPPORTED, "ssd_state_update on CUDA supports at most 65535 batch rows and heads");
    const dim3 grid(unsigned(ceil_div(p.headdim, kUpdateWarps * kUpdateRowsPerWarp)), unsigned(p.heads), unsigned(p.batch));
    if (a.vec) ssd_state_update_kernel<true><<<grid, 32 * kUpdateWarps, 0, stream_of(ctx)>>>(a);
    else ssd_state_update_kernel<false><<<grid, 32 * kUpdateWarps, 0, stream_of(ctx)>>>(a);
    MAMBA_CUDA_CHECK_LAUNCH("ssd_state_update_kernel");
}

}  // namespace mamba::cuda
