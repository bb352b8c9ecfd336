// Mamba-1 selective scan (mamba_selective_scan); the decode step lives in selective_state_update.cu.
//
// Scan: one fused pass. Each channel (b, d) is owned by G consecutive lanes, each holding kSPT of the
// dstate recurrences in registers for the whole sequence. The sequence is walked in chunks of 8 steps:
// the group's lanes first discretize the chunk (dt = softplus(delta + bias), dt*u, D*u, silu(z)) into
// shared memory, each lane loads B and C of its states for the chunk with 16-byte loads, then the 8
// steps run with exp2 of the pre-scaled A (A*log2 e), the C contraction reduced across the G lanes by
// shuffles, and y leaves through shared memory with vector stores. Fast path (MAMBA_CUDA_FAST_PATHS=1,
// not yet run on a GPU): one thread per channel with all 16 states, B/C broadcast from shared memory.
// Bytes: batch*dim*len*(u + delta + z + y) + batch*groups*dstate*len*(B + C) (+ states).
// FLOPs: about 6 per (b, d, t, n) (exp2, 2 FMA for h, 1 FMA for y) + per-step discretization.
#include "common.cuh"
#include "selective_scan_kernel.cuh"
#include "ops/selective_scan.h"

namespace mamba::cuda {

namespace {

bool aligned16(const void * p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

}  // namespace

// Inputs the fast kernel cannot read directly (mixed dtypes, a strided time axis, float16/bfloat16
// parameters) are converted into workspace copies first.
void selective_scan(mamba_context & ctx, const SelectiveScanParams & p) {
    if (p.batch == 0 || p.dim == 0) return;
    const bool var = p.variable_bc;
    const int last = 2;  // time axis of u, delta, z, y
    // One element type for the streamed tensors, else float32 for all of them.
    bool uniform = p.delta.dtype == p.u.dtype && p.y.dtype == p.u.dtype && (!p.z || p.z->dtype == p.u.dtype) &&
                   (!var || (p.B.dtype == p.u.dtype && p.C.dtype == p.u.dtype));
    const DType T = uniform ? p.u.dtype : DType::F32;
    auto needs_stage = [&](const Tensor & t, int time_axis, DType want) {
        return t.dtype != want || (time_axis >= 0 && t.shape[time_axis] > 1 && t.stride[time_axis] != 1);
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
    a.delta = dl.data;
    a.dl_sb = dl.stride[0];
    a.dl_sd = dl.stride[1];
    a.has_z = p.z.has_value();
    if (a.has_z) {
        const Tensor & z = views[iz];
        a.z = z.data;
        a.z_sb = z.stride[0];
        a.z_sd = z.stride[1];
    }
    a.y = y.data;
    a.y_sb = y.stride[0];
    a.y_sd = y.stride[1];
    a.B = B.data;
    a.C = C.data;
    if (var) {
        a.B_sb = B.stride[0];
        a.B_sg = B.stride[1];
        a.B_sn = B.stride[2];
        a.C_sb = C.stride[0];
        a.C_sg = C.stride[1];
        a.C_sn = C.stride[2];
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
    a.vec = rows_aligned(a.u, {a.u_sb, a.u_sd}) && rows_aligned(a.delta, {a.dl_sb, a.dl_sd}) && rows_aligned(a.y, {a.y_sb, a.y_sd}) &&
            (!a.has_z || rows_aligned(a.z, {a.z_sb, a.z_sd})) &&
            (!var || (rows_aligned(a.B, {a.B_sb, a.B_sg, a.B_sn}) && rows_aligned(a.C, {a.C_sb, a.C_sg, a.C_sn})));

    switch (T) {
        case DType::BF16: scan::run_bf16(ctx, a, p.batch, var); break;
        case DType::F16: scan::run_f16(ctx, a, p.batch, var); break;
        default: scan::run_f32(ctx, a, p.batch, var); break;
    }
    if (y_stage) copy_tensor(ctx, y, p.y);
    if (fin_stage) copy_tensor(ctx, *fin, *p.final_state);
}

}  // namespace mamba::cuda
