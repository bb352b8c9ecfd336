using Mamba.Native;
using Mamba.Runtime;
using Mamba.Tensors;

namespace Mamba.Tests.Ops;

/// <summary>Random inputs, poisoned outputs and error checks for the op wrapper tests.</summary>
internal static class OpTestSupport
{
    public static float[] Rand(Random rng, long n, double lo = -1, double hi = 1) =>
        Enumerable.Range(0, (int)n).Select(_ => (float)(lo + rng.NextDouble() * (hi - lo))).ToArray();

    public static Tensor Upload(MambaContext ctx, float[] values, params long[] shape) => Tensor.FromHost<float>(ctx, values, shape);

    /// <summary>An output tensor filled with NaN, so anything not written shows up.</summary>
    public static Tensor Poisoned(MambaContext ctx, params long[] shape)
    {
        var n = shape.Aggregate(1L, (a, b) => a * b);
        return Tensor.FromHost<float>(ctx, Enumerable.Repeat(float.NaN, (int)n).ToArray(), shape);
    }

    /// <summary>y (rows, out) = x (rows, in) W^T + b in float64, W (out, in).</summary>
    public static double[] ReferenceLinear(float[] x, float[] w, float[] b, int rows, int inFeatures, int outFeatures)
    {
        var y = new double[rows * outFeatures];
        for (var r = 0; r < rows; r++)
        {
            for (var o = 0; o < outFeatures; o++)
            {
                double acc = b[o];
                for (var i = 0; i < inFeatures; i++)
                {
                    acc += (double)x[r * inFeatures + i] * w[o * inFeatures + i];
                }
                y[r * outFeatures + o] = acc;
            }
        }
        return y;
    }

    public static double Silu(double v) => v / (1 + Math.Exp(-v));

    public static double Softplus(double v) => v > 20 ? v : Math.Log(1 + Math.Exp(v));

    public static void AssertClose(Tensor actual, double[] expected, double tol = 1e-5) =>
        Assert.That(TestSupport.MaxScaledError(actual.ToFloatArray(), expected, tol, tol), Is.LessThanOrEqualTo(1.0));

    /// <summary>The call fails with the typed exception carrying the native message that names the op and argument.</summary>
    public static void AssertInvalidArgument(Action call, string op, string argument)
    {
        var e = Assert.Throws<MambaInvalidArgumentException>(call);
        Assert.That(e!.Message, Does.StartWith($"mamba_{op}: ").And.Contain($"'{argument}'"));
    }
}
