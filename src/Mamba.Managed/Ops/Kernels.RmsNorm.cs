using Mamba.Native;
using Mamba.Native.Interop;
using Mamba.Runtime;
using Mamba.Tensors;

namespace Mamba.Ops;

/// <summary>The native ops of libmamba over <see cref="Tensor"/>s; argument checks and errors are the library's own.</summary>
public static unsafe partial class Kernels
{
    /// <summary>y = rmsnorm(x + residual) * weight; residualOut receives x + residual (see mamba_rms_norm).</summary>
    public static void RmsNorm(MambaContext context, Tensor x, Tensor weight, Tensor y, float eps, Tensor? residual = null, Tensor? residualOut = null)
    {
        ArgumentNullException.ThrowIfNull(context);
        var args = new mamba_rms_norm_args
        {
            x = x.DL,
            weight = weight.DL,
            y = y.DL,
            residual = Optional(residual),
            residual_out = Optional(residualOut),
            eps = eps,
        };
        MambaException.Check(NativeMethods.mamba_rms_norm(context.Handle.Pointer, &args));
        // The DLTensor pointers stay valid only while their tensors are reachable.
        GC.KeepAlive(x);
        GC.KeepAlive(weight);
        GC.KeepAlive(y);
        GC.KeepAlive(residual);
        GC.KeepAlive(residualOut);
    }

    private static DLTensor* Optional(Tensor? tensor) => tensor is null ? null : tensor.DL;
}
