// Mamba-1 decode step (mamba_selective_state_update): one step of the selective scan recurrence,
// float32 state read once and written once.
// Bytes: 2 * batch*dim*dstate*4 (state) + dim*dstate*4 (A, float32) + small vectors; FLOPs: 6 per state.
// Design: dstate/4 consecutive lanes (a power of two) own one channel, each lane one float4 of the state
// and of A per pass (16-byte loads and stores with streaming hints when state and A rows are aligned
// with unit stride and dstate % 4 == 0, element accesses otherwise); the state and A loads are issued
// before the per-channel scalars and B, C (four loads at a time behind one dtype switch); y is reduced
// over the channel's lanes by shuffles.
#include "common.cuh"
#include "launch.cuh"
#include "ops/selective_scan.h"

namespace mamba::cuda {

namespace {

struct StateUpdateArgs {
    float * state;
    AnyPtr x, dt, B, C, z, y;
    const float *A, *D, *dt_bias;
    int64_t st_sb, st_sd, st_sn;
    int64_t x_sb, x_sd, dt_sb, dt_sd, z_sb, z_sd, y_sb, y_sd;
    int64_t B_sb, B_sg, B_sn, C_sb, C_sg, C_sn;
    int64_t A_sd, A_sn, D_s, bias_s;
    int64_t batch, dim, dstate, channels_per_group;
    int lanes_per_channel;
    bool softplus, has_D, has_z, has_bias;
};

template <bool kVecStateAndA>
struct SelectiveUpdateTraits {
    static constexpr bool kVec = kVecStateAndA;  // state and A rows: unit stride, 16-byte aligned, dstate % 4 == 0
    static constexpr int kThreads = 256;
    static constexpr int kStatesPerLane = 4;     // one float4 of state and of A per lane and pass
};

// Four consecutive elements i0, i0 + stride, ... of a run-time-typed vector, the dtype switch taken once
// so that the four loads are issued together.
__device__ __forceinline__ void load4(const AnyPtr & p, int64_t i0, int64_t stride, int64_t count, float (&v)[4]) {
    switch (p.dtype) {
        case int(DType::F16): {
            const f16_t * q = reinterpret_cast<const f16_t *>(p.p);
#pragma unroll
            for (int i = 0; i < 4; ++i) v[i] = i < count ? __half2float(q[i0 + i * stride]) : 0.0f;
            break;
        }
        case int(DType::BF16): {
            const bf16_t * q = reinterpret_cast<const bf16_t *>(p.p);
#pragma unroll
            for (int i = 0; i < 4; ++i) v[i] = i < count ? __bfloat162float(q[i0 + i * stride]) : 0.0f;
            break;
        }
        default: {
            const float * q = reinterpret_cast<const float *>(p.p);
#pragma unroll
            for (int i = 0; i < 4; ++i) v[i] = i < count ? q[i0 + i * stride] : 0.0f;
            break;
        }
    }
}

// G = lanes_per_channel consecutive lanes (a power of two) own one channel; lane j owns the states
// n = 4j + 4G*k (k = 0, 1, ... while n < dstate), one float4 of state and of A at a time.
template <class Tr>
__global__ void __launch_bounds__(Tr::kThreads) selective_state_update_kernel(StateUpdateArgs a) {
    const int G = a.lanes_per_channel;
    const int lane_g = threadIdx.x % G;
    const int64_t ch = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / G;
    const bool valid_ch = ch < a.batch * a.dim;
    const int64_t c = valid_ch ? ch : a.batch * a.dim - 1;
    const int64_t b = c / a.dim, d = c % a.dim, g = d / a.channels_per_group;
    float * st = a.state + b * a.st_sb + d * a.st_sd;
    const float * A = a.A + d * a.A_sd;
    const int64_t N = a.dstate;
    // PDL-safe (launch.cuh): only index math above; every input may come from the previous kernel.
    wait_for_producer();
    allow_dependents();

    // First pass: state and A loads issued before the small vectors.
    int64_t n0 = int64_t(lane_g) * Tr::kStatesPerLane;
    float s[4], Av[4];
    auto load_pass = [&](int64_t n) {
        if (Tr::kVec && n < N) {
            const float4 sv = __ldcs(reinterpret_cast<const float4 *>(st + n));
            const float4 av = *reinterpret_cast<const float4 *>(A + n);
            s[0] = sv.x, s[1] = sv.y, s[2] = sv.z, s[3] = sv.w;
            Av[0] = av.x, Av[1] = av.y, Av[2] = av.z, Av[3] = av.w;
        } else {
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                s[i] = n + i < N ? st[(n + i) * a.st_sn] : 0.0f;
                Av[i] = n + i < N ? A[(n + i) * a.A_sn] : 0.0f;
            }
        }
    };
    load_pass(n0);
    float dt = a.dt.load(b * a.dt_sb + d * a.dt_sd);
    if (a.has_bias) dt += a.dt_bias[d * a.bias_s];
    if (a.softplus) dt = softplus_f(dt);
    const float x = a.x.load(b * a.x_sb + d * a.x_sd);
    const float dtx = dt * x;
    float acc = 0.0f;
    for (;;) {
        float Bn[4], Cn[4];
        const int64_t count = N - n0;
        load4(a.B, b * a.B_sb + g * a.B_sg + n0 * a.B_sn, a.B_sn, count, Bn);
        load4(a.C, b * a.C_sb + g * a.C_sg + n0 * a.C_sn, a.C_sn, count, Cn);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            s[i] = __expf(dt * Av[i]) * s[i] + dtx * Bn[i];
            acc += Cn[i] * s[i];
        }
        if (valid_ch && n0 < N) {
            if (Tr::kVec) {
                __stcs(reinterpret_cast<float4 *>(st + n0), make_float4(s[0], s[1], s[2], s[3]));
            } else {
#pragma unroll
                for (int i = 0; i < 4; ++i)
                    if (n0 + i < N) st[(n0 + i) * a.st_sn] = s[i];
            }
        }
        n0 += int64_t(G) * Tr::kStatesPerLane;
        if (n0 - int64_t(lane_g) * Tr::kStatesPerLane >= N) break;  // uniform over the channel's lanes
        load_pass(n0);
    }
    for (int o = G / 2; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if (lane_g == 0 && valid_ch) {
        float out = acc + (a.has_D ? a.D[d * a.D_s] * x : 0.0f);
        if (a.has_z) out *= silu_f(a.z.load(b * a.z_sb + d * a.z_sd));
        a.y.store(b * a.y_sb + d * a.y_sd, out);
    }
}

}  // namespace

void selective_state_update(mamba_context & ctx, const SelectiveStateUpdateParams & p) {
    if (p.batch == 0 || p.dim == 0) return;
    // Float32 parameters are read directly; others are converted first.
    WorkspaceCarver carver;
    auto need = [](const std::optional<Tensor> & t) { return t && t->dtype != DType::F32; };
    const size_t oA = p.A.dtype != DType::F32 ? carver.add(size_t(p.A.numel()) * 4) : 0;
    const size_t oD = need(p.D) ? carver.add(size_t(p.D->numel()) * 4) : 0;
    const size_t ob = need(p.dt_bias) ? carver.add(size_t(p.dt_bias->numel()) * 4) : 0;
    char * ws = carver.take(ctx);
    auto as_f32 = [&](const Tensor & t, size_t off) {
        if (t.dtype == DType::F32) return t;
        Tensor v = contiguous_like(ws + off, DType::F32, t);
        copy_tensor(ctx, t, v);
        return v;
    };
    if (p.state.dtype != DType::F32) fail(MAMBA_STATUS_UNSUPPORTED, "argument 'state' must be float32 on CUDA");
    StateUpdateArgs a{};
    a.state = p.state.ptr<float>();
    a.st_sb = p.state.stride[0];
    a.st_sd = p.state.stride[1];
    a.st_sn = p.state.stride[2];
    a.x = any(p.x);
    a.x_sb = p.x.stride[0];
    a.x_sd = p.x.stride[1];
    a.dt = any(p.dt);
    a.dt_sb = p.dt.stride[0];
    a.dt_sd = p.dt.stride[1];
    a.B = any(p.B);
    a.B_sb = p.B.stride[0];
    a.B_sg = p.B.stride[1];
    a.B_sn = p.B.stride[2];
    a.C = any(p.C);
    a.C_sb = p.C.stride[0];
    a.C_sg = p.C.stride[1];
    a.C_sn = p.C.stride[2];
    const Tensor A = as_f32(p.A, oA);
    a.A = A.ptr<float>();
    a.A_sd = A.stride[0];
    a.A_sn = A.stride[1];
    a.has_D = p.D.has_value();
    if (a.has_D) {
        const Tensor D = as_f32(*p.D, oD);
        a.D = D.ptr<float>();
        a.D_s = D.stride[0];
    }
    a.has_bias = p.dt_bias.has_value();
    if (a.has_bias) {
        const Tensor bias = as_f32(*p.dt_bias, ob);
        a.dt_bias = bias.ptr<float>();
        a.bias_s = bias.stride[0];
    }
    a.has_z = p.z.has_value();
    if (a.has_z) {
        a.z = any(*p.z);
        a.z_sb = p.z->stride[0];
        a.z_sd = p.z->stride[1];
    }
    a.y = any(p.y);
    a.y_sb = p.y.stride[0];
    a.y_sd = p.y.stride[1];
    a.batch = p.batch;
    a.dim = p.dim;
    a.dstate = p.dstate;
    a.channels_per_group = p.dim / p.groups;
    a.softplus = p.dt_softplus;
    // One float4 of states per lane: G = dstate/4 lanes per channel (a power of two, at most 32).
    int G = 1;
    while (G < 32 && G * 4 < p.dstate) G *= 2;
    a.lanes_per_channel = G;
    auto aligned16 = [](const void * ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15u) == 0; };
    const bool vec = p.dstate % 4 == 0 && a.st_sn == 1 && a.A_sn == 1 && a.st_sb % 4 == 0 && a.st_sd % 4 == 0 && a.A_sd % 4 == 0 &&
                     aligned16(a.state) && aligned16(a.A);
    using Vec = SelectiveUpdateTraits<true>;
    using Gen = SelectiveUpdateTraits<false>;
    const int64_t total = p.batch * p.dim * G;
    const unsigned blocks = unsigned(ceil_div(total, Vec::kThreads));
    if (vec) launch_kernel(ctx, "selective_state_update_kernel", true, selective_state_update_kernel<Vec>, dim3(blocks), dim3(Vec::kThreads), 0, a);
    else launch_kernel(ctx, "selective_state_update_kernel", true, selective_state_update_kernel<Gen>, dim3(blocks), dim3(Gen::kThreads), 0, a);
    MAMBA_CUDA_CHECK_LAUNCH("selective_state_update_kernel");
}

}  // namespace mamba::cuda
