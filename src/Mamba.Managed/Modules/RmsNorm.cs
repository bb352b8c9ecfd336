using Mamba.Ops;
using Mamba.Runtime;
using Mamba.Tensors;

namespace Mamba.Modules;

/// <summary>RMSNorm with the residual add of a pre-norm block fused in.</summary>
public sealed class RmsNorm(Tensor weight, float eps) : IDisposable
{
    /// <summary>(hidden).</summary>
    public Tensor Weight { get; } = weight;

    /// <summary>Epsilon under the square root.</summary>
    public float Eps { get; } = eps;

    /// <summary>residualOut = x + residual (or x), y = rmsnorm(residualOut) * weight.</summary>
    public void Forward(MambaContext context, Tensor x, Tensor y, Tensor? residual = null, Tensor? residualOut = null) =>
        Kernels.RmsNorm(context, x, Weight, y, Eps, residual, residualOut);

    /// <inheritdoc />
    public void Dispose() => Weight.Dispose();
}
