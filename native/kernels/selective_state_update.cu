// Mamba-1 decode step (mamba_selective_state_update): one step of the selective scan recurrence,
// G lanes per channel, float32 state read and written once.
// Bytes: 2 * batch*dim*dstate*4 + small vectors; FLOPs: 6 per state.
#include "common.cuh"
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
    int lanes_per_channel, states_per_lane;
    bool softplus, has_D, has_z, has_bias;
};

// G = lanes_per_channel consecutive lanes own one channel; lane j owns states [j*spl, (j+1)*spl).
__global__ void __launch_bounds__(256) selective_state_update_kernel(StateUpdateArgs a) {
    const int G = a.lanes_per_channel;
    const int lane_g = threadIdx.x % G;
    const int64_t ch = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / G;
    const bool valid_ch = ch < a.batch * a.dim;
    const int64_t c = valid_ch ? ch : a.batch * a.dim - 1;
    const int64_t b = c / a.dim, d = c % a.dim, g = d / a.channels_per_group;
    float dt = a.dt.load(b * a.dt_sb + d * a.dt_sd);
    if (a.has_bias) dt += a.dt_bias[d * a.bias_s];
    if (a.softplus) dt = softplus_f(dt);
    const float x = a.x.load(b * a.x_sb + d * a.x_sd);
    const float dtx = dt * x;
    float acc = 0.0f;
    float * st = a.state + b * a.st_sb + d * a.st_sd;
    for (int s = 0; s < a.states_per_lane; ++s) {
        const int64_t n = int64_t(lane_g) * a.states_per_lane + s;
        if (n >= a.dstate) break;
        const float Bn = a.B.load(b * a.B_sb + g * a.B_sg + n * a.B_sn);
        const float Cn = a.C.load(b * a.C_sb + g * a.C_sg + n * a.C_sn);
        const float hn = __expf(dt * a.A[d * a.A_sd + n * a.A_sn]) * st[n * a.st_sn] + dtx * Bn;
        if (valid_ch) st[n * a.st_sn] = hn;
        acc += Cn * hn;
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
    int G = 1;
    while (G < 32 && G * 4 < p.dstate) G *= 2;
    a.lanes_per_channel = G;
    a.states_per_lane = int(ceil_div(p.dstate, G));
    const int threads = 256;
    const int64_t total = p.batch * p.dim * G;
    selective_state_update_kernel<<<unsigned(ceil_div(total, threads)), threads, 0, stream_of(ctx)>>>(a);
    MAMBA_CUDA_CHECK_LAUNCH("selective_state_update_kernel");
}

}  // namespace mamba::cuda
