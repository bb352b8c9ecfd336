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

    // bfloat16 x and W (the small-K tensor-core kernel on CUDA) and float32 (cuBLAS and the epilogue pass), with a
    // float32 bias as the model's dt_proj has; the reference rounds x and W as the tensors hold them.
    [TestCaseSource(typeof(TestSupport), nameof(TestSupport.Devices))]
    public void LinearSoftplusAppliesTheSoftplusToEachSum(Device device)
    {
        using var ctx = TestSupport.ContextFor(device);
        const int rows = 37, inF = 48, outF = 70;
        var rng = new Random(2);
        var x = Rand(rng, rows * inF);
        var w = Rand(rng, outF * inF);
        var b = Rand(rng, outF);
        foreach (var dtype in new[] { DType.BFloat16, DType.Float32 })
        {
            using var tx = Tensor.FromHost<float>(ctx, x, [rows, inF], dtype);
            using var tw = Tensor.FromHost<float>(ctx, w, [outF, inF], dtype);
            using var tb = Upload(ctx, b, outF);
            using var ty = Poisoned(ctx, rows, outF);
            Kernels.LinearSoftplus(ctx, tx, tw, ty, tb);
            var expected = ReferenceLinear(tx.ToFloatArray(), tw.ToFloatArray(), b, rows, inF, outF)
                .Select(v => v > 30 ? v : Math.Log(1 + Math.Exp(v))).ToArray();
            AssertClose(ty, expected);
        }
    }

    [Test]
    public void LinearSoftplusErrorNamesItsCall()
    {
        using var ctx = new MambaContext(Device.Cpu);
        using var x = Tensor.Empty(ctx, DType.Float32, 2, 8);
        using var w = Tensor.Empty(ctx, DType.Float32, 4, 7);
        using var y = Tensor.Empty(ctx, DType.Float32, 2, 4);
        AssertInvalidArgument(() => Kernels.LinearSoftplus(ctx, x, w, y), "linear_softplus", "weight");
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
