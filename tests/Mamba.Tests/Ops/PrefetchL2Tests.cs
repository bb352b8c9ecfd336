using Mamba.Modules;
using Mamba.Ops;
using Mamba.Runtime;
using Mamba.Tensors;

namespace Mamba.Tests.Ops;

/// <summary>Kernels.PrefetchL2 is a hint: the tensor keeps its contents, whole or partial ranges are fine, bad arguments
/// throw typed exceptions; the decode step's next-layer budget comes from MAMBA_CUDA_L2_PREFETCH_NEXT_MB.</summary>
[TestFixture]
[NonParallelizable] // changes the process environment
public class PrefetchL2Tests
{
    private static IEnumerable<TestCaseData> DevicesAndModes()
    {
        // null: the variable unset (libmamba's default mode, bulk)
        foreach (var mode in new[] { "off", "prefetch", "load", "bulk", null })
        {
            yield return new TestCaseData(Device.Cpu, mode).SetArgDisplayNames("cpu", mode ?? "default");
            yield return new TestCaseData(Device.Cuda(0), mode).SetArgDisplayNames("cuda", mode ?? "default").SetCategory(TestSupport.Gpu);
        }
    }

    [TestCaseSource(nameof(DevicesAndModes))]
    public void LeavesTheTensorUnchanged(Device device, string? mode)
    {
        MambaContext ctx;
        using (NativeEnvironment.Set("MAMBA_CUDA_L2_PREFETCH", mode))
        {
            ctx = TestSupport.ContextFor(device);
        }
        using (ctx)
        {
            var values = Enumerable.Range(0, 3000).Select(i => (float)Math.Sin(i)).ToArray();
            using var t = Tensor.Empty(ctx, DType.Float32, 3, 1000);
            t.CopyFrom<float>(values);
            Kernels.PrefetchL2(ctx, t);
            Kernels.PrefetchL2(ctx, t, maxBytes: 1001);
            Kernels.PrefetchL2(ctx, t, maxBytes: 0);
            Kernels.PrefetchL2(ctx, t.View([2, 1000], null, 1000));  // a contiguous view from an offset
            ctx.Synchronize();
            Assert.That(t.ToFloatArray(), Is.EqualTo(values));
        }
    }

    [Test]
    public void BadArgumentsThrowTyped()
    {
        using var ctx = new MambaContext(Device.Cpu);
        using var t = Tensor.Empty(ctx, DType.Float32, 4, 6);
        Assert.Throws<ArgumentOutOfRangeException>(() => Kernels.PrefetchL2(ctx, t, maxBytes: -1));
        var ex = Assert.Throws<ArgumentException>(() => Kernels.PrefetchL2(ctx, t.View([4, 3], [6, 2])));
        Assert.That(ex!.Message, Does.Contain("contiguous"));
        Assert.Throws<ArgumentNullException>(() => Kernels.PrefetchL2(ctx, null!));
        Assert.Throws<ArgumentNullException>(() => Kernels.PrefetchL2(null!, t));
    }

    [Test]
    public void NextLayerBudgetComesFromTheEnvironment()
    {
        using (NativeEnvironment.Set(DecodePrefetch.NextMegabytesVariable, null))
        {
            Assert.That(DecodePrefetch.NextBytes(), Is.EqualTo(DecodePrefetch.DefaultNextMegabytes << 20));
        }
        using (NativeEnvironment.Set(DecodePrefetch.NextMegabytesVariable, "0"))
        {
            Assert.That(DecodePrefetch.NextBytes(), Is.Zero);
        }
        using (NativeEnvironment.Set(DecodePrefetch.NextMegabytesVariable, "24"))
        {
            Assert.That(DecodePrefetch.NextBytes(), Is.EqualTo(24L << 20));
        }
        foreach (var bad in new[] { "-1", "1.5", "16MB", "4096" })
        {
            using (NativeEnvironment.Set(DecodePrefetch.NextMegabytesVariable, bad))
            {
                var ex = Assert.Throws<FormatException>(() => DecodePrefetch.NextBytes());
                Assert.That(ex!.Message, Does.Contain(DecodePrefetch.NextMegabytesVariable));
            }
        }
    }
}
