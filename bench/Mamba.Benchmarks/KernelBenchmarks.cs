using BenchmarkDotNet.Attributes;
using Mamba.Ops;
using Mamba.Runtime;
using Mamba.Tensors;

namespace Mamba.Benchmarks;

/// <summary>Shared setup of the kernel benchmarks: a context on the benchmark's device and random tensors that are all
/// freed at the end. Every benchmark calls one op through the managed API (bindings included) and synchronizes, so
/// the time is that of the op as a caller sees it.</summary>
public abstract class KernelBenchmarkBase
{
    private readonly List<Tensor> _tensors = [];
    private Random _rng = new(1);

    /// <summary>The context of the benchmark's device.</summary>
    protected MambaContext Ctx { get; private set; } = null!;

    [ParamsSource(typeof(DeviceParams), nameof(DeviceParams.Available))]
    public string Device { get; set; } = "cpu";

    /// <summary>Opens the context; derived setups call this first.</summary>
    protected void Open()
    {
        Ctx = new MambaContext(Runtime.Device.Parse(Device));
        _rng = new Random(1);
    }

    /// <summary>A tensor of uniform values in [lo, hi), owned by the benchmark.</summary>
    protected Tensor Rand(DType dtype, float lo, float hi, params long[] shape)
    {
        var n = checked((int)shape.Aggregate(1L, (a, b) => a * b));
        var values = new float[n];
        for (var i = 0; i < n; i++)
        {
            values[i] = lo + (hi - lo) * (float)_rng.NextDouble();
        }
        return Keep(Tensor.FromHost<float>(Ctx, values, shape, dtype));
    }

    /// <summary>A bfloat16 tensor of uniform values in [-1, 1).</summary>
    protected Tensor Bf16(params long[] shape) => Rand(DType.BFloat16, -1f, 1f, shape);

    /// <summary>A float32 tensor of uniform values in [lo, hi).</summary>
    protected Tensor F32(float lo, float hi, params long[] shape) => Rand(DType.Float32, lo, hi, shape);

    /// <summary>A tensor owned by the benchmark.</summary>
    protected Tensor Keep(Tensor t)
    {
        _tensors.Add(t);
        return t;
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var t in _tensors)
        {
            t.Dispose();
        }
        _tensors.Clear();
        Ctx.Dispose();
    }
}

/// <summary>The ops of a decode step at the mamba-130m / mamba2-130m shapes (hidden 768, inner 1536, Mamba-1 state 16,
/// Mamba-2 24 heads of 64 with state 128, vocabulary 50280), bf16 weights, activations and conv states, float32 SSM
/// states, for <see cref="Batch"/> sequences. Every input holds random values (outputs of one op that feed another are
/// filled too, so no op reads uninitialized memory).</summary>
[MemoryDiagnoser]
public class DecodeKernelBenchmarks : KernelBenchmarkBase
{
    private const int Hidden = 768, Inner = 1536, State1 = 16, Rank = 48, Width = 4, Heads = 24, HeadDim = 64, State2 = 128, Vocab = 50280;
    private Tensor _x = null!, _inProjW = null!, _xz = null!;
    private Tensor _convIn = null!, _convState = null!, _convW = null!, _convB = null!, _convOut = null!;
    private Tensor _ssm = null!, _dt = null!, _a1 = null!, _b1 = null!, _c1 = null!, _d1 = null!, _dtBias1 = null!, _y1 = null!;
    private Tensor _dtProjW = null!, _xdblDt = null!;
    private Tensor _ssd = null!, _x2 = null!, _dt2 = null!, _a2 = null!, _b2 = null!, _c2 = null!, _d2 = null!, _dtBias2 = null!, _y2 = null!;
    private Tensor _gateW = null!, _gated = null!, _z = null!;
    private Tensor _ids = null!, _table = null!, _embedded = null!, _logits = null!, _probs = null!, _tokens = null!;

    [Params(1, 8)]
    public int Batch { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        Open();
        long b = Batch;
        _x = Bf16(b, Hidden);
        _inProjW = Rand(DType.BFloat16, -0.05f, 0.05f, 2 * Inner, Hidden);
        _xz = Keep(Tensor.Empty(Ctx, DType.BFloat16, b, 2 * Inner));
        _convIn = Bf16(b, Inner);
        _convState = Bf16(b, Inner, Width - 1);
        _convW = Bf16(Inner, Width);
        _convB = Bf16(Inner);
        _convOut = Bf16(b, Inner);
        _ssm = F32(-1f, 1f, b, Inner, State1);
        _dt = Bf16(b, Inner);
        _a1 = F32(-8f, -0.5f, Inner, State1);
        _b1 = Bf16(b, 1, State1);
        _c1 = Bf16(b, 1, State1);
        _d1 = F32(-1f, 1f, Inner);
        _dtBias1 = F32(-4f, -2f, Inner);
        _y1 = Keep(Tensor.Empty(Ctx, DType.BFloat16, b, Inner));
        _dtProjW = Rand(DType.BFloat16, -0.1f, 0.1f, Inner, Rank);
        _xdblDt = Bf16(b, Rank);
        _ssd = F32(-1f, 1f, b, Heads, HeadDim, State2);
        _x2 = Bf16(b, Heads, HeadDim);
        _dt2 = Bf16(b, Heads);
        _a2 = F32(-8f, -1f, Heads);
        _b2 = Bf16(b, 1, State2);
        _c2 = Bf16(b, 1, State2);
        _d2 = F32(-1f, 1f, Heads);
        _dtBias2 = F32(-4f, -2f, Heads);
        _y2 = Keep(Tensor.Empty(Ctx, DType.BFloat16, b, Heads, HeadDim));
        _gateW = Bf16(Inner);
        _z = Bf16(b, Inner);
        _gated = Keep(Tensor.Empty(Ctx, DType.BFloat16, b, Inner));
        _ids = Keep(Tensor.FromHost<int>(Ctx, Enumerable.Range(0, Batch).Select(i => 7 + 1000 * i).ToArray(), [b]));
        _table = Rand(DType.BFloat16, -0.05f, 0.05f, Vocab, Hidden);
        _embedded = Keep(Tensor.Empty(Ctx, DType.BFloat16, b, Hidden));
        _logits = Rand(DType.Float32, -3f, 3f, b, Vocab);
        _probs = Keep(Tensor.Empty(Ctx, DType.Float32, b, Vocab));
        _tokens = Keep(Tensor.FromHost<int>(Ctx, new int[Batch], [b]));
    }

    /// <summary>in_proj GEMV (1536 x 2 outputs from 768; 4.7 MB of bf16 weights).</summary>
    [Benchmark]
    public void InProjGemv()
    {
        Kernels.Linear(Ctx, _x, _inProjW, _xz);
        Ctx.Synchronize();
    }

    /// <summary>LM head GEMV (50280 x 768, 77 MB of bf16 weights).</summary>
    [Benchmark]
    public void LmHeadGemv()
    {
        Kernels.Linear(Ctx, _x, _table, _logits);
        Ctx.Synchronize();
    }

    /// <summary>in_proj GEMV with the conv step of its x half, as the decode steps run it (one kernel on CUDA).</summary>
    [Benchmark]
    public void InProjGemvWithConvStep()
    {
        Kernels.LinearConv1dUpdate(Ctx, _x, _inProjW, null, _xz, 0, _convState, _convW, _convB, _convOut, silu: true);
        Ctx.Synchronize();
    }

    [Benchmark]
    public void ConvStep()
    {
        Kernels.CausalConv1dUpdate(Ctx, _convIn, _convState, _convW, _convOut, silu: true, _convB);
        Ctx.Synchronize();
    }

    /// <summary>Mamba-1 state update with dt given.</summary>
    [Benchmark]
    public void SelectiveStateUpdate()
    {
        Kernels.SelectiveStateUpdate(Ctx, _ssm, _convOut, _dt, _a1, _b1, _c1, _y1, _d1, _z, _dtBias1, dtSoftplus: true);
        Ctx.Synchronize();
    }

    /// <summary>Mamba-1 state update computing dt from the dt_proj weight (the model's decode path up to 8 sequences).</summary>
    [Benchmark]
    public void SelectiveStateUpdateWithDtProjection()
    {
        Kernels.SelectiveStateUpdate(Ctx, _ssm, _convOut, _xdblDt, _a1, _b1, _c1, _y1, _d1, _z, _dtBias1, dtSoftplus: true, dtProjWeight: _dtProjW);
        Ctx.Synchronize();
    }

    /// <summary>Mamba-2 state update, 24 heads of 64 x 128 float32 state.</summary>
    [Benchmark]
    public void SsdStateUpdate()
    {
        Kernels.SsdStateUpdate(Ctx, _ssd, _x2, _dt2, _a2, _b2, _c2, _y2, _d2, dtBias: _dtBias2, dtSoftplus: true);
        Ctx.Synchronize();
    }

    /// <summary>Gated RMSNorm of the Mamba-2 mixer (norm before gate off: the gate multiplies first).</summary>
    [Benchmark]
    public void GatedRmsNorm()
    {
        Kernels.GatedRmsNorm(Ctx, _convOut, _gateW, _gated, 1e-5f, _z, groupSize: Inner);
        Ctx.Synchronize();
    }

    [Benchmark]
    public void Embedding()
    {
        Kernels.Embedding(Ctx, _ids, _table, _embedded);
        Ctx.Synchronize();
    }

    [Benchmark]
    public void SampleGreedy()
    {
        Kernels.Sample(Ctx, _logits, _tokens, SamplingParams.Greedy);
        Ctx.Synchronize();
    }

    [Benchmark]
    public void SampleTopKTopP()
    {
        Kernels.Sample(Ctx, _logits, _tokens, new SamplingParams(Temperature: 0.8f, TopK: 40, TopP: 0.9f, Seed: 7), step: 3);
        Ctx.Synchronize();
    }

    [Benchmark]
    public void LogSoftmax()
    {
        Kernels.Softmax(Ctx, _logits, _probs, log: true);
        Ctx.Synchronize();
    }

    /// <summary>The L2 prefetch hint on the embedding table (a no-op on the CPU and with MAMBA_CUDA_L2_PREFETCH=off;
    /// otherwise this times the call and the side-stream join of the synchronize).</summary>
    [Benchmark]
    public void PrefetchL2()
    {
        Kernels.PrefetchL2(Ctx, _table);
        Ctx.Synchronize();
    }
}

/// <summary>The sequence ops of a prefill piece at the mamba-130m / mamba2-130m shapes: <see cref="Tokens"/> tokens of
/// one sequence, bf16 activations and weights; the Mamba-1 scan and conv read (length, channels) buffers through
/// channel-major views as the model does. Every input holds random values.</summary>
[MemoryDiagnoser]
public class PrefillKernelBenchmarks : KernelBenchmarkBase
{
    private const int Hidden = 768, Inner = 1536, State1 = 16, Width = 4, Heads = 24, HeadDim = 64, State2 = 128, DtRank = 48;
    private Tensor _x = null!, _inProjW = null!, _xz = null!;
    private Tensor _u = null!, _convW = null!, _convB = null!, _uc = null!;
    private Tensor _delta = null!, _a1 = null!, _b1 = null!, _c1 = null!, _d1 = null!, _z1 = null!, _deltaBias = null!, _y1 = null!, _ssm = null!;
    private Tensor _x2 = null!, _dt2 = null!, _a2 = null!, _b2 = null!, _c2 = null!, _d2 = null!, _dtBias2 = null!, _y2 = null!, _ssdState = null!;
    private Tensor _gateW = null!, _z2 = null!, _gated = null!;
    private Tensor _dtIn = null!, _dtProjW = null!, _dtOut = null!, _dt = null!;

    [Params(512)]
    public int Tokens { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        Open();
        long l = Tokens;
        _x = Bf16(l, Hidden);
        _inProjW = Rand(DType.BFloat16, -0.05f, 0.05f, 2 * Inner, Hidden);
        _xz = Keep(Tensor.Empty(Ctx, DType.BFloat16, l, 2 * Inner));
        // (1, Inner, L) channel-major views of (L, Inner) row-major buffers, as the Mamba-1 mixer passes them.
        var u = Bf16(l, Inner);
        _u = Keep(u.View([1, Inner, l], [l * Inner, 1, Inner]));
        _convW = Bf16(Inner, Width);
        _convB = Bf16(Inner);
        _uc = Keep(Bf16(l, Inner).View([1, Inner, l], [l * Inner, 1, Inner]));
        _delta = Keep(Bf16(l, Inner).View([1, Inner, l], [l * Inner, 1, Inner]));
        _a1 = F32(-8f, -0.5f, Inner, State1);
        _b1 = Keep(Bf16(l, State1).View([1, 1, State1, l], [l * State1, State1, 1, State1]));
        _c1 = Keep(Bf16(l, State1).View([1, 1, State1, l], [l * State1, State1, 1, State1]));
        _d1 = F32(-1f, 1f, Inner);
        _z1 = Keep(Bf16(l, Inner).View([1, Inner, l], [l * Inner, 1, Inner]));
        _deltaBias = F32(-4f, -2f, Inner);
        _y1 = Keep(Keep(Tensor.Empty(Ctx, DType.BFloat16, l, Inner)).View([1, Inner, l], [l * Inner, 1, Inner]));
        _ssm = F32(-1f, 1f, 1, Inner, State1);
        _x2 = Bf16(1, l, Heads, HeadDim);
        _dt2 = Bf16(1, l, Heads);
        _a2 = F32(-8f, -1f, Heads);
        _b2 = Bf16(1, l, 1, State2);
        _c2 = Bf16(1, l, 1, State2);
        _d2 = F32(-1f, 1f, Heads);
        _dtBias2 = F32(-4f, -2f, Heads);
        _y2 = Keep(Tensor.Empty(Ctx, DType.BFloat16, 1, l, Heads, HeadDim));
        _ssdState = F32(-1f, 1f, 1, Heads, HeadDim, State2);
        _gateW = Bf16(Inner);
        _z2 = Bf16(l, Inner);
        _gated = Keep(Tensor.Empty(Ctx, DType.BFloat16, l, Inner));
        // dt_proj's input: the dt_rank first columns of x_proj's (L, rank + 2 N) output; its (L, Inner) output seen
        // channel-major by the scan.
        _dtIn = Keep(Bf16(l, DtRank + 2 * State1).View([l, DtRank], [DtRank + 2 * State1, 1]));
        _dtProjW = Rand(DType.BFloat16, -0.1f, 0.1f, Inner, DtRank);
        _dtOut = Keep(Tensor.Empty(Ctx, DType.BFloat16, l, Inner));
        _dt = Keep(_dtOut.View([1, Inner, l], [l * Inner, 1, Inner]));
        Kernels.LinearSoftplus(Ctx, _dtIn, _dtProjW, _dtOut, _deltaBias);
    }

    /// <summary>in_proj GEMM (tokens x 768 by 768 x 3072).</summary>
    [Benchmark]
    public void InProjGemm()
    {
        Kernels.Linear(Ctx, _x, _inProjW, _xz);
        Ctx.Synchronize();
    }

    [Benchmark]
    public void CausalConv1d()
    {
        Kernels.CausalConv1d(Ctx, _u, _convW, _uc, silu: true, _convB);
        Ctx.Synchronize();
    }

    /// <summary>The Mamba-1 selective scan with z, D, delta bias and softplus, carrying the state in place.</summary>
    [Benchmark]
    public void SelectiveScan()
    {
        Kernels.SelectiveScan(Ctx, _uc, _delta, _a1, _b1, _c1, _y1, _d1, _z1, _deltaBias, deltaSoftplus: true, _ssm, _ssm);
        Ctx.Synchronize();
    }

    /// <summary>dt_proj with the dt bias and softplus on its sums (tokens x 48 by 48 x 1536), as the Mamba-1 prefill runs
    /// it.</summary>
    [Benchmark]
    public void DtProjSoftplus()
    {
        Kernels.LinearSoftplus(Ctx, _dtIn, _dtProjW, _dtOut, _deltaBias);
        Ctx.Synchronize();
    }

    /// <summary>The selective scan on the dt that <see cref="DtProjSoftplus"/> made: no delta bias, no softplus.</summary>
    [Benchmark]
    public void SelectiveScanDtGiven()
    {
        Kernels.SelectiveScan(Ctx, _uc, _dt, _a1, _b1, _c1, _y1, _d1, _z1, null, deltaSoftplus: false, _ssm, _ssm);
        Ctx.Synchronize();
    }

    /// <summary>The Mamba-2 SSD with the mixer's options: D, dt bias and softplus, no z (the gated norm applies it), the
    /// final state written (compact tensors; the mixer passes strided views of one conv output).</summary>
    [Benchmark]
    public void Ssd()
    {
        Kernels.Ssd(Ctx, _x2, _dt2, _a2, _b2, _c2, _y2, _d2, dtBias: _dtBias2, dtSoftplus: true, finalStates: _ssdState);
        Ctx.Synchronize();
    }

    [Benchmark]
    public void GatedRmsNorm()
    {
        Kernels.GatedRmsNorm(Ctx, _z2, _gateW, _gated, 1e-5f, _z2, groupSize: Inner);
        Ctx.Synchronize();
    }
}
