using Mamba.Native;
using Mamba.Native.Interop;
using Mamba.Runtime;
using Mamba.Tensors;

namespace Mamba.Ops;

public static unsafe partial class Kernels
{
    /// <summary><see cref="RmsNorm"/> into <paramref name="normed"/>, then y = normed W^T + bias, as one call: on CUDA
    /// decode rows run as one kernel (see mamba_norm_linear).</summary>
    public static void RmsNormLinear(MambaContext context, Tensor x, Tensor normWeight, Tensor normed, float eps, Tensor? residual, Tensor? residualOut,
        Tensor weight, Tensor y, Tensor? bias = null)
    {
        ArgumentNullException.ThrowIfNull(context);
        var norm = new mamba_rms_norm_args
        {
            x = x.DL,
            weight = normWeight.DL,
            y = normed.DL,
            residual = Optional(residual),
            residual_out = Optional(residualOut),
            eps = eps,
        };
        var args = new mamba_norm_linear_args { rms_norm = &norm, weight = weight.DL, bias = Optional(bias), y = y.DL };
        MambaException.Check(NativeMethods.mamba_norm_linear(context.Handle.Pointer, &args));
        GC.KeepAlive(x);
        GC.KeepAlive(normWeight);
        GC.KeepAlive(normed);
        GC.KeepAlive(residual);
        GC.KeepAlive(residualOut);
        GC.KeepAlive(weight);
        GC.KeepAlive(y);
        GC.KeepAlive(bias);
    }

    /// <summary><see cref="GatedRmsNorm"/> into <paramref name="normed"/>, then y = normed W^T + bias, as one call: on
    /// CUDA decode rows run as one kernel (see mamba_norm_linear).</summary>
    public static void GatedRmsNormLinear(MambaContext context, Tensor x, Tensor normWeight, Tensor normed, float eps, Tensor? z, long groupSize,
        bool normBeforeGate, Tensor weight, Tensor y, Tensor? bias = null)
    {
        ArgumentNullException.ThrowIfNull(context);
        var norm = new mamba_gated_rms_norm_args
        {
            x = x.DL,
            z = Optional(z),
            weight = normWeight.DL,
            y = normed.DL,
            group_size = groupSize,
            eps = eps,
            norm_before_gate = normBeforeGate ? 1 : 0,
        };
        var args = new mamba_norm_linear_args { gated_rms_norm = &norm, weight = weight.DL, bias = Optional(bias), y = y.DL };
        MambaException.Check(NativeMethods.mamba_norm_linear(context.Handle.Pointer, &args));
        GC.KeepAlive(x);
        GC.KeepAlive(z);
        GC.KeepAlive(normWeight);
        GC.KeepAlive(normed);
        GC.KeepAlive(weight);
        GC.KeepAlive(y);
        GC.KeepAlive(bias);
    }
}
