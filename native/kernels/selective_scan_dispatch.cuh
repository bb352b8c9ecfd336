// Picks the selective scan kernel for a call: the channel path (contiguous rows) or the (b, l, d) rows
// path, each with the kernel of MAMBA_CUDA_SCAN_VARIANT (split by default, base), or the general kernel
// (selective_scan_kernel.cuh).
#pragma once

#include "selective_scan_kernel.cuh"
#include "selective_scan_split.cuh"

namespace mamba::cuda::scan {

// Contiguous channel path, dstate padded to N: split (the default) for N >= 8, else base.
template <class T, int N>
void launch_contiguous_channel_scan(mamba_context & ctx, const ScanArgs & a, int64_t batch) {
    if constexpr (N >= 8) {
        if (a.variant == ScanVariant::Split) {
            launch_split_scan<SplitScanTraits<T, N>>(ctx, a, batch);
            return;
        }
    }
    launch_channel_scan<ChannelScanTraits<T, N>, true>(ctx, a, batch);
}

// (b, l, d) rows path, dstate padded to N: split (the default) for N >= 8, else base.
template <class T, int N>
void launch_rows_path_scan(mamba_context & ctx, const ScanArgs & a, int64_t batch) {
    if constexpr (N >= 8) {
        if (a.variant == ScanVariant::Split) {
            launch_split_rows_scan<SplitRowsScanTraits<T, N>>(ctx, a, batch);
            return;
        }
    }
    launch_rows_scan<RowsScanTraits<T, N>>(ctx, a, batch);
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
