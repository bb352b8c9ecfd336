namespace Mamba.Runtime;

/// <summary>When the decode steps of a CUDA context prefetch their next weights into L2 (Modules/DecodePrefetch).</summary>
internal enum L2PrefetchPolicy
{
    /// <summary>No prefetch calls: a CPU context, or MAMBA_CUDA_L2_PREFETCH=off.</summary>
    Never,

    /// <summary>From <see cref="Modules.DecodePrefetch.DefaultMinBatch"/> rows on, for layers whose out_proj weight holds at
    /// least <see cref="Modules.DecodePrefetch.DefaultMinWeightBytes"/>: the default (the variable unset).</summary>
    LargeBatches,

    /// <summary>At every batch size: the variable names a fetch mode.</summary>
    Always,
}
