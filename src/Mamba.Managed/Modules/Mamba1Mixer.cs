using System.Globalization;
using Mamba.Models;
using Mamba.Ops;
using Mamba.Runtime;
using Mamba.Tensors;

namespace Mamba.Modules;

/// <summary>Mamba-1 mixer: in_proj -> conv1d + SiLU -> x_proj -> dt_proj (with the dt bias and softplus) -> selective
/// scan (z gate, D) -> out_proj. Up to <see cref="FusedDtProjMaxBatch"/> sequences the decode step projects dt inside the
/// selective state update (one kernel fewer), keeping dt in float32; beyond, dt_proj writes dt (before its bias and
/// softplus, which the state update applies) in the activation type first. With 16-bit activations a sequence's decode
/// can therefore differ by that rounding between batches of up to 8 and larger ones.</summary>
public sealed class Mamba1Mixer : Mixer
{
    private readonly long _hidden, _inner, _rank, _state, _width;

    internal Mamba1Mixer(MambaConfig config, WeightReader w, string prefix)
    {
        _hidden = config.HiddenSize;
        _inner = config.IntermediateSize;
        _rank = config.TimeStepRank;
        _state = config.StateSize;
        _width = config.ConvKernel;
        var p = prefix + "mixer.";
        InProj = new Linear(w.Weight([2 * _inner, _hidden], p + "in_proj.weight"),
            config.UseBias ? w.Weight([2 * _inner], p + "in_proj.bias") : null);
        Conv = new Conv1d(w.Weight([_inner, _width], p + "conv1d.weight"),
            config.UseConvBias ? w.Weight([_inner], p + "conv1d.bias") : null);
        XProj = new Linear(w.Weight([_rank + 2 * _state, _inner], p + "x_proj.weight"), null);
        DtProj = new Linear(w.Weight([_inner, _rank], p + "dt_proj.weight"), null);
        DtBias = w.Float32([_inner], null, p + "dt_proj.bias");
        A = w.Float32([_inner, _state], v => -MathF.Exp(v), p + "A_log");
        D = w.Float32([_inner], null, p + "D");
        OutProj = new Linear(w.Weight([_hidden, _inner], p + "out_proj.weight"),
            config.UseBias ? w.Weight([_hidden], p + "out_proj.bias") : null);
    }

    /// <summary>(2*inner, hidden): x and z.</summary>
    public Linear InProj { get; }

    /// <summary>Depthwise conv over x.</summary>
    public Conv1d Conv { get; }

    /// <summary>(rank + 2*state, inner): dt, B, C.</summary>
    public Linear XProj { get; }

    /// <summary>(inner, rank), applied without bias (the bias goes to the scan, or to the state update, which also
    /// applies this weight when decoding).</summary>
    public Linear DtProj { get; }

    /// <summary>dt_proj bias (inner), float32.</summary>
    public Tensor DtBias { get; }

    /// <summary>A = -exp(A_log) (inner, state), float32.</summary>
    public Tensor A { get; }

    /// <summary>Skip connection (inner), float32.</summary>
    public Tensor D { get; }

    /// <summary>(hidden, inner).</summary>
    public Linear OutProj { get; }

    /// <inheritdoc />
    public override long HiddenSize => _hidden;

    private long XdblWidth => _rank + 2 * _state;

    private sealed class Scratch : TensorSet
    {
        public Scratch(MambaContext c, int rows, int sequences, DType t, Mamba1Mixer m)
        {
            Xz = Alloc(c, t, rows, 2 * m._inner);
            Xc = Alloc(c, t, rows, m._inner);
            Xdbl = Alloc(c, t, rows, m.XdblWidth);
            Dt = Alloc(c, t, rows, m._inner);
            Y = Alloc(c, t, rows, m._inner);
            ConvFinal = Alloc(c, t, sequences, m._inner, m._width - 1);
        }

        public Tensor Xz { get; }
        public Tensor Xc { get; }
        public Tensor Xdbl { get; }
        public Tensor Dt { get; }
        public Tensor Y { get; }
        public Tensor ConvFinal { get; }
    }

    /// <inheritdoc />
    public override MixerState CreateState(MambaContext context, int batch, DType activationDType) =>
        new(context, activationDType, [batch, _inner, _width - 1], [batch, _inner, _state]);

    /// <inheritdoc />
    public override TensorSet CreateScratch(MambaContext context, int rows, int sequences, DType activationDType) =>
        new Scratch(context, rows, sequences, activationDType, this);

    /// <inheritdoc />
    public override void Prefill(MambaContext context, Tensor x, Tensor y, int sequences, int length, TensorSet scratch, MixerState state,
        int firstSequence)
    {
        var s = (Scratch)scratch;
        long n = sequences, L = length, di = _inner, w = XdblWidth;
        using (context.Op("in_proj"))
        {
            InProj.Forward(context, x, s.Xz.View([n * L, 2 * di]));
        }
        // Channel-major views (sequences, dim, len) of row-major (sequences * len, dim) buffers: the scan and conv read
        // them in place.
        var xIn = s.Xz.View([n, di, L], [L * 2 * di, 1, 2 * di]);
        var z = s.Xz.View([n, di, L], [L * 2 * di, 1, 2 * di], di);
        var xc = s.Xc.View([n, di, L], [L * di, 1, di]);
        var convState = state.Conv.Slice(0, firstSequence, n);
        var convFinal = s.ConvFinal.Slice(0, 0, n);
        using (context.Op("conv1d"))
        {
            Conv.Forward(context, xIn, xc, convState, convFinal);
            convFinal.CopyTo(convState);
        }
        using (context.Op("x_proj"))
        {
            XProj.Forward(context, s.Xc.View([n * L, di]), s.Xdbl.View([n * L, w]));
        }
        // dt_proj adds the bias and applies the softplus to its float32 sums (dt rounded once, after the softplus), and
        // the scan takes dt as given: on CUDA its build without them is ~9% faster, on the CPU it skips that work.
        using (context.Op("dt_proj"))
        {
            Kernels.LinearSoftplus(context, s.Xdbl.View([n * L, _rank], [w, 1]), DtProj.Weight, s.Dt.View([n * L, di]), DtBias);
        }
        var b = s.Xdbl.View([n, 1, _state, L], [L * w, _state, 1, w], _rank);
        var c = s.Xdbl.View([n, 1, _state, L], [L * w, _state, 1, w], _rank + _state);
        var dt = s.Dt.View([n, di, L], [L * di, 1, di]);
        var yv = s.Y.View([n, di, L], [L * di, 1, di]);
        var ssm = state.Ssm.Slice(0, firstSequence, n);
        using (context.Op("selective_scan"))
        {
            Kernels.SelectiveScan(context, xc, dt, A, b, c, yv, D, z, deltaBias: null, deltaSoftplus: false, initialState: ssm, finalState: ssm);
        }
        using (context.Op("out_proj"))
        {
            OutProj.Forward(context, s.Y.View([n * L, di]), y);
        }
    }

    /// <summary>Largest decode batch that computes dt inside the state update. The fused kernel reads the dt_proj
    /// weight once per sequence: measured on an H200 (mamba-2.8b shapes) it saves a kernel per layer at batch 1 but
    /// costs about twice the separate projection + update at batch 64.</summary>
    internal const int FusedDtProjMaxBatch = 8;

    /// <summary>Overrides <see cref="FusedDtProjMaxBatch"/> for the decode steps created while it is set, for benchmarks:
    /// a whole number of sequences from 0 (dt_proj always on its own) to 1024.</summary>
    public const string FusedDtMaxBatchVariable = "MAMBA_FUSED_DT_MAX_BATCH";

    /// <summary>The largest decode batch that computes dt inside the state update: <see cref="FusedDtMaxBatchVariable"/>
    /// where set, else <see cref="FusedDtProjMaxBatch"/>.</summary>
    /// <exception cref="FormatException">The variable is set to something other than a whole number 0..1024.</exception>
    internal static int FusedDtMaxBatch()
    {
        var text = Environment.GetEnvironmentVariable(FusedDtMaxBatchVariable);
        if (string.IsNullOrWhiteSpace(text))
        {
            return FusedDtProjMaxBatch;
        }
        if (!int.TryParse(text.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var batch) || batch > 1024)
        {
            throw new FormatException($"{FusedDtMaxBatchVariable} must be a whole number of sequences from 0 to 1024, not '{text}'");
        }
        return batch;
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
        long batch = x.Shape[0], di = _inner, w = XdblWidth;
        var xz = s.Xz.View([batch, 2 * di]);
        var z = s.Xz.View([batch, di], [2 * di, 1], di);
        var xc = s.Xc.View([batch, di]);
        var xdbl = s.Xdbl.View([batch, w]);
        var dtIn = s.Xdbl.View([batch, _rank], [w, 1]);
        var b = s.Xdbl.View([batch, 1, _state], [w, _state, 1], _rank);
        var c = s.Xdbl.View([batch, 1, _state], [w, _state, 1], _rank + _state);
        var yv = s.Y.View([batch, di]);
        var dt = s.Dt.View([batch, di]);
        var fuseDt = batch <= FusedDtMaxBatch();
        var prefetch = DecodePrefetch.Create(context, OutProj.Weight, NextDecodeWeight, batch);
        if (fuseDt && prefetch is null)
        {
            // The whole mixer in one native call (mamba_mamba1_step): the same four ops as below (on CUDA x_proj folded
            // into in_proj at batch 1 and into the conv step from 2 rows), or on CUDA with MAMBA_CUDA_MAMBA1_STEP=fused
            // one kernel.
            return () => Kernels.Mamba1Step(context, x, InProj.Weight, InProj.Bias, state.Conv, Conv.Weight, Conv.Bias, XProj.Weight,
                DtProj.Weight, DtBias, A, D, state.Ssm, OutProj.Weight, OutProj.Bias, y, xz, xc, xdbl, yv, preNorm);
        }
        if (preNorm is not null)
        {
            return null;
        }
        return () =>
        {
            // in_proj with the conv step of its x half (columns [0, di)) in one call: one kernel on CUDA
            Kernels.LinearConv1dUpdate(context, x, InProj.Weight, InProj.Bias, xz, 0, state.Conv, Conv.Weight, Conv.Bias, xc, silu: true);
            prefetch?.Invoke();  // out_proj and the next in_proj into L2 while the small kernels run
            XProj.Forward(context, xc, xdbl);
            // The dt_proj bias is applied once, as DtBias, by the state update (prefill applies it in dt_proj's
            // mamba_linear_softplus).
            if (fuseDt)
            {
                // dt = DtProj.Weight . dtIn inside the state update: one kernel less per layer.
                Kernels.SelectiveStateUpdate(context, state.Ssm, xc, dtIn, A, b, c, yv, D, z, DtBias, dtSoftplus: true,
                    dtProjWeight: DtProj.Weight);
            }
            else
            {
                DtProj.Forward(context, dtIn, dt);
                Kernels.SelectiveStateUpdate(context, state.Ssm, xc, dt, A, b, c, yv, D, z, DtBias, dtSoftplus: true);
            }
            OutProj.Forward(context, yv, y);
        };
    }

    /// <inheritdoc />
    internal override Tensor? DecodeFirstWeight => InProj.Weight;

    /// <inheritdoc />
    public override void Dispose()
    {
        InProj.Dispose();
        Conv.Dispose();
        XProj.Dispose();
        DtProj.Dispose();
        DtBias.Dispose();
        A.Dispose();
        D.Dispose();
        OutProj.Dispose();
    }
}
