using Mamba.Ops;
using Mamba.Runtime;
using Mamba.Tensors;
using static Mamba.Tests.Ops.OpTestSupport;

namespace Mamba.Tests.Ops;

[TestFixture]
public class LinearTests
{
    [TestCaseSource(typeof(TestSupport), nameof(TestSupport.Devices))]
    public void MapsArguments(Device device)
    {
        using var ctx = TestSupport.ContextFor(device);
        const int rows = 3, inF = 10, outF = 6;
        var rng = new Random(1);
        var x = Rand(rng, rows * inF);
        var w = Rand(rng, outF * inF);
        var b = Rand(rng, outF);
        using var tx = Upload(ctx, x, rows, inF);
        using var tw = Upload(ctx, w, outF, inF);
        using var tb = Upload(ctx, b, outF);
        using var ty = Poisoned(ctx, rows, outF);
        Kernels.Linear(ctx, tx, tw, ty, tb);
        AssertClose(ty, ReferenceLinear(x, w, b, rows, inF, outF));
    }

    [Test]
    public void NativeErrorSurfacesTyped()
    {
        using var ctx = new MambaContext(Device.Cpu);
        using var x = Tensor.Empty(ctx, DType.Float32, 2, 8);
        using var w = Tensor.Empty(ctx, DType.Float32, 4, 7);
        using var y = Tensor.Empty(ctx, DType.Float32, 2, 4);
        AssertInvalidArgument(() => Kernels.Linear(ctx, x, w, y), "linear", "weight");
    }
}
