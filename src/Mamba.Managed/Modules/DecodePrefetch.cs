using System.Globalization;
using Mamba.Ops;
using Mamba.Runtime;
using Mamba.Tensors;

namespace Mamba.Modules;

/// <summary>What a decode step reads into L2 after its in_proj, while its small kernels (conv step, projections, state
/// update, norms) leave the memory idle: the layer's out_proj weight, then the first bytes of the next layer's in_proj
/// (the LM head after the last layer). On CUDA only; the native switch MAMBA_CUDA_L2_PREFETCH decides whether anything is
/// fetched (off by default); the decode step makes the calls only on a context created with it on.</summary>
internal static class DecodePrefetch
{
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

    /// <summary>The prefetches of one decode step; null on the CPU (no L2 to fill ahead) and on a CUDA context created
    /// with the prefetch off, so that such a step makes no calls and reads no tuning variable.</summary>
    public static Action? Create(MambaContext context, Tensor outProjWeight, Tensor? next)
    {
        if (context.Device.Type != DeviceType.Cuda || !context.L2PrefetchRequested)
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
