// Picks the selective scan kernel for a call: the channel path (contiguous rows) or the (b, l, d) rows
// path, each with the kernel of MAMBA_CUDA_SCAN_VARIANT (split by default, base, duo, quad, quad_regs64,
// oct, sixteen), or the general kernel
// (selective_scan_kernel.cuh).
#pragma once

#include "selective_scan_kernel.cuh"
#include "selective_scan_lanes.cuh"
#include "selective_scan_split.cuh"

namespace mamba::cuda::scan {

// Contiguous channel path, dstate padded to N: the variant's kernel for N >= 8 (split by default; duo,
// quad, quad_regs64, oct, sixteen: 2, 4, 4, 8, 16 lanes a channel), else base.
template <class T, int N>
void launch_contiguous_channel_scan(mamba_context & ctx, const ScanArgs & a, int64_t batch) {
    if constexpr (N >= 8) {
        switch (a.variant) {
            case ScanVariant::Split: launch_split_scan<SplitScanTraits<T, N>>(ctx, a, batch); return;
            case ScanVariant::Duo: launch_lanes_scan<LanesScanTraits<T, N, 2>>(ctx, a, batch); return;
            case ScanVariant::Quad: launch_lanes_scan<LanesScanTraits<T, N, 4>>(ctx, a, batch); return;
            case ScanVariant::QuadRegs64: launch_lanes_scan<LanesScanTraits<T, N, 4, 8>>(ctx, a, batch); return;
            case ScanVariant::Oct: launch_lanes_scan<LanesScanTraits<T, N, 8>>(ctx, a, batch); return;
            case ScanVariant::Sixteen: launch_lanes_scan<LanesScanTraits<T, N, 16>>(ctx, a, batch); return;
            case ScanVariant::Base: break;
        }
    }
    launch_channel_scan<ChannelScanTraits<T, N>, true>(ctx, a, batch);
}

// (b, l, d) rows path, dstate padded to N: the variant's kernel for N >= 8 (split by default; duo for
// 16-bit types only, float32 duo runs split; quad and quad_regs64 are the same kernel here), else base.
template <class T, int N>
void launch_rows_path_scan(mamba_context & ctx, const ScanArgs & a, int64_t batch) {
    if constexpr (N >= 8) {
        switch (a.variant) {
            case ScanVariant::Split: launch_split_rows_scan<SplitRowsScanTraits<T, N>>(ctx, a, batch); return;
            case ScanVariant::Duo:
                if constexpr (sizeof(T) == 2) launch_lanes_rows_scan<LanesRowsScanTraits<T, N, 2>>(ctx, a, batch);
                else launch_split_rows_scan<SplitRowsScanTraits<T, N>>(ctx, a, batch);
                return;
            case ScanVariant::Quad:
            case ScanVariant::QuadRegs64: launch_lanes_rows_scan<LanesRowsScanTraits<T, N, 4>>(ctx, a, batch); return;
            case ScanVariant::Oct: launch_lanes_rows_scan<LanesRowsScanTraits<T, N, 8>>(ctx, a, batch); return;
            case ScanVariant::Sixteen: launch_lanes_rows_scan<LanesRowsScanTraits<T, N, 16>>(ctx, a, batch); return;
            case ScanVariant::Base: break;
        }
    }
    launch_rows_scan<RowsScanTraits<T, N>>(ctx, a, batch);
}

// Threads a channel and resident threads an SM of the kernel that runs a call, for planning its
// segments (scan_segment_len): must follow the two launchers above.
struct ScanThreadPlan {
    int64_t lanes, resident_per_sm;
};
template <class Tr>
constexpr ScanThreadPlan lanes_thread_plan() {
    return {Tr::kLanes, Tr::kResidentThreads};
}
template <int N>
ScanThreadPlan lanes_thread_plan_for(ScanVariant v, bool contiguous, bool wide_elems) {
    constexpr ScanThreadPlan kSplit{2, kResidentThreadsPerSM};
    switch (v) {
        case ScanVariant::Duo:
            if (contiguous) return lanes_thread_plan<LanesScanTraits<float, N, 2>>();
            return wide_elems ? kSplit : lanes_thread_plan<LanesRowsScanTraits<bf16_t, N, 2>>();
        case ScanVariant::Quad: return contiguous ? lanes_thread_plan<LanesScanTraits<float, N, 4>>() : lanes_thread_plan<LanesRowsScanTraits<float, N, 4>>();
        case ScanVariant::QuadRegs64:
            return contiguous ? lanes_thread_plan<LanesScanTraits<float, N, 4, 8>>() : lanes_thread_plan<LanesRowsScanTraits<float, N, 4>>();
        case ScanVariant::Oct: return contiguous ? lanes_thread_plan<LanesScanTraits<float, N, 8>>() : lanes_thread_plan<LanesRowsScanTraits<float, N, 8>>();
        case ScanVariant::Sixteen: return contiguous ? lanes_thread_plan<LanesScanTraits<float, N, 16>>() : lanes_thread_plan<LanesRowsScanTraits<float, N, 16>>();
        default: return kSplit;
    }
}
// contiguous: the channel path with 16-byte loads; rows: the (b, l, d) path; elem_bytes of the streamed tensors.
inline ScanThreadPlan scan_thread_plan(ScanVariant v, int64_t dstate, bool contiguous, bool rows, int elem_bytes) {
    if (dstate <= 4 || !(contiguous || rows) || v == ScanVariant::Base) return {1, kResidentThreadsPerSM};
    return dstate <= 8 ? lanes_thread_plan_for<8>(v, contiguous, elem_bytes == 4) : lanes_thread_plan_for<16>(v, contiguous, elem_bytes == 4);
}

template <class T>
void dispatch_scan(mamba_context & ctx, const ScanArgs & a, int64_t batch, bool variable) {
    if (channel_scan_supported(batch, a.dim, a.len, a.dstate, a.channels_per_group, variable)) {
        if (!a.vec && a.rows) {
            if (a.dstate <= 4) launch_rows_path_scan<T, 4>(ctx, a, batch);
            else if (a.dstate <= 8) launch_rows_path_scan<T, 8>(ctx, a, batch);
            else launch_rows_path_scan<T, 16>(ctx, a, batch);
        } else if (a.vec) {
            if (a.dstate <= 4) launch_contiguous_channel_scan<T, 4>(ctx, a, batch);
            else if (a.dstate <= 8) launch_contiguous_channel_scan<T, 8>(ctx, a, batch);
            else launch_contiguous_channel_scan<T, 16>(ctx, a, batch);
        } else {
            if (a.dstate <= 4) launch_channel_scan<ChannelScanTraits<T, 4>, false>(ctx, a, batch);
            else if (a.dstate <= 8) launch_channel_scan<ChannelScanTraits<T, 8>, false>(ctx, a, batch);
            else launch_channel_scan<ChannelScanTraits<T, 16>, false>(ctx, a, batch);
        }
        return;
    }
    if (variable) dispatch_scan_config<T, true>(ctx, a, batch);
    else dispatch_scan_config<T, false>(ctx, a, batch);
}

// Defined in selective_scan_<type>.cu.
void run_bf16(mamba_context & ctx, const ScanArgs & a, int64_t batch, bool variable);
void run_f16(mamba_context & ctx, const ScanArgs & a, int64_t batch, bool variable);
void run_f32(mamba_context & ctx, const ScanArgs & a, int64_t batch, bool variable);

}  // namespace mamba::cuda::scan
