using Mamba.Runtime;
using Mamba.Tensors;

namespace Mamba.Tests.Runtime;

[TestFixture]
public class TensorTests
{
    [TestCaseSource(typeof(TestSupport), nameof(TestSupport.Devices))]
    public void HostRoundTripAndConversion(Device device)
    {
        using var ctx = TestSupport.ContextFor(device);
        float[] values = [1.5f, -2.25f, 3.0f, 1e-3f, 65504f, -0.0f];
        using var f16 = Tensor.FromHost<float>(ctx, values, [2, 3], DType.Float16);
        var back = f16.ToFloatArray();
        Assert.That(back, Is.EqualTo(values.Select(v => (float)(Half)v).ToArray()));
        using var t = f16.Transpose(0, 1);
        Assert.That(t.IsContiguous, Is.False);
        Assert.That(t.ToFloatArray(), Is.EqualTo(new[] { back[0], back[3], back[1], back[4], back[2], back[5] }));
    }

    [Test]
    public void ViewsOutsideTheirMemoryAreRejected()
    {
        using var ctx = new MambaContext(Device.Cpu);
        using var t = Tensor.Empty(ctx, DType.Float32, 4, 4);
        Assert.Throws<ArgumentOutOfRangeException>(() => t.View([4, 5]));
        Assert.Throws<ArgumentOutOfRangeException>(() => t.Slice(1, 2, 3));
        Assert.Throws<ArgumentException>(() => t.Reshape(3, 5));
        using var ok = t.View([2, 2], [8, 1], 2);
        Assert.That(ok.Shape.ToArray(), Is.EqualTo(new long[] { 2, 2 }));
    }

    [Test]
    public void HostTransferChecksTypeAndLength()
    {
        using var ctx = new MambaContext(Device.Cpu);
        using var t = Tensor.Empty(ctx, DType.Float32, 3);
        Assert.Throws<ArgumentException>(() => t.CopyFrom<float>(new float[4]));
        Assert.Throws<ArgumentException>(() => t.CopyFrom<int>(new int[3]));
    }

    [Test]
    public void UseAfterDisposeThrows()
    {
        using var ctx = new MambaContext(Device.Cpu);
        var t = Tensor.Empty(ctx, DType.Float32, 3);
        var view = t.Slice(0, 0, 2);
        t.Dispose();
        Assert.Throws<ObjectDisposedException>(() => view.ToFloatArray());
    }
}
