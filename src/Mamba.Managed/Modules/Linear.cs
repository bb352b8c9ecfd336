using Mamba.Ops;
using Mamba.Runtime;
using Mamba.Tensors;

namespace Mamba.Modules;

/// <summary>y = x W^T + b with W (out, in).</summary>
public sealed class Linear(Tensor weight, Tensor? bias) : IDisposable
{
    /// <summary>(out_features, in_features).</summary>
    public Tensor Weight { get; } = weight;

    /// <summary>Optional (out_features).</summary>
    public Tensor? Bias { get; } = bias;

    /// <summary>Output width.</summary>
    public long OutFeatures => Weight.Shape[0];

    /// <summary>Input width.</summary>
    public long InFeatures => Weight.Shape[1];

    /// <summary>y (rows, out) = x (rows, in) W^T + b.</summary>
    public void Forward(MambaContext context, Tensor x, Tensor y) => Kernels.Linear(context, x, Weight, y, Bias);

    /// <inheritdoc />
    public void Dispose()
    {
        Weight.Dispose();
        Bias?.Dispose();
    }
}
