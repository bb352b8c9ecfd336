using Mamba.Native;
using Mamba.Ops;
using Mamba.Runtime;
using Mamba.Tensors;
using static Mamba.Tests.Ops.OpTestSupport;

namespace Mamba.Tests.Ops;

[TestFixture]
public class Mamba2StepTests
{
    private const int Batch = 2, Hidden = 8, Heads = 2, HeadDim = 4, Groups = 1, State = 4, Width = 4;
    private const int Inner = Heads * HeadDim, ConvDim = Inner + 2 * Groups * State, Proj = Inner + ConvDim + Heads;
    private const float Eps = 1e-5f;

    [TestCaseSource(typeof(TestSupport), nameof(TestSupport.Devices))]
    public void MapsArgumentsAndRunsTheWholeMixerStep(Device device)
    {
        using var ctx = TestSupport.ContextFor(device);
        var rng = new Random(9);
        var x = Rand(rng, Batch * Hidden);
        var wIn = Rand(rng, Proj * Hidden, -0.5, 0.5);
        var bIn = Rand(rng, Proj);
        var convState = Rand(rng, Batch * ConvDim * (Width - 1));
        var convW = Rand(rng, ConvDim * Width);
        var convB = Rand(rng, ConvDim);
        var dtBias = Rand(rng, Heads, -3, -1);
        var a = Rand(rng, Heads, -4, -0.5);
        var d = Rand(rng, Heads);
        var ssm = Rand(rng, Batch * Heads * HeadDim * State);
        var normW = Rand(rng, Inner, 0.5, 1.5);
        var wOut = Rand(rng, Hidden * Inner, -0.3, 0.3);
        var bOut = Rand(rng, Hidden);

        // float64: in_proj -> conv step + SiLU over xBC -> SSD step (dt bias, softplus) -> gated RMSNorm -> out_proj
        var y = new double[Batch * Hidden];
        var convNext = new double[convState.Length];
        var ssmNext = new double[ssm.Length];
        for (var r = 0; r < Batch; r++)
        {
            var proj = ReferenceLinear(x[(r * Hidden)..((r + 1) * Hidden)], wIn, bIn, 1, Hidden, Proj);
            var xbc = new double[ConvDim];
            for (var c = 0; c < ConvDim; c++)
            {
                var at = (r * ConvDim + c) * (Width - 1);
                double Input(int k) => k < Width - 1 ? convState[at + k] : proj[Inner + c];
                double acc = convB[c];
                for (var k = 0; k < Width; k++)
                {
                    acc += convW[c * Width + k] * Input(k);
                }
                xbc[c] = Silu(acc);
                for (var k = 0; k < Width - 1; k++)
                {
                    convNext[at + k] = Input(k + 1);
                }
            }
            var gated = new double[Inner];
            double sumSq = 0;
            for (var h = 0; h < Heads; h++)
            {
                var dt = Softplus(proj[Inner + ConvDim + h] + dtBias[h]);
                for (var p = 0; p < HeadDim; p++)
                {
                    var xv = xbc[h * HeadDim + p];
                    double acc = 0;
                    for (var n = 0; n < State; n++)
                    {
                        var i = ((r * Heads + h) * HeadDim + p) * State + n;
                        ssmNext[i] = Math.Exp(dt * a[h]) * ssm[i] + dt * xv * xbc[Inner + n];
                        acc += xbc[Inner + State + n] * ssmNext[i];
                    }
                    var c = h * HeadDim + p;
                    gated[c] = (acc + d[h] * xv) * Silu(proj[c]);
                    sumSq += gated[c] * gated[c];
                }
            }
            var inv = 1 / Math.Sqrt(sumSq / Inner + Eps);
            for (var o = 0; o < Hidden; o++)
            {
                double acc = bOut[o];
                for (var c = 0; c < Inner; c++)
                {
                    acc += wOut[o * Inner + c] * gated[c] * inv * normW[c];
                }
                y[r * Hidden + o] = acc;
            }
        }

        using var tx = Upload(ctx, x, Batch, Hidden);
        using var twIn = Upload(ctx, wIn, Proj, Hidden);
        using var tbIn = Upload(ctx, bIn, Proj);
        using var tConv = Upload(ctx, convState, Batch, ConvDim, Width - 1);
        using var tConvW = Upload(ctx, convW, ConvDim, Width);
        using var tConvB = Upload(ctx, convB, ConvDim);
        using var tDtBias = Upload(ctx, dtBias, Heads);
        using var tA = Upload(ctx, a, Heads);
        using var tD = Upload(ctx, d, Heads);
        using var tSsm = Upload(ctx, ssm, Batch, Heads, HeadDim, State);
        using var tNormW = Upload(ctx, normW, Inner);
        using var twOut = Upload(ctx, wOut, Hidden, Inner);
        using var tbOut = Upload(ctx, bOut, Hidden);
        using var ty = Poisoned(ctx, Batch, Hidden);
        using var projScratch = Poisoned(ctx, Batch, Proj);
        using var xbcScratch = Poisoned(ctx, Batch, ConvDim);
        using var yInnerScratch = Poisoned(ctx, Batch, Inner);
        using var normedScratch = Poisoned(ctx, Batch, Inner);
        Kernels.Mamba2Step(ctx, tx, twIn, tbIn, tConv, tConvW, tConvB, tDtBias, tA, tD, tSsm, tNormW, twOut, tbOut, ty, projScratch, xbcScratch,
            yInnerScratch, normedScratch, 0, Eps, normBeforeGate: false, 0f, float.PositiveInfinity);
        AssertClose(ty, y, 1e-4);
        AssertClose(tConv, convNext);
        AssertClose(tSsm, ssmNext, 1e-4);
    }

    [TestCaseSource(typeof(TestSupport), nameof(TestSupport.Devices))]
    public void PreNormRunsTheBlocksNormFirst(Device device)
    {
        // One row: on CUDA the norm then runs inside in_proj, so the results agree to rounding.
        using var ctx = TestSupport.ContextFor(device);
        var rng = new Random(10);
        var x = Rand(rng, Hidden, -2, 2);
        var residual = Rand(rng, Hidden, -2, 2);
        var convState = Rand(rng, ConvDim * (Width - 1));
        var ssm = Rand(rng, Heads * HeadDim * State);
        using var tx = Upload(ctx, x, 1, Hidden);
        using var tRes = Upload(ctx, residual, 1, Hidden);
        using var tPreW = Upload(ctx, Rand(rng, Hidden, 0.5, 1.5), Hidden);
        using var twIn = Upload(ctx, Rand(rng, Proj * Hidden, -0.5, 0.5), Proj, Hidden);
        using var tConvW = Upload(ctx, Rand(rng, ConvDim * Width), ConvDim, Width);
        using var tDtBias = Upload(ctx, Rand(rng, Heads, -3, -1), Heads);
        using var tA = Upload(ctx, Rand(rng, Heads, -4, -0.5), Heads);
        using var tNormW = Upload(ctx, Rand(rng, Inner, 0.5, 1.5), Inner);
        using var twOut = Upload(ctx, Rand(rng, Hidden * Inner, -0.3, 0.3), Hidden, Inner);
        using var proj = Poisoned(ctx, 1, Proj);
        using var xbc = Poisoned(ctx, 1, ConvDim);
        using var yInner = Poisoned(ctx, 1, Inner);
        using var gateNormed = Poisoned(ctx, 1, Inner);
        using var normed = Poisoned(ctx, 1, Hidden);

        using var convRef = Upload(ctx, convState, 1, ConvDim, Width - 1);
        using var ssmRef = Upload(ctx, ssm, 1, Heads, HeadDim, State);
        using var sumRef = Poisoned(ctx, 1, Hidden);
        using var yRef = Poisoned(ctx, 1, Hidden);
        Kernels.RmsNorm(ctx, tx, tPreW, normed, Eps, tRes, sumRef);
        Kernels.Mamba2Step(ctx, normed, twIn, null, convRef, tConvW, null, tDtBias, tA, null, ssmRef, tNormW, twOut, null, yRef, proj, xbc, yInner,
            gateNormed, 0, Eps, normBeforeGate: false, 0f, float.PositiveInfinity);

        using var conv = Upload(ctx, convState, 1, ConvDim, Width - 1);
        using var ssmState = Upload(ctx, ssm, 1, Heads, HeadDim, State);
        using var sum = Poisoned(ctx, 1, Hidden);
        using var y = Poisoned(ctx, 1, Hidden);
        Kernels.Mamba2Step(ctx, tx, twIn, null, conv, tConvW, null, tDtBias, tA, null, ssmState, tNormW, twOut, null, y, proj, xbc, yInner, gateNormed,
            0, Eps, normBeforeGate: false, 0f, float.PositiveInfinity, new StepPreNorm(tPreW, Eps, tRes, sum, normed));
        AssertClose(sum, Array.ConvertAll(sumRef.ToFloatArray(), v => (double)v), 1e-6);
        AssertClose(y, Array.ConvertAll(yRef.ToFloatArray(), v => (double)v), 1e-4);
        AssertClose(conv, Array.ConvertAll(convRef.ToFloatArray(), v => (double)v), 1e-4);
        AssertClose(ssmState, Array.ConvertAll(ssmRef.ToFloatArray(), v => (double)v), 1e-4);
    }

    [Test]
    public void NativeErrorSurfacesTyped()
    {
        using var ctx = new MambaContext(Device.Cpu);
        using var x = Tensor.Empty(ctx, DType.Float32, Batch, Hidden);
        using var wIn = Tensor.Empty(ctx, DType.Float32, Proj, Hidden);
        using var conv = Tensor.Empty(ctx, DType.Float32, Batch, ConvDim, Width - 1);
        using var convW = Tensor.Empty(ctx, DType.Float32, ConvDim, Width);
        using var a = Tensor.Empty(ctx, DType.Float32, Heads);
        using var ssm = Tensor.Empty(ctx, DType.Float32, Batch, Heads, HeadDim, State);
        using var normW = Tensor.Empty(ctx, DType.Float32, Inner);
        using var wOutWrong = Tensor.Empty(ctx, DType.Float32, Hidden, Inner + 1);
        using var y = Tensor.Empty(ctx, DType.Float32, Batch, Hidden);
        using var proj = Tensor.Empty(ctx, DType.Float32, Batch, Proj);
        using var xbc = Tensor.Empty(ctx, DType.Float32, Batch, ConvDim);
        using var yInner = Tensor.Empty(ctx, DType.Float32, Batch, Inner);
        using var normed = Tensor.Empty(ctx, DType.Float32, Batch, Inner);
        var e = Assert.Throws<MambaInvalidArgumentException>(() => Kernels.Mamba2Step(ctx, x, wIn, null, conv, convW, null, null, a, null, ssm, normW,
            wOutWrong, null, y, proj, xbc, yInner, normed, 0, Eps, false, 0f, float.PositiveInfinity));
        Assert.That(e!.Message, Does.StartWith("mamba_mamba2_step: out_proj (mamba_linear): ").And.Contain("'weight'"));
    }
}
