using Mamba.Ops;
using Mamba.Runtime;
using Mamba.Tensors;

namespace Mamba.Modules;

/// <summary>Causal depthwise conv1d with SiLU, weight (dim, width).</summary>
public sealed class Conv1d(Tensor weight, Tensor? bias) : IDisposable
{
    /// <summary>(dim, width).</summary>
    public Tensor Weight { get; } = weight;

    /// <summary>Optional (dim).</summary>
    public Tensor? Bias { get; } = bias;

    /// <summary>Channels.</summary>
    public long Dim => Weight.Shape[0];

    /// <summary>Kernel width.</summary>
    public long Width => Weight.Shape[1];

    /// <summary>Over a sequence x (batch, dim, len) from initialState to finalState (batch, dim, width-1).</summary>
    public void Forward(MambaContext context, Tensor x, Tensor y, Tensor? initialState, Tensor? finalState) =>
        Kernels.CausalConv1d(context, x, Weight, y, silu: true, Bias, initialState, finalState);

    /// <summary>One step: x (batch, dim) through the rolling state (batch, dim, width-1).</summary>
    public void Step(MambaContext context, Tensor x, Tensor state, Tensor y) =>
        Kernels.CausalConv1dUpdate(context, x, state, Weight, y, silu: true, Bias);

    /// <inheritdoc />
    public void Dispose()
    {
        Weight.Dispose();
        Bias?.Dispose();
    }
}
