using Mamba.Native;
using Mamba.Native.Interop;
using Mamba.Runtime;
using Mamba.Tensors;

namespace Mamba.Ops;

public static unsafe partial class Kernels
{
    /// <summary>A decode step's input projection with its conv step: y (rows, out) = x (rows, in) W^T + bias, then
    /// y's columns [convOffset, convOffset + dim) go through one conv step on convState (rows, dim, width-1), in
    /// place, into convY (rows, dim), dim being convWeight's first dimension. The results of
    /// <see cref="Linear"/> followed by <see cref="CausalConv1dUpdate"/>; one kernel on CUDA where the projection
    /// runs as a GEMV kernel (up to 16 rows, not the batched rows of large weights that go to cuBLAS), with filters
    /// up to 4 wide and a weight that allows 16-byte loads (see mamba_linear_conv1d_update).</summary>
    public static void LinearConv1dUpdate(MambaContext context, Tensor x, Tensor weight, Tensor? bias, Tensor y, long convOffset,
        Tensor convState, Tensor convWeight, Tensor? convBias, Tensor convY, bool silu)
    {
        ArgumentNullException.ThrowIfNull(context);
        var args = new mamba_linear_conv1d_update_args
        {
            x = x.DL,
            weight = weight.DL,
            bias = Optional(bias),
            y = y.DL,
            conv_offset = convOffset,
            conv_state = convState.DL,
            conv_weight = convWeight.DL,
            conv_bias = Optional(convBias),
            conv_y = convY.DL,
            silu = silu ? 1 : 0,
        };
        MambaException.Check(NativeMethods.mamba_linear_conv1d_update(context.Handle.Pointer, &args));
        GC.KeepAlive(x);
        GC.KeepAlive(weight);
        GC.KeepAlive(bias);
        GC.KeepAlive(y);
        GC.KeepAlive(convState);
        GC.KeepAlive(convWeight);
        GC.KeepAlive(convBias);
        GC.KeepAlive(convY);
    }
}
