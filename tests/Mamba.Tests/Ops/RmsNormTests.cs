using Mamba.Ops;
using Mamba.Runtime;
using Mamba.Tensors;

namespace Mamba.Tests.Ops;

/// <summary>RMSNorm through the bindings, against a float64 reference written here.</summary>
[TestFixture]
public class RmsNormTests
{
    private static double[] Reference(float[] x, float[]? residual, float[] w, int rows, int hidden, double eps)
    {
        var y = new double[rows * hidden];
        for (var r = 0; r < rows; r++)
        {
            double ss = 0;
            for (var i = 0; i < hidden; i++)
            {
                var v = x[r * hidden + i] + (residual?[r * hidden + i] ?? 0.0);
                ss += v * v;
            }
            var inv = 1.0 / Math.Sqrt(ss / hidden + eps);
            for (var i = 0; i < hidden; i++)
            {
                y[r * hidden + i] = (x[r * hidden + i] + (residual?[r * hidden + i] ?? 0.0)) * inv * w[i];
            }
        }
        return y;
    }

    [TestCaseSource(typeof(TestSupport), nameof(TestSupport.Devices))]
    public void FusedResidualMatchesReference(Device device)
    {
        using var ctx = TestSupport.ContextFor(device);
        const int rows = 5, hidden = 96;
        var rng = new Random(42);
        float[] Rand(int n) => Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 4 - 2)).ToArray();
        var x = Rand(rows * hidden);
        var res = Rand(rows * hidden);
        var w = Rand(hidden);
        using var tx = Tensor.FromHost<float>(ctx, x, [rows, hidden]);
        using var tr = Tensor.FromHost<float>(ctx, res, [rows, hidden]);
        using var tw = Tensor.FromHost<float>(ctx, w, [hidden]);
        using var ty = Tensor.Empty(ctx, DType.Float32, rows, hidden);
        using var tro = Tensor.Empty(ctx, DType.Float32, rows, hidden);
        Kernels.RmsNorm(ctx, tx, tw, ty, 1e-5f, tr, tro);
        var expected = Reference(x, res, w, rows, hidden, 1e-5);
        Assert.That(TestSupport.MaxScaledError(ty.ToFloatArray(), expected, 1e-5, 1e-5), Is.LessThanOrEqualTo(1.0));
        var sum = x.Zip(res, (a, b) => (double)a + b).ToArray();
        Assert.That(TestSupport.MaxScaledError(tro.ToFloatArray(), sum, 1e-6, 1e-6), Is.LessThanOrEqualTo(1.0));
    }

    [TestCaseSource(typeof(TestSupport), nameof(TestSupport.Devices))]
    public void Bfloat16StridedViewsWork(Device device)
    {
        using var ctx = TestSupport.ContextFor(device);
        const int rows = 3, hidden = 64;
        var rng = new Random(7);
        var packed = Enumerable.Range(0, rows * 2 * hidden).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var w = Enumerable.Range(0, hidden).Select(_ => (float)(rng.NextDouble() + 0.5)).ToArray();
        // x is the first half of each row of a (rows, 2*hidden) bf16 buffer: a strided view, as in-projection outputs are.
        using var buffer = Tensor.FromHost<float>(ctx, packed, [rows, 2 * hidden], DType.BFloat16);
        using var x = buffer.Slice(1, 0, hidden);
        using var tw = Tensor.FromHost<float>(ctx, w, [hidden], DType.BFloat16);
        using var y = Tensor.Empty(ctx, DType.BFloat16, rows, hidden);
        Kernels.RmsNorm(ctx, x, tw, y, 1e-5f);
        var xs = x.ToFloatArray();
        var wb = tw.ToFloatArray();
        var expected = Reference(xs, null, wb, rows, hidden, 1e-5);
        Assert.That(TestSupport.MaxScaledError(y.ToFloatArray(), expected, 1e-2, 1e-2), Is.LessThanOrEqualTo(1.0));
    }
}
