using Mamba.Ops;
using Mamba.Runtime;
using Mamba.Tensors;
using static Mamba.Tests.Ops.OpTestSupport;

namespace Mamba.Tests.Ops;

[TestFixture]
public class NormLinearTests
{
    // y = normed W^T + bias in float64.
    private static double[] LinearReference(double[] normed, float[] w, float[] b, int rows, int hidden, int outFeatures)
    {
        var y = new double[rows * outFeatures];
        for (var r = 0; r < rows; r++)
        {
            for (var o = 0; o < outFeatures; o++)
            {
                double s = b[o];
                for (var k = 0; k < hidden; k++)
                {
                    s += normed[r * hidden + k] * w[o * hidden + k];
                }
                y[r * outFeatures + o] = s;
            }
        }
        return y;
    }

    [TestCaseSource(typeof(TestSupport), nameof(TestSupport.Devices))]
    public void RmsNormLinearMapsArguments(Device device)
    {
        using var ctx = TestSupport.ContextFor(device);
        const int rows = 2, hidden = 24, outFeatures = 7;
        var rng = new Random(11);
        var x = Rand(rng, rows * hidden, -2, 2);
        var res = Rand(rng, rows * hidden, -2, 2);
        var nw = Rand(rng, hidden, 0.5, 1.5);
        var w = Rand(rng, outFeatures * hidden);
        var b = Rand(rng, outFeatures);
        var sum = new double[rows * hidden];
        var normed = new double[rows * hidden];
        for (var r = 0; r < rows; r++)
        {
            double ss = 0;
            for (var i = 0; i < hidden; i++)
            {
                sum[r * hidden + i] = x[r * hidden + i] + res[r * hidden + i];
                ss += sum[r * hidden + i] * sum[r * hidden + i];
            }
            var inv = 1 / Math.Sqrt(ss / hidden + 1e-5);
            for (var i = 0; i < hidden; i++)
            {
                normed[r * hidden + i] = sum[r * hidden + i] * inv * nw[i];
            }
        }
        using var tx = Upload(ctx, x, rows, hidden);
        using var tres = Upload(ctx, res, rows, hidden);
        using var tnw = Upload(ctx, nw, hidden);
        using var tw = Upload(ctx, w, outFeatures, hidden);
        using var tb = Upload(ctx, b, outFeatures);
        using var tn = Poisoned(ctx, rows, hidden);
        using var tro = Poisoned(ctx, rows, hidden);
        using var ty = Poisoned(ctx, rows, outFeatures);
        Kernels.RmsNormLinear(ctx, tx, tnw, tn, 1e-5f, tres, tro, tw, ty, tb);
        AssertClose(tn, normed);
        AssertClose(tro, sum);
        AssertClose(ty, LinearReference(normed, w, b, rows, hidden, outFeatures));
    }

    [TestCaseSource(typeof(TestSupport), nameof(TestSupport.Devices))]
    public void GatedRmsNormLinearMapsArguments(Device device)
    {
        using var ctx = TestSupport.ContextFor(device);
        const int rows = 1, dim = 32, group = 8, outFeatures = 5;
        var rng = new Random(12);
        var x = Rand(rng, rows * dim, -2, 2);
        var z = Rand(rng, rows * dim, -2, 2);
        var nw = Rand(rng, dim, 0.5, 1.5);
        var w = Rand(rng, outFeatures * dim);
        var b = Rand(rng, outFeatures);
        using var tx = Upload(ctx, x, rows, dim);
        using var tz = Upload(ctx, z, rows, dim);
        using var tnw = Upload(ctx, nw, dim);
        using var tw = Upload(ctx, w, outFeatures, dim);
        using var tb = Upload(ctx, b, outFeatures);
        var normed = new double[rows * dim];
        for (var g0 = 0; g0 < dim; g0 += group)
        {
            double ss = 0;
            for (var i = g0; i < g0 + group; i++)
            {
                var v = x[i] * Silu(z[i]);
                ss += v * v;
            }
            var inv = 1 / Math.Sqrt(ss / group + 1e-5);
            for (var i = g0; i < g0 + group; i++)
            {
                normed[i] = x[i] * Silu(z[i]) * inv * nw[i];
            }
        }
        using var tn = Poisoned(ctx, rows, dim);
        using var ty = Poisoned(ctx, rows, outFeatures);
        Kernels.GatedRmsNormLinear(ctx, tx, tnw, tn, 1e-5f, tz, group, normBeforeGate: false, tw, ty, tb);
        AssertClose(tn, normed);
        AssertClose(ty, LinearReference(normed, w, b, rows, dim, outFeatures));
    }

    [Test]
    public void NativeErrorSurfacesTyped()
    {
        using var ctx = new MambaContext(Device.Cpu);
        using var x = Tensor.Empty(ctx, DType.Float32, 2, 8);
        using var nw = Tensor.Empty(ctx, DType.Float32, 8);
        using var normed = Tensor.Empty(ctx, DType.Float32, 2, 8);
        using var w = Tensor.Empty(ctx, DType.Float32, 3, 7);
        using var y = Tensor.Empty(ctx, DType.Float32, 2, 3);
        AssertInvalidArgument(() => Kernels.RmsNormLinear(ctx, x, nw, normed, 1e-5f, null, null, w, y), "norm_linear", "weight");
    }
}
