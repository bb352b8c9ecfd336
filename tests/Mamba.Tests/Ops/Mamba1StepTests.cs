using Mamba.Native;
using Mamba.Ops;
using Mamba.Runtime;
using Mamba.Tensors;
using static Mamba.Tests.Ops.OpTestSupport;

namespace Mamba.Tests.Ops;

[TestFixture]
public class Mamba1StepTests
{
    private const int Batch = 2, Hidden = 8, Inner = 16, Rank = 4, State = 4, Width = 4, Xdbl = Rank + 2 * State;

    [TestCaseSource(typeof(TestSupport), nameof(TestSupport.Devices))]
    public void MapsArgumentsAndRunsTheWholeMixerStep(Device device)
    {
        using var ctx = TestSupport.ContextFor(device);
        var rng = new Random(5);
        var x = Rand(rng, Batch * Hidden);
        var wIn = Rand(rng, 2 * Inner * Hidden, -0.5, 0.5);
        var bIn = Rand(rng, 2 * Inner);
        var convState = Rand(rng, Batch * Inner * (Width - 1));
        var convW = Rand(rng, Inner * Width);
        var convB = Rand(rng, Inner);
        var wX = Rand(rng, Xdbl * Inner, -0.3, 0.3);
        var wDt = Rand(rng, Inner * Rank);
        var dtBias = Rand(rng, Inner, -3, -1);
        var a = Rand(rng, Inner * State, -4, -0.5);
        var d = Rand(rng, Inner);
        var ssm = Rand(rng, Batch * Inner * State);
        var wOut = Rand(rng, Hidden * Inner, -0.3, 0.3);
        var bOut = Rand(rng, Hidden);

        // float64: in_proj -> conv step + SiLU -> x_proj -> dt_proj, softplus -> state update with the z gate -> out_proj
        var y = new double[Batch * Hidden];
        var convNext = new double[convState.Length];
        var ssmNext = new double[ssm.Length];
        for (var r = 0; r < Batch; r++)
        {
            var xz = ReferenceLinear(x[(r * Hidden)..((r + 1) * Hidden)], wIn, bIn, 1, Hidden, 2 * Inner);
            var xc = new double[Inner];
            for (var c = 0; c < Inner; c++)
            {
                var at = (r * Inner + c) * (Width - 1);
                double Input(int k) => k < Width - 1 ? convState[at + k] : xz[c];
                double acc = convB[c];
                for (var k = 0; k < Width; k++)
                {
                    acc += convW[c * Width + k] * Input(k);
                }
                xc[c] = Silu(acc);
                for (var k = 0; k < Width - 1; k++)
                {
                    convNext[at + k] = Input(k + 1);
                }
            }
            var xdbl = new double[Xdbl];
            for (var q = 0; q < Xdbl; q++)
            {
                for (var c = 0; c < Inner; c++)
                {
                    xdbl[q] += wX[q * Inner + c] * xc[c];
                }
            }
            var yInner = new double[Inner];
            for (var c = 0; c < Inner; c++)
            {
                double dt = dtBias[c];
                for (var k = 0; k < Rank; k++)
                {
                    dt += wDt[c * Rank + k] * xdbl[k];
                }
                dt = Softplus(dt);
                double acc = 0;
                for (var n = 0; n < State; n++)
                {
                    var i = (r * Inner + c) * State + n;
                    ssmNext[i] = Math.Exp(dt * a[c * State + n]) * ssm[i] + dt * xc[c] * xdbl[Rank + n];
                    acc += xdbl[Rank + State + n] * ssmNext[i];
                }
                yInner[c] = (acc + d[c] * xc[c]) * Silu(xz[Inner + c]);
            }
            for (var h = 0; h < Hidden; h++)
            {
                double acc = bOut[h];
                for (var c = 0; c < Inner; c++)
                {
                    acc += wOut[h * Inner + c] * yInner[c];
                }
                y[r * Hidden + h] = acc;
            }
        }

        using var tx = Upload(ctx, x, Batch, Hidden);
        using var twIn = Upload(ctx, wIn, 2 * Inner, Hidden);
        using var tbIn = Upload(ctx, bIn, 2 * Inner);
        using var tConv = Upload(ctx, convState, Batch, Inner, Width - 1);
        using var tConvW = Upload(ctx, convW, Inner, Width);
        using var tConvB = Upload(ctx, convB, Inner);
        using var twX = Upload(ctx, wX, Xdbl, Inner);
        using var twDt = Upload(ctx, wDt, Inner, Rank);
        using var tDtBias = Upload(ctx, dtBias, Inner);
        using var tA = Upload(ctx, a, Inner, State);
        using var tD = Upload(ctx, d, Inner);
        using var tSsm = Upload(ctx, ssm, Batch, Inner, State);
        using var twOut = Upload(ctx, wOut, Hidden, Inner);
        using var tbOut = Upload(ctx, bOut, Hidden);
        using var ty = Poisoned(ctx, Batch, Hidden);
        using var xzScratch = Poisoned(ctx, Batch, 2 * Inner);
        using var xcScratch = Poisoned(ctx, Batch, Inner);
        using var xdblScratch = Poisoned(ctx, Batch, Xdbl);
        using var yInnerScratch = Poisoned(ctx, Batch, Inner);
        Kernels.Mamba1Step(ctx, tx, twIn, tbIn, tConv, tConvW, tConvB, twX, twDt, tDtBias, tA, tD, tSsm, twOut, tbOut, ty, xzScratch, xcScratch,
            xdblScratch, yInnerScratch);
        AssertClose(ty, y, 1e-4);
        AssertClose(tConv, convNext);
        AssertClose(tSsm, ssmNext, 1e-4);
    }

    [TestCaseSource(typeof(TestSupport), nameof(TestSupport.Devices))]
    public void PreNormRunsTheBlocksNormFirst(Device device)
    {
        // The step with its pre-norm against RmsNorm (x + residual) and then the step on the norm's output, from the
        // same states: the same results (CUDA folds the norm into in_proj at batch 1 only; these are 2 rows).
        using var ctx = TestSupport.ContextFor(device);
        var rng = new Random(8);
        var x = Rand(rng, Batch * Hidden, -2, 2);
        var residual = Rand(rng, Batch * Hidden, -2, 2);
        var normW = Rand(rng, Hidden, 0.5, 1.5);
        var convState = Rand(rng, Batch * Inner * (Width - 1));
        var ssm = Rand(rng, Batch * Inner * State);
        using var tx = Upload(ctx, x, Batch, Hidden);
        using var tRes = Upload(ctx, residual, Batch, Hidden);
        using var tNormW = Upload(ctx, normW, Hidden);
        using var twIn = Upload(ctx, Rand(rng, 2 * Inner * Hidden, -0.5, 0.5), 2 * Inner, Hidden);
        using var tConvW = Upload(ctx, Rand(rng, Inner * Width), Inner, Width);
        using var twX = Upload(ctx, Rand(rng, Xdbl * Inner, -0.3, 0.3), Xdbl, Inner);
        using var twDt = Upload(ctx, Rand(rng, Inner * Rank), Inner, Rank);
        using var tDtBias = Upload(ctx, Rand(rng, Inner, -3, -1), Inner);
        using var tA = Upload(ctx, Rand(rng, Inner * State, -4, -0.5), Inner, State);
        using var twOut = Upload(ctx, Rand(rng, Hidden * Inner, -0.3, 0.3), Hidden, Inner);
        using var xz = Poisoned(ctx, Batch, 2 * Inner);
        using var xc = Poisoned(ctx, Batch, Inner);
        using var xdbl = Poisoned(ctx, Batch, Xdbl);
        using var yInner = Poisoned(ctx, Batch, Inner);
        using var normed = Poisoned(ctx, Batch, Hidden);

        using var convRef = Upload(ctx, convState, Batch, Inner, Width - 1);
        using var ssmRef = Upload(ctx, ssm, Batch, Inner, State);
        using var sumRef = Poisoned(ctx, Batch, Hidden);
        using var yRef = Poisoned(ctx, Batch, Hidden);
        Kernels.RmsNorm(ctx, tx, tNormW, normed, 1e-5f, tRes, sumRef);
        Kernels.Mamba1Step(ctx, normed, twIn, null, convRef, tConvW, null, twX, twDt, tDtBias, tA, null, ssmRef, twOut, null, yRef, xz, xc, xdbl, yInner);

        using var conv = Upload(ctx, convState, Batch, Inner, Width - 1);
        using var ssmState = Upload(ctx, ssm, Batch, Inner, State);
        using var sum = Poisoned(ctx, Batch, Hidden);
        using var y = Poisoned(ctx, Batch, Hidden);
        Kernels.Mamba1Step(ctx, tx, twIn, null, conv, tConvW, null, twX, twDt, tDtBias, tA, null, ssmState, twOut, null, y, xz, xc, xdbl, yInner,
            new StepPreNorm(tNormW, 1e-5f, tRes, sum, normed));
        AssertClose(sum, Array.ConvertAll(sumRef.ToFloatArray(), v => (double)v), 1e-6);
        AssertClose(y, Array.ConvertAll(yRef.ToFloatArray(), v => (double)v), 1e-5);
        AssertClose(conv, Array.ConvertAll(convRef.ToFloatArray(), v => (double)v), 1e-5);
        AssertClose(ssmState, Array.ConvertAll(ssmRef.ToFloatArray(), v => (double)v), 1e-5);

        // The stream updated in place would be written while other blocks of in_proj still read it.
        var e = Assert.Throws<MambaInvalidArgumentException>(() => Kernels.Mamba1Step(ctx, tx, twIn, null, conv, tConvW, null, twX, twDt, tDtBias, tA,
            null, ssmState, twOut, null, y, xz, xc, xdbl, yInner, new StepPreNorm(tNormW, 1e-5f, tRes, tRes, normed)));
        Assert.That(e!.Message, Does.StartWith("mamba_mamba1_step: ").And.Contain("'residual_out'").And.Contain("overlap"));
    }

    [Test]
    public void NativeErrorSurfacesTyped()
    {
        using var ctx = new MambaContext(Device.Cpu);
        using var x = Tensor.Empty(ctx, DType.Float32, Batch, Hidden);
        using var wIn = Tensor.Empty(ctx, DType.Float32, 2 * Inner, Hidden);
        using var conv = Tensor.Empty(ctx, DType.Float32, Batch, Inner, Width - 1);
        using var convW = Tensor.Empty(ctx, DType.Float32, Inner, Width);
        using var wX = Tensor.Empty(ctx, DType.Float32, Xdbl, Inner);
        using var wDt = Tensor.Empty(ctx, DType.Float32, Inner, Rank);
        using var a = Tensor.Empty(ctx, DType.Float32, Inner, State);
        using var ssm = Tensor.Empty(ctx, DType.Float32, Batch, Inner, State);
        using var wOutWrong = Tensor.Empty(ctx, DType.Float32, Hidden, Inner + 1);
        using var y = Tensor.Empty(ctx, DType.Float32, Batch, Hidden);
        using var xz = Tensor.Empty(ctx, DType.Float32, Batch, 2 * Inner);
        using var xc = Tensor.Empty(ctx, DType.Float32, Batch, Inner);
        using var xdbl = Tensor.Empty(ctx, DType.Float32, Batch, Xdbl);
        using var yInner = Tensor.Empty(ctx, DType.Float32, Batch, Inner);
        var e = Assert.Throws<MambaInvalidArgumentException>(() => Kernels.Mamba1Step(ctx, x, wIn, null, conv, convW, null, wX, wDt, null, a, null, ssm,
            wOutWrong, null, y, xz, xc, xdbl, yInner));
        Assert.That(e!.Message, Does.StartWith("mamba_mamba1_step: out_proj (mamba_linear): ").And.Contain("'weight'"));
    }
}
