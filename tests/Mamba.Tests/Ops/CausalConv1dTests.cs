using Mamba.Ops;
using Mamba.Runtime;
using Mamba.Tensors;
using static Mamba.Tests.Ops.OpTestSupport;

namespace Mamba.Tests.Ops;

[TestFixture]
public class CausalConv1dTests
{
    private const int Batch = 2, Dim = 5, Len = 7, Width = 4;

    [TestCaseSource(typeof(TestSupport), nameof(TestSupport.Devices))]
    public void MapsArgumentsAndTheUpdateContinuesTheSequence(Device device)
    {
        using var ctx = TestSupport.ContextFor(device);
        var rng = new Random(7);
        var x = Rand(rng, Batch * Dim * Len);
        var w = Rand(rng, Dim * Width);
        var bias = Rand(rng, Dim);
        var init = Rand(rng, Batch * Dim * (Width - 1));
        var next = Rand(rng, Batch * Dim);
        // Input of (b, d) at time t, where times before 0 come from the initial state and time Len is the update's input.
        double In(int b, int d, int t) => t < 0 ? init[(b * Dim + d) * (Width - 1) + (Width - 1 + t)]
            : t == Len ? next[b * Dim + d] : x[(b * Dim + d) * Len + t];
        double Out(int b, int d, int t)
        {
            double acc = bias[d];
            for (var k = 0; k < Width; k++)
            {
                acc += w[d * Width + k] * In(b, d, t - (Width - 1) + k);
            }
            return Silu(acc);
        }

        using var tx = Upload(ctx, x, Batch, Dim, Len);
        using var tw = Upload(ctx, w, Dim, Width);
        using var tb = Upload(ctx, bias, Dim);
        using var ti = Upload(ctx, init, Batch, Dim, Width - 1);
        using var ty = Poisoned(ctx, Batch, Dim, Len);
        using var tf = Poisoned(ctx, Batch, Dim, Width - 1);
        Kernels.CausalConv1d(ctx, tx, tw, ty, silu: true, tb, ti, tf);
        var expected = new double[Batch * Dim * Len];
        var finalExpected = new double[Batch * Dim * (Width - 1)];
        for (var b = 0; b < Batch; b++)
        {
            for (var d = 0; d < Dim; d++)
            {
                for (var t = 0; t < Len; t++)
                {
                    expected[(b * Dim + d) * Len + t] = Out(b, d, t);
                }
                for (var k = 0; k < Width - 1; k++)
                {
                    finalExpected[(b * Dim + d) * (Width - 1) + k] = In(b, d, Len - (Width - 1) + k);
                }
            }
        }
        AssertClose(ty, expected);
        AssertClose(tf, finalExpected, 1e-7);

        using var tn = Upload(ctx, next, Batch, Dim);
        using var ty1 = Poisoned(ctx, Batch, Dim);
        Kernels.CausalConv1dUpdate(ctx, tn, tf, tw, ty1, silu: true, tb);
        var stepExpected = new double[Batch * Dim];
        for (var b = 0; b < Batch; b++)
        {
            for (var d = 0; d < Dim; d++)
            {
                stepExpected[b * Dim + d] = Out(b, d, Len);
            }
        }
        AssertClose(ty1, stepExpected);
    }

    [Test]
    public void NativeErrorSurfacesTyped()
    {
        using var ctx = new MambaContext(Device.Cpu);
        using var x = Tensor.Empty(ctx, DType.Float32, 1, 4, 6);
        using var w = Tensor.Empty(ctx, DType.Float32, 3, 4);
        using var y = Tensor.Empty(ctx, DType.Float32, 1, 4, 6);
        AssertInvalidArgument(() => Kernels.CausalConv1d(ctx, x, w, y, true), "causal_conv1d", "weight");
        using var x1 = Tensor.Empty(ctx, DType.Float32, 1, 4);
        using var state = Tensor.Empty(ctx, DType.Float32, 1, 4, 2);
        using var w4 = Tensor.Empty(ctx, DType.Float32, 4, 4);
        using var y1 = Tensor.Empty(ctx, DType.Float32, 1, 4);
        AssertInvalidArgument(() => Kernels.CausalConv1dUpdate(ctx, x1, state, w4, y1, true), "causal_conv1d_update", "conv_state");
    }
}
