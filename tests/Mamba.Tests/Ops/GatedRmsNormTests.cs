using Mamba.Ops;
using Mamba.Runtime;
using Mamba.Tensors;
using static Mamba.Tests.Ops.OpTestSupport;

namespace Mamba.Tests.Ops;

[TestFixture]
public class GatedRmsNormTests
{
    private static double[] Reference(float[] x, float[] z, float[] w, int rows, int dim, int group, bool normBeforeGate, double eps)
    {
        var y = new double[rows * dim];
        for (var r = 0; r < rows; r++)
        {
            for (var g0 = 0; g0 < dim; g0 += group)
            {
                double ss = 0;
                for (var i = g0; i < g0 + group; i++)
                {
                    var v = normBeforeGate ? x[r * dim + i] : x[r * dim + i] * Silu(z[r * dim + i]);
                    ss += v * v;
                }
                var inv = 1 / Math.Sqrt(ss / group + eps);
                for (var i = g0; i < g0 + group; i++)
                {
                    var gate = Silu(z[r * dim + i]);
                    y[r * dim + i] = normBeforeGate ? x[r * dim + i] * inv * w[i] * gate : x[r * dim + i] * gate * inv * w[i];
                }
            }
        }
        return y;
    }

    [TestCaseSource(typeof(TestSupport), nameof(TestSupport.Devices))]
    public void MapsArguments(Device device)
    {
        using var ctx = TestSupport.ContextFor(device);
        const int rows = 3, dim = 24, group = 8;
        var rng = new Random(6);
        var x = Rand(rng, rows * dim, -2, 2);
        var z = Rand(rng, rows * dim, -2, 2);
        var w = Rand(rng, dim, 0.5, 1.5);
        using var tx = Upload(ctx, x, rows, dim);
        using var tz = Upload(ctx, z, rows, dim);
        using var tw = Upload(ctx, w, dim);
        foreach (var before in new[] { false, true })
        {
            using var ty = Poisoned(ctx, rows, dim);
            Kernels.GatedRmsNorm(ctx, tx, tw, ty, 1e-5f, tz, group, before);
            AssertClose(ty, Reference(x, z, w, rows, dim, group, before, 1e-5));
        }
    }

    [Test]
    public void NativeErrorSurfacesTyped()
    {
        using var ctx = new MambaContext(Device.Cpu);
        using var x = Tensor.Empty(ctx, DType.Float32, 2, 8);
        using var w = Tensor.Empty(ctx, DType.Float32, 7);
        using var y = Tensor.Empty(ctx, DType.Float32, 2, 8);
        AssertInvalidArgument(() => Kernels.GatedRmsNorm(ctx, x, w, y, 1e-5f), "gated_rms_norm", "weight");
    }
}
