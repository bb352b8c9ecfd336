using System.Globalization;
using Mamba.Ops;
using Mamba.Runtime;
using Mamba.Tensors;

namespace Mamba.Modules;

/// <summary>What a decode step reads into L2 after its in_proj, while its small kernels (conv step, projections, state
/// update, norms) leave the memory idle: the layer's out_proj weight, then the first bytes of the next layer's in_proj
/// (the LM head after the last layer). On CUDA only, as the context's <see cref="L2PrefetchPolicy"/> says: by default
/// from <see cref="DefaultMinBatch"/> rows on and for out_proj weights of <see cref="DefaultMinWeightBytes"/> or more;
/// with MAMBA_CUDA_L2_PREFETCH=off never, with a named mode always.</summary>
internal static class DecodePrefetch
{
    /// <summary>The batch size from which decode steps prefetch by default. Measured on an H200 (bf16, bulk with 8 blocks,
    /// two runs; docs/gpu-results.md): 2-3% faster at 8 and 16 rows on mamba-2.8b and mamba2-2.7b, between 1% slower and
    /// 2% faster at 2 and 4, and 3-16% slower at 1, where the GEMVs already read their first weights early.</summary>
    public const int DefaultMinBatch = 8;

    /// <summary>The out_proj weight size from which decode steps prefetch by default: 20 MiB, so the 2.7b/2.8b shapes
    /// (26 MB) where the gain was measured; smaller layers (mamba-1.4b 16.8 MB, 130m 2.4 MB) were not measured with the
    /// prefetch and keep decoding without it.</summary>
    public const long DefaultMinWeightBytes = 20L << 20;

    /// <summary>Megabytes (2^20 bytes) of the next layer's first weight to prefetch; 0 prefetches only the out_proj.</summary>
    public const string NextMegabytesVariable = "MAMBA_CUDA_L2_PREFETCH_NEXT_MB";

    /// <summary>16 MB: with mamba-2.8b's 26 MB out_proj, 42 MB of the H200's 50 MB L2.</summary>
    public const long DefaultNextMegabytes = 16;

    /// <summary>Bytes of the next weight to prefetch, from <see cref="NextMegabytesVariable"/>.</summary>
    /// <exception cref="FormatException">The variable is set to something other than a whole number 0..1024.</exception>
    public static long NextBytes()
    {
        var text = Environment.GetEnvironmentVariable(NextMegabytesVariable);
        if (string.IsNullOrWhiteSpace(text))
        {
            return DefaultNextMegabytes << 20;
        }
        if (!long.TryParse(text.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var mb) || mb > 1024)
        {
            throw new FormatException($"{NextMegabytesVariable} must be a whole number of megabytes from 0 to 1024, not '{text}'");
        }
        return mb << 20;
    }

    /// <summary>Whether a decode step of <paramref name="batch"/> rows whose out_proj weight holds
    /// <paramref name="weightBytes"/> bytes prefetches under <paramref name="policy"/>.</summary>
    public static bool Wanted(L2PrefetchPolicy policy, long batch, long weightBytes) => policy switch
    {
        L2PrefetchPolicy.Always => true,
        L2PrefetchPolicy.LargeBatches => batch >= DefaultMinBatch && weightBytes >= DefaultMinWeightBytes,
        _ => false,
    };

    /// <summary>The prefetches of one decode step of <paramref name="batch"/> rows; null where the context's policy makes
    /// none (<see cref="Wanted"/>: the CPU, the prefetch off, or by default a small batch or a small layer), so that such a
    /// step makes no calls and reads no tuning variable.</summary>
    public static Action? Create(MambaContext context, Tensor outProjWeight, Tensor? next, long batch)
    {
        if (!Wanted(context.L2Prefetch, batch, outProjWeight.ElementCount * outProjWeight.DType.Size()))
        {
            return null;
        }
        var nextBytes = next is null ? 0 : NextBytes();
        return () =>
        {
            Kernels.PrefetchL2(context, outProjWeight);
            if (next is not null && nextBytes > 0)
            {
                Kernels.PrefetchL2(context, next, nextBytes);
            }
        };
    }
}
