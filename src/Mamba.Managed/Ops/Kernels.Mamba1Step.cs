using Mamba.Native;
using Mamba.Native.Interop;
using Mamba.Runtime;
using Mamba.Tensors;

namespace Mamba.Ops;

public static unsafe partial class Kernels
{
    /// <summary>One decode step of a whole Mamba-1 mixer (see mamba_mamba1_step): what
    /// <see cref="LinearConv1dUpdate"/> (in_proj and the conv step, SiLU), <see cref="Linear"/> (x_proj),
    /// <see cref="SelectiveStateUpdate"/> (dt_proj inside, softplus, z gate) and <see cref="Linear"/> (out_proj)
    /// give in that order, from x (batch, hidden) into y (batch, hidden), convState and ssmState updated in place.
    /// xz (batch, 2*inner), xc and yInner (batch, inner) and xdbl (batch, rank + 2*dstate) are scratch. Both backends
    /// run the four ops; on CUDA, MAMBA_CUDA_MAMBA1_STEP=fused runs the step as one kernel where it can (batch 1, 16-bit
    /// weights and activations, compute capability 9.0; mamba.h lists the shapes) and fails otherwise. With
    /// <paramref name="preNorm"/> x is the input of the block's norm, which runs first (<see cref="StepPreNorm"/>).</summary>
    public static void Mamba1Step(MambaContext context, Tensor x, Tensor inProjWeight, Tensor? inProjBias, Tensor convState, Tensor convWeight,
        Tensor? convBias, Tensor xProjWeight, Tensor dtProjWeight, Tensor? dtBias, Tensor a, Tensor? d, Tensor ssmState, Tensor outProjWeight,
        Tensor? outProjBias, Tensor y, Tensor xz, Tensor xc, Tensor xdbl, Tensor yInner, StepPreNorm? preNorm = null)
    {
        ArgumentNullException.ThrowIfNull(context);
        var args = new mamba_mamba1_step_args
        {
            x = x.DL,
            in_proj_weight = inProjWeight.DL,
            in_proj_bias = Optional(inProjBias),
            conv_state = convState.DL,
            conv_weight = convWeight.DL,
            conv_bias = Optional(convBias),
            x_proj_weight = xProjWeight.DL,
            dt_proj_weight = dtProjWeight.DL,
            dt_bias = Optional(dtBias),
            A = a.DL,
            D = Optional(d),
            ssm_state = ssmState.DL,
            out_proj_weight = outProjWeight.DL,
            out_proj_bias = Optional(outProjBias),
            y = y.DL,
            xz = xz.DL,
            xc = xc.DL,
            xdbl = xdbl.DL,
            y_inner = yInner.DL,
        };
        if (preNorm is { } pn)
        {
            args.pre_norm_weight = pn.Weight.DL;
            args.residual = Optional(pn.Residual);
            args.residual_out = pn.ResidualOut.DL;
            args.pre_normed = pn.Normed.DL;
            args.pre_norm_eps = pn.Eps;
        }
        MambaException.Check(NativeMethods.mamba_mamba1_step(context.Handle.Pointer, &args));
        GC.KeepAlive(x);
        GC.KeepAlive(inProjWeight);
        GC.KeepAlive(inProjBias);
        GC.KeepAlive(convState);
        GC.KeepAlive(convWeight);
        GC.KeepAlive(convBias);
        GC.KeepAlive(xProjWeight);
        GC.KeepAlive(dtProjWeight);
        GC.KeepAlive(dtBias);
        GC.KeepAlive(a);
        GC.KeepAlive(d);
        GC.KeepAlive(ssmState);
        GC.KeepAlive(outProjWeight);
        GC.KeepAlive(outProjBias);
        GC.KeepAlive(y);
        GC.KeepAlive(xz);
        GC.KeepAlive(xc);
        GC.KeepAlive(xdbl);
        GC.KeepAlive(yInner);
        if (preNorm is { } kept)
        {
            GC.KeepAlive(kept.Weight);
            GC.KeepAlive(kept.Residual);
            GC.KeepAlive(kept.ResidualOut);
            GC.KeepAlive(kept.Normed);
        }
    }
}
