using Mamba.Native;
using Mamba.Native.Interop;
using Mamba.Runtime;
using Mamba.Tensors;

namespace Mamba.Ops;

public static unsafe partial class Kernels
{
    /// <summary>Causal depthwise conv1d over time of x (batch, dim, len) with weight (dim, width), optional bias,
    /// optional initial state (batch, dim, width-1) and SiLU; finalState receives the last width-1 inputs (see mamba_causal_conv1d).</summary>
    public static void CausalConv1d(MambaContext context, Tensor x, Tensor weight, Tensor y, bool silu, Tensor? bias = null,
        Tensor? initialState = null, Tensor? finalState = null)
    {
        ArgumentNullException.ThrowIfNull(context);
        var args = new mamba_causal_conv1d_args
        {
            x = x.DL,
            weight = weight.DL,
            bias = Optional(bias),
            initial_state = Optional(initialState),
            y = y.DL,
            final_state = Optional(finalState),
            silu = silu ? 1 : 0,
        };
        MambaException.Check(NativeMethods.mamba_causal_conv1d(context.Handle.Pointer, &args));
        GC.KeepAlive(x);
        GC.KeepAlive(weight);
        GC.KeepAlive(bias);
        GC.KeepAlive(initialState);
        GC.KeepAlive(y);
        GC.KeepAlive(finalState);
    }

    /// <summary>One decode step of the causal conv1d: x (batch, dim) enters the rolling convState (batch, dim, width-1)
    /// in place and y (batch, dim) receives the output (see mamba_causal_conv1d_update).</summary>
    public static void CausalConv1dUpdate(MambaContext context, Tensor x, Tensor convState, Tensor weight, Tensor y, bool silu,
        Tensor? bias = null)
    {
        ArgumentNullException.ThrowIfNull(context);
        var args = new mamba_causal_conv1d_update_args
        {
            x = x.DL,
            conv_state = convState.DL,
            weight = weight.DL,
            bias = Optional(bias),
            y = y.DL,
            silu = silu ? 1 : 0,
        };
        MambaException.Check(NativeMethods.mamba_causal_conv1d_update(context.Handle.Pointer, &args));
        GC.KeepAlive(x);
        GC.KeepAlive(convState);
        GC.KeepAlive(weight);
        GC.KeepAlive(bias);
        GC.KeepAlive(y);
    }
}
