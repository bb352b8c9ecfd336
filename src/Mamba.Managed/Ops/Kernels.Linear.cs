using Mamba.Native;
using Mamba.Native.Interop;
using Mamba.Runtime;
using Mamba.Tensors;

namespace Mamba.Ops;

public static unsafe partial class Kernels
{
    /// <summary>y (rows, out) = x (rows, in) W^T + bias, W (out, in), float32 accumulation (see mamba_linear).</summary>
    public static void Linear(MambaContext context, Tensor x, Tensor weight, Tensor y, Tensor? bias = null) =>
        RunLinear(context, x, weight, y, bias, softplus: false);

    /// <summary>y = softplus(x W^T + bias), the softplus applied to each float32 sum before y is rounded to its dtype
    /// (see mamba_linear_softplus): Mamba-1's dt projection, after which the scan takes dt as given.</summary>
    public static void LinearSoftplus(MambaContext context, Tensor x, Tensor weight, Tensor y, Tensor? bias = null) =>
        RunLinear(context, x, weight, y, bias, softplus: true);

    private static void RunLinear(MambaContext context, Tensor x, Tensor weight, Tensor y, Tensor? bias, bool softplus)
    {
        ArgumentNullException.ThrowIfNull(context);
        var args = new mamba_linear_args
        {
            x = x.DL,
            weight = weight.DL,
            bias = Optional(bias),
            y = y.DL,
        };
        MambaException.Check(softplus
            ? NativeMethods.mamba_linear_softplus(context.Handle.Pointer, &args)
            : NativeMethods.mamba_linear(context.Handle.Pointer, &args));
        GC.KeepAlive(x);
        GC.KeepAlive(weight);
        GC.KeepAlive(bias);
        GC.KeepAlive(y);
    }
}
