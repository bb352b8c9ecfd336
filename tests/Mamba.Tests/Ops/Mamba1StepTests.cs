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
