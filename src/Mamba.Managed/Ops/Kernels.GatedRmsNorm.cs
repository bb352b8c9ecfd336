using Mamba.Native;
using Mamba.Native.Interop;
using Mamba.Runtime;
using Mamba.Tensors;

namespace Mamba.Ops;

public static unsafe partial class Kernels
{
    /// <summary>Mamba-2 gated RMSNorm per group of <paramref name="groupSize"/> channels (0: the whole row);
    /// y = rmsnorm(x * silu(z)) * weight, or rmsnorm(x) * weight * silu(z) when normBeforeGate (see mamba_gated_rms_norm).</summary>
    public static void GatedRmsNorm(MambaContext context, Tensor x, Tensor weight, Tensor y, float eps, Tensor? z = null,
        long groupSize = 0, bool normBeforeGate = false)
    {
        ArgumentNullException.ThrowIfNull(context);
        var args = new mamba_gated_rms_norm_args
        {
            x = x.DL,
            z = Optional(z),
            weight = weight.DL,
            y = y.DL,
            group_size = groupSize,
            eps = eps,
            norm_before_gate = normBeforeGate ? 1 : 0,
        };
        MambaException.Check(NativeMethods.mamba_gated_rms_norm(context.Handle.Pointer, &args));
        GC.KeepAlive(x);
        GC.KeepAlive(z);
        GC.KeepAlive(weight);
        GC.KeepAlive(y);
    }
}
