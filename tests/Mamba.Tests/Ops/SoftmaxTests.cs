using Mamba.Ops;
using Mamba.Runtime;
using Mamba.Tensors;
using static Mamba.Tests.Ops.OpTestSupport;

namespace Mamba.Tests.Ops;

[TestFixture]
public class SoftmaxTests
{
    [TestCaseSource(typeof(TestSupport), nameof(TestSupport.Devices))]
    public void MapsArguments(Device device)
    {
        using var ctx = TestSupport.ContextFor(device);
        const int rows = 3, n = 11;
        var x = Rand(new Random(3), rows * n, -4, 4);
        using var tx = Upload(ctx, x, rows, n);
        using var p = Poisoned(ctx, rows, n);
        using var lp = Poisoned(ctx, rows, n);
        Kernels.Softmax(ctx, tx, p);
        Kernels.Softmax(ctx, tx, lp, log: true);
        var expected = new double[rows * n];
        for (var r = 0; r < rows; r++)
        {
            var max = x.Skip(r * n).Take(n).Max();
            var sum = x.Skip(r * n).Take(n).Sum(v => Math.Exp(v - max));
            for (var i = 0; i < n; i++)
            {
                expected[r * n + i] = Math.Exp(x[r * n + i] - max) / sum;
            }
        }
        AssertClose(p, expected);
        AssertClose(lp, expected.Select(v => Math.Log(v)).ToArray());
    }

    [Test]
    public void NativeErrorSurfacesTyped()
    {
        using var ctx = new MambaContext(Device.Cpu);
        using var x = Tensor.Empty(ctx, DType.Float32, 2, 8);
        using var y = Tensor.Empty(ctx, DType.Float32, 2, 7);
        AssertInvalidArgument(() => Kernels.Softmax(ctx, x, y), "softmax", "y");
    }
}
