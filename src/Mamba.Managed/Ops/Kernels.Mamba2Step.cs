using Mamba.Native;
using Mamba.Native.Interop;
using Mamba.Runtime;
using Mamba.Tensors;

namespace Mamba.Ops;

public static unsafe partial class Kernels
{
    /// <summary>One decode step of a whole Mamba-2 mixer (see mamba_mamba2_step): what <see cref="LinearConv1dUpdate"/>
    /// (in_proj and the conv step over its xBC columns, SiLU), <see cref="SsdStateUpdate"/> (dt bias, softplus, dt limit),
    /// <see cref="GatedRmsNorm"/> (gate z = in_proj's first inner columns) and <see cref="Linear"/> (out_proj) give in that
    /// order, from x (batch, hidden) into y (batch, hidden), convState and ssmState updated in place. proj (batch,
    /// 2*inner + 2*groups*dstate + heads), xbc (batch, inner + 2*groups*dstate), yInner and normed (batch, inner) are
    /// scratch. On CUDA at batch 1 the norm runs inside the state update and out_proj where it can (one norm group,
    /// out_proj's row on the GEMV kernel), so results differ from the four calls by rounding;
    /// MAMBA_CUDA_MAMBA2_STEP=separate runs the four calls, =fused folds the norm up to batch 4. With <paramref name="preNorm"/>
    /// x is the input of the block's norm, which runs first (<see cref="StepPreNorm"/>).</summary>
    public static void Mamba2Step(MambaContext context, Tensor x, Tensor inProjWeight, Tensor? inProjBias, Tensor convState, Tensor convWeight,
        Tensor? convBias, Tensor? dtBias, Tensor a, Tensor? d, Tensor ssmState, Tensor normWeight, Tensor outProjWeight, Tensor? outProjBias, Tensor y,
        Tensor proj, Tensor xbc, Tensor yInner, Tensor normed, long normGroupSize, float eps, bool normBeforeGate, float dtMin, float dtMax,
        StepPreNorm? preNorm = null)
    {
        ArgumentNullException.ThrowIfNull(context);
        var args = new mamba_mamba2_step_args
        {
            x = x.DL,
            in_proj_weight = inProjWeight.DL,
            in_proj_bias = Optional(inProjBias),
            conv_state = convState.DL,
            conv_weight = convWeight.DL,
            conv_bias = Optional(convBias),
            dt_bias = Optional(dtBias),
            A = a.DL,
            D = Optional(d),
            ssm_state = ssmState.DL,
            norm_weight = normWeight.DL,
            out_proj_weight = outProjWeight.DL,
            out_proj_bias = Optional(outProjBias),
            y = y.DL,
            proj = proj.DL,
            xbc = xbc.DL,
            y_inner = yInner.DL,
            normed = normed.DL,
            norm_group_size = normGroupSize,
            eps = eps,
            norm_before_gate = normBeforeGate ? 1 : 0,
            dt_min = dtMin,
            dt_max = dtMax,
        };
        if (preNorm is { } pn)
        {
            args.pre_norm_weight = pn.Weight.DL;
            args.residual = Optional(pn.Residual);
            args.residual_out = pn.ResidualOut.DL;
            args.pre_normed = pn.Normed.DL;
            args.pre_norm_eps = pn.Eps;
        }
        MambaException.Check(NativeMethods.mamba_mamba2_step(context.Handle.Pointer, &args));
        GC.KeepAlive(x);
        GC.KeepAlive(inProjWeight);
        GC.KeepAlive(inProjBias);
        GC.KeepAlive(convState);
        GC.KeepAlive(convWeight);
        GC.KeepAlive(convBias);
        GC.KeepAlive(dtBias);
        GC.KeepAlive(a);
        GC.KeepAlive(d);
        GC.KeepAlive(ssmState);
        GC.KeepAlive(normWeight);
        GC.KeepAlive(outProjWeight);
        GC.KeepAlive(outProjBias);
        GC.KeepAlive(y);
        GC.KeepAlive(proj);
        GC.KeepAlive(xbc);
        GC.KeepAlive(yInner);
        GC.KeepAlive(normed);
        if (preNorm is { } kept)
        {
            GC.KeepAlive(kept.Weight);
            GC.KeepAlive(kept.Residual);
            GC.KeepAlive(kept.ResidualOut);
            GC.KeepAlive(kept.Normed);
        }
    }
}
