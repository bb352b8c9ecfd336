// Mamba-1 selective scan (mamba_selective_scan) and its decode step (mamba_selective_state_update).
//
// Scan: one fused pass per sequence segment (design, bytes and FLOPs in selective_scan_kernel.cuh).
// Main path: one thread per channel, all dstate <= 16 recurrences in registers, the sequence split
// into parallel segments when batch * dim is small. General path (dstate > 16, time-invariant B/C,
// unaligned rows, groups narrower than a block): G lanes per channel reduced by shuffles.
//
// State update: one step of the same recurrence, G lanes per channel, float32 state read and written
// once. Bytes: 2 * batch*dim*dstate*4 + small vectors; FLOPs: 6 per state.
#include "common.cuh"
#include "selective_scan_kernel.cuh"
#include "ops/selective_scan.h"

namespace mamba::cuda {

namespace {

bool aligned16(const void * p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

}  // namespace

// Inputs the kernels cannot read directly (mixed dtypes, a strided time axis on the general path, 16-bit
// parameters) are converted into workspace copies first.
void selective_scan(mamba_context & ctx, const SelectiveScanParams & p) {
    if (p.batch == 0 || p.dim == 0) return;
    const bool var = p.variable_bc;
    const int last = 2;  // time axis of u, delta, z, y
    // One element type for the streamed tensors, else float32 for all of them.
    bool uniform = p.delta.dtype == p.u.dtype && p.y.dtype == p.u.dtype && (!p.z || p.z->dtype == p.u.dtype) &&
                   (!var || (p.B.dtype == p.u.dtype && p.C.dtype == p.u.dtype));
    const DType T = uniform ? p.u.dtype : DType::F32;
    // The channel path reads any strides; the general kernel needs a unit time stride.
    const bool channel_path = scan::channel_scan_supported(p.batch, p.dim, p.len, p.dstate, var ? p.dim / p.groups : 1, var);
    auto needs_stage = [&](const Tensor & t, int time_axis, DType want) {
        return t.dtype != want || (!channel_path && time_axis >= 0 && t.shape[time_axis] > 1 && t.stride[time_axis] != 1);
    };
    WorkspaceCarver carver;
    struct Plan {
        const Tensor * src;
        DType want;
        size_t off;
        bool stage;
    };
    std::vector<Plan> plans;
    auto plan = [&](const Tensor * t, int time_axis, DType want) {
        const bool st = needs_stage(*t, time_axis, want);
        plans.push_back({t, want, st ? carver.add(size_t(t->numel()) * dtype_size(want)) : 0, st});
        return plans.size() - 1;
    };
    const size_t iu = plan(&p.u, last, T), idl = plan(&p.delta, last, T);
    const size_t iB = plan(&p.B, var ? 3 : -1, T), iC = plan(&p.C, var ? 3 : -1, T);
    const size_t iz = p.z ? plan(&*p.z, last, T) : size_t(-1);
    const size_t iA = plan(&p.A, -1, DType::F32);
    const size_t iD = p.D ? plan(&*p.D, -1, DType::F32) : size_t(-1);
    const size_t ib = p.delta_bias ? plan(&*p.delta_bias, -1, DType::F32) : size_t(-1);
    const size_t ii = p.initial_state ? plan(&*p.initial_state, -1, DType::F32) : size_t(-1);
    const bool y_stage = needs_stage(p.y, last, T);
    const size_t y_off = y_stage ? carver.add(size_t(p.y.numel()) * dtype_size(T)) : 0;
    const bool fin_stage = p.final_state && p.final_state->dtype != DType::F32;
    const size_t fin_off = fin_stage ? carver.add(size_t(p.final_state->numel()) * 4) : 0;
    // Segment states of a split sequence (see selective_scan_kernel.cuh), reserved whenever a split
    // could be chosen; 16 states a slot, whatever the dstate.
    constexpr int kSegChunk = scan::ChannelScanTraits<float, 16>::kChunk;
    const int64_t seg_len = scan::scan_segment_len(p.batch, p.dim, p.len, kSegChunk, state_of(ctx).multiprocessors);
    const int64_t nseg = p.len > 0 ? ceil_div(p.len, seg_len) : 1;
    const bool split = channel_path && nseg > 1;
    const size_t seg_state_off = split ? carver.add(size_t(p.batch * nseg * 16 * p.dim) * 4) : 0;
    const size_t seg_dt_off = split ? carver.add(size_t(p.batch * nseg * p.dim) * 4) : 0;
    char * ws = carver.take(ctx);
    std::vector<Tensor> views(plans.size());
    for (size_t i = 0; i < plans.size(); ++i) {
        if (plans[i].stage) {
            views[i] = contiguous_like(ws + plans[i].off, plans[i].want, *plans[i].src);
            copy_tensor(ctx, *plans[i].src, views[i]);
        } else {
            views[i] = *plans[i].src;
        }
    }
    const Tensor y = y_stage ? contiguous_like(ws + y_off, T, p.y) : p.y;
    const std::optional<Tensor> fin = p.final_state ? std::optional<Tensor>(fin_stage ? contiguous_like(ws + fin_off, DType::F32, *p.final_state) : *p.final_state)
                                                    : std::nullopt;

    const Tensor &u = views[iu], &dl = views[idl], &B = views[iB], &C = views[iC], &A = views[iA];
    scan::ScanArgs a{};
    a.u = u.data;
    a.u_sb = u.stride[0];
    a.u_sd = u.stride[1];
    a.u_st = u.stride[2];
    a.delta = dl.data;
    a.dl_sb = dl.stride[0];
    a.dl_sd = dl.stride[1];
    a.dl_st = dl.stride[2];
    a.has_z = p.z.has_value();
    if (a.has_z) {
        const Tensor & z = views[iz];
        a.z = z.data;
        a.z_sb = z.stride[0];
        a.z_sd = z.stride[1];
        a.z_st = z.stride[2];
    }
    a.y = y.data;
    a.y_sb = y.stride[0];
    a.y_sd = y.stride[1];
    a.y_st = y.stride[2];
    a.B = B.data;
    a.C = C.data;
    if (var) {
        a.B_sb = B.stride[0];
        a.B_sg = B.stride[1];
        a.B_sn = B.stride[2];
        a.C_sb = C.stride[0];
        a.C_sg = C.stride[1];
        a.C_sn = C.stride[2];
        a.B_st = B.stride[3];
        a.C_st = C.stride[3];
    } else {
        a.B_sg = B.stride[0];
        a.B_sn = B.stride[1];
        a.C_sg = C.stride[0];
        a.C_sn = C.stride[1];
    }
    a.A = A.ptr<float>();
    a.A_sd = A.stride[0];
    a.A_sn = A.stride[1];
    a.has_D = p.D.has_value();
    if (a.has_D) {
        a.D = views[iD].ptr<float>();
        a.D_s = views[iD].stride[0];
    }
    a.has_bias = p.delta_bias.has_value();
    if (a.has_bias) {
        a.delta_bias = views[ib].ptr<float>();
        a.bias_s = views[ib].stride[0];
    }
    a.has_init = p.initial_state.has_value();
    if (a.has_init) {
        const Tensor & s = views[ii];
        a.init = s.ptr<float>();
        a.init_sb = s.stride[0];
        a.init_sd = s.stride[1];
        a.init_sn = s.stride[2];
    }
    a.has_fin = fin.has_value();
    if (a.has_fin) {
        a.fin = fin->ptr<float>();
        a.fin_sb = fin->stride[0];
        a.fin_sd = fin->stride[1];
        a.fin_sn = fin->stride[2];
    }
    a.dim = p.dim;
    a.len = p.len;
    a.dstate = p.dstate;
    a.channels_per_group = var ? p.dim / p.groups : 1;
    a.softplus = p.delta_softplus;
    // 16-byte loads need 16-byte aligned rows: base pointers and every row stride.
    const int64_t vec_elems = 16 / int64_t(dtype_size(T));
    auto rows_aligned = [&](const void * ptr, std::initializer_list<int64_t> strides) {
        if (!aligned16(ptr)) return false;
        for (int64_t s : strides)
            if (s % vec_elems != 0) return false;
        return true;
    };
    // A time axis of length 1 has any stride; it counts as unit.
    auto unit = [&](const Tensor & t, int axis) { return t.shape[axis] <= 1 || t.stride[axis] == 1; };
    const bool unit_time = unit(u, 2) && unit(dl, 2) && unit(y, 2) && (!a.has_z || unit(views[iz], 2)) && (!var || (unit(B, 3) && unit(C, 3)));
    a.vec = unit_time && rows_aligned(a.u, {a.u_sb, a.u_sd}) && rows_aligned(a.delta, {a.dl_sb, a.dl_sd}) && rows_aligned(a.y, {a.y_sb, a.y_sd}) &&
            (!a.has_z || rows_aligned(a.z, {a.z_sb, a.z_sd})) &&
            (!var || (rows_aligned(a.B, {a.B_sb, a.B_sg, a.B_sn}) && rows_aligned(a.C, {a.C_sb, a.C_sg, a.C_sn})));

    a.nseg = split ? nseg : 1;
    a.seg_len = split ? seg_len : p.len;
    if (split) {
        a.seg_state = reinterpret_cast<float *>(ws + seg_state_off);
        a.seg_dt_sum = reinterpret_cast<float *>(ws + seg_dt_off);
    }

    switch (T) {
        case DType::BF16: scan::run_bf16(ctx, a, p.batch, var); break;
        case DType::F16: scan::run_f16(ctx, a, p.batch, var); break;
        default: scan::run_f32(ctx, a, p.batch, var); break;
    }
    if (y_stage) copy_tensor(ctx, y, p.y);
    if (fin_stage) copy_tensor(ctx, *fin, *p.final_state);
}

// ---- decode step ------------------------------------------------------------------------------

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
