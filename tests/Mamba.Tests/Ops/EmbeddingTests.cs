using Mamba.Ops;
using Mamba.Runtime;
using Mamba.Tensors;
using static Mamba.Tests.Ops.OpTestSupport;

namespace Mamba.Tests.Ops;

[TestFixture]
public class EmbeddingTests
{
    [TestCaseSource(typeof(TestSupport), nameof(TestSupport.Devices))]
    public void MapsArguments(Device device)
    {
        using var ctx = TestSupport.ContextFor(device);
        const int vocab = 9, hidden = 5;
        var table = Rand(new Random(2), vocab * hidden);
        int[] ids = [4, 0, 8, 4];
        using var tids = Tensor.FromHost<int>(ctx, ids, [ids.Length]);
        using var tt = Upload(ctx, table, vocab, hidden);
        using var ty = Poisoned(ctx, ids.Length, hidden);
        Kernels.Embedding(ctx, tids, tt, ty);
        var expected = ids.SelectMany(i => table.Skip(i * hidden).Take(hidden).Select(v => (double)v)).ToArray();
        AssertClose(ty, expected, 1e-7);
    }

    [Test]
    public void NativeErrorSurfacesTyped()
    {
        using var ctx = new MambaContext(Device.Cpu);
        using var ids = Tensor.FromHost<int>(ctx, [1, 9], [2]);
        using var table = Tensor.FromHost<float>(ctx, new float[9 * 3], [9, 3]);
        using var y = Tensor.Empty(ctx, DType.Float32, 2, 3);
        var e = Assert.Throws<Mamba.Native.MambaInvalidArgumentException>(() => Kernels.Embedding(ctx, ids, table, y));
        Assert.That(e!.Message, Does.StartWith("mamba_embedding: ").And.Contain("9"));
    }
}
