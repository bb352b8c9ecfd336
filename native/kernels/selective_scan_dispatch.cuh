// Picks the selective scan kernel for a call: the channel path (contiguous rows) or the (b, l, d) rows
// path, each with the kernel of the call's resolved variant (resolve_scan_variant, selective_scan_kernel.cuh:
// duo on the channel path and split on the rows path by default), or the general kernel
// (selective_scan_kernel.cuh).
#pragma once

#include "selective_scan_kernel.cuh"
#include "selective_scan_lanes.cuh"
#include "selective_scan_split.cuh"

namespace mamba::cuda::scan {

// Contiguous channel path, dstate padded to N: the variant's kernel for N >= 8 (duo by default, split),
// else base.
template <class T, int N>
void launch_contiguous_channel_scan(mamba_context & ctx, const ScanArgs & a, int64_t batch) {
    if constexpr (N >= 8) {
        switch (a.variant) {
            case ScanVariant::Duo: launch_duo_scan<DuoScanTraits<T, N>>(ctx, a, batch); return;
            case ScanVariant::Split: launch_split_scan<SplitScanTraits<T, N>>(ctx, a, batch); return;
            case ScanVariant::Base:
            case ScanVariant::Default: break;  // Default never reaches here (resolve_scan_variant)
        }
    }
    launch_channel_scan<ChannelScanTraits<T, N>, true>(ctx, a, batch);
}

// (b, l, d) rows path, dstate padded to N: split for N >= 8 (the default; duo has no rows kernel and
// runs split here), else or with base the base rows kernel.
template <class T, int N>
void launch_rows_path_scan(mamba_context & ctx, const ScanArgs & a, int64_t batch) {
    if constexpr (N >= 8) {
        if (a.variant != ScanVariant::Base) {
            launch_split_rows_scan<SplitRowsScanTraits<T, N>>(ctx, a, batch);
            return;
        }
    }
    launch_rows_scan<RowsScanTraits<T, N>>(ctx, a, batch);
}

// Threads a channel and resident threads an SM of the kernel that runs a call, for planning its
// segments (scan_segment_len): must follow the two launchers above. v is resolved (resolve_scan_variant).
// waves: full waves of blocks the segments aim at (scan_segment_len; a one-wave plan splits only where a two-wave one would).
struct ScanThreadPlan {
    int64_t lanes, resident_per_sm, waves;
};
// contiguous: the channel path with 16-byte loads; rows: the (b, l, d) path.
// split on the rows path plans its segments for ONE wave of the blocks it holds (launch bounds: kThreads x
// kMinBlocksPerSM threads an SM, the same for every type), not two waves of kResidentThreadsPerSM as the
// other kernels: on 132 SMs at B1 D5120 L512 that is 8 segments of 64 steps (with 32-channel blocks 1280
// a pass, one wave of 1320) instead of 11 of 48 (1.3 waves), measured 8% faster with the 64-channel blocks
// of the time (640 of 660); L2048: 8 of 256 instead of 13 of 160, equal (numbers in selective_scan_split.cuh).
inline ScanThreadPlan scan_thread_plan(ScanVariant v, int64_t dstate, bool contiguous, bool rows) {
    if (dstate <= 4 || !(contiguous || rows) || v == ScanVariant::Base) return {1, kResidentThreadsPerSM, 2};
    if (contiguous && v == ScanVariant::Duo) return {DuoScanTraits<float, 16>::kLanes, DuoScanTraits<float, 16>::kResidentThreads, 2};
    if (rows) {  // split (duo too: it runs split on this path)
        using Rows = SplitRowsScanTraits<float, 16>;
        return {2, Rows::kThreads * Rows::kMinBlocksPerSM, 1};
    }
    return {2, kResidentThreadsPerSM, 2};  // split on the channel path
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
