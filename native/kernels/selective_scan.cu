// Mamba-1 selective scan (mamba_selective_scan); the decode step lives in selective_state_update.cu.
//
// Scan: one fused pass per sequence segment (design, bytes and FLOPs in selective_scan_kernel.cuh).
// Main path: two lanes per channel (duo on contiguous rows and split on (b, l, d) rows by default; base:
// one thread per channel; selective_scan_lanes.cuh, selective_scan_split.cuh), all dstate <= 16
// recurrences in registers, the sequence split into parallel segments when batch * dim is small. General path (dstate > 16, time-invariant B/C,
// unaligned rows, groups narrower than a block): G lanes per channel reduced by shuffles.

#include "common.cuh"
#include "core/env_choice.h"
#include "selective_scan_dispatch.cuh"
#include "ops/selective_scan.h"

namespace mamba::cuda {

namespace {

// Kernel of the channel and rows paths: MAMBA_CUDA_SCAN_VARIANT when set (benchmarks, tests), else the default.
scan::ScanVariant scan_variant() {
    static constexpr EnvChoice<scan::ScanVariant> kChoices[] = {
        {"base", scan::ScanVariant::Base}, {"split", scan::ScanVariant::Split}, {"duo", scan::ScanVariant::Duo}};
    return env_choice("MAMBA_CUDA_SCAN_VARIANT", kChoices, scan::ScanVariant::Default);
}

}  // namespace

// Inputs the kernels cannot read directly (mixed dtypes, a strided time axis on the general path, 16-bit
// parameters) are converted into workspace copies first.
void selective_scan(mamba_context & ctx, const SelectiveScanParams & p) {
    if (p.batch == 0 || p.dim == 0) return;
    const scan::ScanVariant variant = scan_variant();  // a bad name fails before any work is queued
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
    // The workspace holds the most segments any kernel could plan: those planned for one thread a channel
    // (fewer threads, more segments). The kernel's own plan is made below, once its path is known.
    const int64_t max_seg_len = scan::scan_segment_len(p.batch, p.dim, p.len, kSegChunk, state_of(ctx).multiprocessors);
    const int64_t max_nseg = p.len > 0 ? ceil_div(p.len, max_seg_len) : 1;
    const bool may_split = channel_path && max_nseg > 1;
    const size_t seg_state_off = may_split ? carver.add(size_t(p.batch * max_nseg * 16 * p.dim) * 4) : 0;
    const size_t seg_dt_off = may_split ? carver.add(size_t(p.batch * max_nseg * p.dim) * 4) : 0;
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

    // (b, l, d) buffers: unit channel stride, 16-byte aligned time rows, dim a whole number of 16-byte
    // pieces; otherwise the channel path reads them step by step.
    auto time_rows = [&](const Tensor & t, const void * ptr, int64_t sb, int64_t st) {
        return (t.shape[1] <= 1 || t.stride[1] == 1) && rows_aligned(ptr, {sb, st});
    };
    a.rows = !a.vec && p.dim % vec_elems == 0 && time_rows(u, a.u, a.u_sb, a.u_st) && time_rows(dl, a.delta, a.dl_sb, a.dl_st) &&
             time_rows(y, a.y, a.y_sb, a.y_st) && (!a.has_z || time_rows(views[iz], a.z, a.z_sb, a.z_st));
    // B and C rows of a step: dstate contiguous elements filling the padded state count exactly.
    const int64_t padded_dstate = p.dstate <= 4 ? 4 : p.dstate <= 8 ? 8 : 16;
    a.rows_bc_vec = var && p.dstate == padded_dstate && a.B_sn == 1 && a.C_sn == 1 &&
                    rows_aligned(a.B, {a.B_sb, a.B_sg, a.B_st, p.dstate}) && rows_aligned(a.C, {a.C_sb, a.C_sg, a.C_st, p.dstate});
    a.variant = scan::resolve_scan_variant(variant, a.vec);
    a.multiprocessors = state_of(ctx).multiprocessors;
    // split and duo run 2 threads a channel (dstate 5..16), with launch bounds that keep more of them
    // resident: segments are planned for the threads the kernel launches and holds. More threads a channel
    // plan fewer segments, but more resident threads can plan more than the workspace above was sized for,
    // so the segment length is kept at least max_seg_len: never more than max_nseg segments.
    const scan::ScanThreadPlan threads = scan::scan_thread_plan(a.variant, p.dstate, a.vec, a.rows);
    const int64_t seg_len = std::max(max_seg_len, scan::scan_segment_len(p.batch, threads.lanes * p.dim, p.len, kSegChunk, state_of(ctx).multiprocessors,
                                                                         threads.resident_per_sm, threads.waves));
    const int64_t nseg = p.len > 0 ? ceil_div(p.len, seg_len) : 1;
    const bool segmented = channel_path && nseg > 1;
    a.nseg = segmented ? nseg : 1;
    a.seg_len = segmented ? seg_len : p.len;
    if (segmented) {
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

}  // namespace mamba::cuda
