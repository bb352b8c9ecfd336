using Mamba.Tensors;

namespace Mamba.Ops;

/// <summary>The residual block's pre-norm that <see cref="Kernels.Mamba1Step"/> and <see cref="Kernels.Mamba2Step"/> run
/// before the mixer (mamba.h's pre_norm_weight): <see cref="ResidualOut"/> = x + <see cref="Residual"/> (or x),
/// <see cref="Normed"/> = rmsnorm(<see cref="ResidualOut"/>) * <see cref="Weight"/>, and the mixer reads
/// <see cref="Normed"/> instead of x. <see cref="ResidualOut"/> overlaps no input, <see cref="Residual"/> included, so
/// a model alternates two buffers for the residual stream. On CUDA at batch 1 the norm runs inside in_proj where it
/// can (MAMBA_CUDA_STEP_PRE_NORM), and <see cref="Normed"/> is then not written.</summary>
/// <param name="Weight">(hidden).</param>
/// <param name="Eps">Epsilon under the square root.</param>
/// <param name="Residual">Optional (batch, hidden): the residual stream before this block.</param>
/// <param name="ResidualOut">(batch, hidden): the residual stream after the add.</param>
/// <param name="Normed">(batch, hidden): scratch for the norm's output.</param>
public readonly record struct StepPreNorm(Tensor Weight, float Eps, Tensor? Residual, Tensor ResidualOut, Tensor Normed);
