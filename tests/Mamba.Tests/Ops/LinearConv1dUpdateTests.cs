using Mamba.Ops;
using Mamba.Runtime;
using Mamba.Tensors;
using static Mamba.Tests.Ops.OpTestSupport;

namespace Mamba.Tests.Ops;

[TestFixture]
public class LinearConv1dUpdateTests
{
    private const int Rows = 2, In = 16, Out = 12, Offset = 3, Dim = 6, Width = 4;  // In: W rows 64 B apart, so CUDA runs the fused kernel

    [TestCaseSource(typeof(TestSupport), nameof(TestSupport.Devices))]
    public void MapsArgumentsAndRunsTheConvStepOnItsColumns(Device device)
    {
        using var ctx = TestSupport.ContextFor(device);
        var rng = new Random(3);
        var x = Rand(rng, Rows * In);
        var w = Rand(rng, Out * In);
        var b = Rand(rng, Out);
        var state = Rand(rng, Rows * Dim * (Width - 1));
        var cw = Rand(rng, Dim * Width);
        var cb = Rand(rng, Dim);
        var y = ReferenceLinear(x, w, b, Rows, In, Out);
        var convY = new double[Rows * Dim];
        var newState = new double[Rows * Dim * (Width - 1)];
        for (var r = 0; r < Rows; r++)
        {
            for (var d = 0; d < Dim; d++)
            {
                // the window: the state's width - 1 inputs, oldest first, then the projection's column Offset + d
                double Input(int k) => k < Width - 1 ? state[(r * Dim + d) * (Width - 1) + k] : y[r * Out + Offset + d];
                double acc = cb[d];
                for (var k = 0; k < Width; k++)
                {
                    acc += cw[d * Width + k] * Input(k);
                }
                convY[r * Dim + d] = Silu(acc);
                for (var k = 0; k < Width - 1; k++)
                {
                    newState[(r * Dim + d) * (Width - 1) + k] = Input(k + 1);
                }
            }
        }

        using var tx = Upload(ctx, x, Rows, In);
        using var tw = Upload(ctx, w, Out, In);
        using var tb = Upload(ctx, b, Out);
        using var ty = Poisoned(ctx, Rows, Out);
        using var ts = Upload(ctx, state, Rows, Dim, Width - 1);
        using var tcw = Upload(ctx, cw, Dim, Width);
        using var tcb = Upload(ctx, cb, Dim);
        using var tcy = Poisoned(ctx, Rows, Dim);
        Kernels.LinearConv1dUpdate(ctx, tx, tw, tb, ty, Offset, ts, tcw, tcb, tcy, silu: true);
        AssertClose(ty, y);
        AssertClose(tcy, convY);
        AssertClose(ts, newState);
    }

    [Test]
    public void NativeErrorSurfacesTyped()
    {
        using var ctx = new MambaContext(Device.Cpu);
        using var x = Tensor.Empty(ctx, DType.Float32, Rows, In);
        using var w = Tensor.Empty(ctx, DType.Float32, Out, In);
        using var y = Tensor.Empty(ctx, DType.Float32, Rows, Out);
        using var state = Tensor.Empty(ctx, DType.Float32, Rows, Dim, Width - 1);
        using var cw = Tensor.Empty(ctx, DType.Float32, Dim, Width);
        using var cy = Tensor.Empty(ctx, DType.Float32, Rows, Dim);
        AssertInvalidArgument(() => Kernels.LinearConv1dUpdate(ctx, x, w, null, y, Out - Dim + 1, state, cw, null, cy, true),
            "linear_conv1d_update", "conv_offset");
        AssertInvalidArgument(() => Kernels.LinearConv1dUpdate(ctx, x, w, null, y, 0, cy, cw, null, cy, true),
            "linear_conv1d_update", "conv_state");
    }
}
