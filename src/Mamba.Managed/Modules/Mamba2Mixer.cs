using Mamba.Models;
using Mamba.Ops;
using Mamba.Runtime;
using Mamba.Tensors;

namespace Mamba.Modules;

/// <summary>Mamba-2 mixer: in_proj -> split z / xBC / dt -> conv1d + SiLU on xBC -> SSD (D, dt bias, softplus,
/// dt limit, groups) -> gated RMSNorm per group -> out_proj.</summary>
public sealed class Mamba2Mixer : Mixer
{
    private readonly long _hidden, _inner, _heads, _headDim, _groups, _state, _width, _chunk;
    private readonly float _eps, _dtMin, _dtMax;
    private readonly bool _normBeforeGate;

    internal Mamba2Mixer(MambaConfig config, WeightReader w, string prefix)
    {
        _hidden = config.HiddenSize;
        _inner = config.IntermediateSize;
        _heads = config.NumHeads;
        _headDim = config.HeadDim;
        _groups = config.NumGroups;
        _state = config.StateSize;
        _width = config.ConvKernel;
        _chunk = SupportedChunk(config.ChunkSize);
        _eps = (float)config.NormEpsilon;
        (_dtMin, _dtMax) = config.TimeStepLimit;
        _normBeforeGate = config.NormBeforeGate;
        var p = prefix + "mixer.";
        InProj = new Linear(w.Weight([ProjWidth, _hidden], p + "in_proj.weight"),
            config.UseBias ? w.Weight([ProjWidth], p + "in_proj.bias") : null);
        Conv = new Conv1d(w.Weight([ConvDim, _width], p + "conv1d.weight"),
            config.UseConvBias ? w.Weight([ConvDim], p + "conv1d.bias") : null);
        DtBias = w.Float32([_heads], null, p + "dt_bias");
        A = w.Float32([_heads], v => -MathF.Exp(v), p + "A_log");
        // D is per head, or per head and channel in checkpoints trained with D_has_hdim.
        var dStored = w.Require(p + "D");
        D = dStored.Shape.Aggregate(1L, (a, b) => a * b) == _heads * _headDim
            ? w.Float32([_heads, _headDim], null, p + "D")
            : w.Float32([_heads], null, p + "D");
        NormWeight = w.Weight([_inner], p + "norm.weight");
        OutProj = new Linear(w.Weight([_hidden, _inner], p + "out_proj.weight"),
            config.UseBias ? w.Weight([_hidden], p + "out_proj.bias") : null);
    }

    // The chunk length changes only how the scan is computed, not its result: use the checkpoint's when the
    // kernels support it, else the nearest power of two they do (16..512).
    private static long SupportedChunk(int requested)
    {
        long chunk = 16;
        while (chunk < requested && chunk < 512)
        {
            chunk *= 2;
        }
        return chunk;
    }

    /// <summary>(2*inner + 2*groups*state + heads, hidden): z, x, B, C, dt.</summary>
    public Linear InProj { get; }

    /// <summary>Depthwise conv over xBC.</summary>
    public Conv1d Conv { get; }

    /// <summary>(heads), float32.</summary>
    public Tensor DtBias { get; }

    /// <summary>A = -exp(A_log) (heads), float32.</summary>
    public Tensor A { get; }

    /// <summary>(heads) or (heads, headdim), float32.</summary>
    public Tensor D { get; }

    /// <summary>Gated RMSNorm weight (inner).</summary>
    public Tensor NormWeight { get; }

    /// <summary>(hidden, inner).</summary>
    public Linear OutProj { get; }

    /// <inheritdoc />
    public override long HiddenSize => _hidden;

    private long ConvDim => _inner + 2 * _groups * _state;

    private long ProjWidth => _inner + ConvDim + _heads;

    // Original mamba_ssm normalizes each group of inner / groups channels on its own.
    private long NormGroupSize => _inner / _groups;

    private sealed class Scratch : TensorSet
    {
        public Scratch(MambaContext c, int rows, int sequences, DType t, Mamba2Mixer m)
        {
            Proj = Alloc(c, t, rows, m.ProjWidth);
            Xbc = Alloc(c, t, rows, m.ConvDim);
            Y = Alloc(c, t, rows, m._inner);
            Normed = Alloc(c, t, rows, m._inner);
            ConvFinal = Alloc(c, t, sequences, m.ConvDim, m._width - 1);
        }

        public Tensor Proj { get; }
        public Tensor Xbc { get; }
        public Tensor Y { get; }
        public Tensor Normed { get; }
        public Tensor ConvFinal { get; }
    }

    /// <inheritdoc />
    public override MixerState CreateState(MambaContext context, int batch, DType activationDType) =>
        new(context, activationDType, [batch, ConvDim, _width - 1], [batch, _heads, _headDim, _state]);

    /// <inheritdoc />
    public override TensorSet CreateScratch(MambaContext context, int rows, int sequences, DType activationDType) =>
        new Scratch(context, rows, sequences, activationDType, this);

    /// <inheritdoc />
    public override void Prefill(MambaContext context, Tensor x, Tensor y, int sequences, int length, TensorSet scratch, MixerState state,
        int firstSequence)
    {
        var s = (Scratch)scratch;
        long n = sequences, L = length, pw = ProjWidth, cd = ConvDim, di = _inner, gn = _groups * _state;
        using (context.Op("in_proj"))
        {
            InProj.Forward(context, x, s.Proj.View([n * L, pw]));
        }
        var xbcIn = s.Proj.View([n, cd, L], [L * pw, 1, pw], di);
        var xbc = s.Xbc.View([n, cd, L], [L * cd, 1, cd]);
        var convState = state.Conv.Slice(0, firstSequence, n);
        var convFinal = s.ConvFinal.Slice(0, 0, n);
        using (context.Op("conv1d"))
        {
            Conv.Forward(context, xbcIn, xbc, convState, convFinal);
            convFinal.CopyTo(convState);
        }
        var xs = s.Xbc.View([n, L, _heads, _headDim], [L * cd, cd, _headDim, 1]);
        var b = s.Xbc.View([n, L, _groups, _state], [L * cd, cd, _state, 1], di);
        var c = s.Xbc.View([n, L, _groups, _state], [L * cd, cd, _state, 1], di + gn);
        var dt = s.Proj.View([n, L, _heads], [L * pw, pw, 1], di + cd);
        var yv = s.Y.View([n, L, _heads, _headDim]);
        var ssm = state.Ssm.Slice(0, firstSequence, n);
        using (context.Op("ssd"))
        {
            Kernels.Ssd(context, xs, dt, A, b, c, yv, D, null, DtBias, dtSoftplus: true, _dtMin, _dtMax, _chunk, ssm, ssm);
        }
        using (context.Op("gated_rmsnorm"))
        {
            Kernels.GatedRmsNorm(context, s.Y.View([n * L, di]), NormWeight, s.Normed.View([n * L, di]), _eps,
                s.Proj.View([n * L, di], [pw, 1]), NormGroupSize, _normBeforeGate);
        }
        using (context.Op("out_proj"))
        {
            OutProj.Forward(context, s.Normed.View([n * L, di]), y);
        }
    }

    /// <inheritdoc />
    public override Action CreateDecodeStep(MambaContext context, Tensor x, Tensor y, TensorSet scratch, MixerState state) =>
        CreateStep(context, x, y, scratch, state, null)!;  // without a pre-norm, always a step

    /// <inheritdoc />
    private protected override Action? CreateNativeBlockStep(MambaContext context, Tensor x, Tensor y, TensorSet scratch, MixerState state,
        StepPreNorm preNorm) => CreateStep(context, x, y, scratch, state, preNorm);

    // With a pre-norm, only the one native call takes it (null where the step runs as separate ops).
    private Action? CreateStep(MambaContext context, Tensor x, Tensor y, TensorSet scratch, MixerState state, StepPreNorm? preNorm)
    {
        var s = (Scratch)scratch;
        long batch = x.Shape[0], pw = ProjWidth, cd = ConvDim, di = _inner, gn = _groups * _state;
        var proj = s.Proj.View([batch, pw]);
        var z = s.Proj.View([batch, di], [pw, 1]);
        var dt = s.Proj.View([batch, _heads], [pw, 1], di + cd);
        var xbc = s.Xbc.View([batch, cd]);
        var xs = s.Xbc.View([batch, _heads, _headDim], [cd, _headDim, 1]);
        var b = s.Xbc.View([batch, _groups, _state], [cd, _state, 1], di);
        var c = s.Xbc.View([batch, _groups, _state], [cd, _state, 1], di + gn);
        var y3 = s.Y.View([batch, _heads, _headDim]);
        var y2 = s.Y.View([batch, di]);
        var normed = s.Normed.View([batch, di]);
        var prefetch = DecodePrefetch.Create(context, OutProj.Weight, NextDecodeWeight, batch);
        if (prefetch is null)
        {
            // The whole mixer in one native call (mamba_mamba2_step): the four ops below, or on CUDA, where it can,
            // three kernels with the gated norm folded into the state update and out_proj.
            return () => Kernels.Mamba2Step(context, x, InProj.Weight, InProj.Bias, state.Conv, Conv.Weight, Conv.Bias, DtBias, A, D, state.Ssm,
                NormWeight, OutProj.Weight, OutProj.Bias, y, proj, xbc, y2, normed, NormGroupSize, _eps, _normBeforeGate, _dtMin, _dtMax, preNorm);
        }
        if (preNorm is not null)
        {
            return null;
        }
        return () =>
        {
            // in_proj with the conv step of its xBC columns [di, di + cd) in one call: one kernel on CUDA
            Kernels.LinearConv1dUpdate(context, x, InProj.Weight, InProj.Bias, proj, di, state.Conv, Conv.Weight, Conv.Bias, xbc, silu: true);
            prefetch?.Invoke();  // out_proj and the next in_proj into L2 while the small kernels run
            Kernels.SsdStateUpdate(context, state.Ssm, xs, dt, A, b, c, y3, D, null, DtBias, dtSoftplus: true, _dtMin, _dtMax);
            Kernels.GatedRmsNorm(context, y2, NormWeight, normed, _eps, z, NormGroupSize, _normBeforeGate);
            OutProj.Forward(context, normed, y);
        };
    }

    /// <inheritdoc />
    internal override Tensor? DecodeFirstWeight => InProj.Weight;

    /// <inheritdoc />
    public override void Dispose()
    {
        InProj.Dispose();
        Conv.Dispose();
        DtBias.Dispose();
        A.Dispose();
        D.Dispose();
        NormWeight.Dispose();
        OutProj.Dispose();
    }
}
