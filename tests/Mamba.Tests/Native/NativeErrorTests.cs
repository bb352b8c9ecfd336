using Mamba.Native;
using Mamba.Native.Interop;
using Mamba.Ops;
using Mamba.Runtime;
using Mamba.Tensors;

namespace Mamba.Tests.Native;

/// <summary>A native error status reaches C# as a typed exception carrying the library's message.</summary>
[TestFixture]
public unsafe class NativeErrorTests
{
    [Test]
    public void AdoptingNoGraphIsAnArgumentError()
    {
        using var ctx = new MambaContext(Device.Cpu);
        var ex = Assert.Throws<ArgumentException>(() => GraphHandle.Adopt(ctx.Handle, null));
        Assert.That(ex!.Message, Does.Contain("returned no graph"));
    }

    [Test]
    public void WrongShapeBecomesInvalidArgumentExceptionWithNativeMessage()
    {
        using var ctx = new MambaContext(Device.Cpu);
        using var x = Tensor.Empty(ctx, DType.Float32, 2, 8);
        using var w = Tensor.Empty(ctx, DType.Float32, 7);
        using var y = Tensor.Empty(ctx, DType.Float32, 2, 8);
        var e = Assert.Throws<MambaInvalidArgumentException>(() => Kernels.RmsNorm(ctx, x, w, y, 1e-5f));
        Assert.That(e!.Message, Is.EqualTo("mamba_rms_norm: argument 'weight' has shape (7,), expected (8,)"));
        Assert.That(e.Status, Is.EqualTo(mamba_status.MAMBA_STATUS_INVALID_ARGUMENT));
    }

    [Test]
    public void UnsupportedDtypeBecomesUnsupportedException()
    {
        using var ctx = new MambaContext(Device.Cpu);
        using var x = Tensor.Empty(ctx, DType.Int32, 2, 8);
        using var w = Tensor.Empty(ctx, DType.Float32, 8);
        using var y = Tensor.Empty(ctx, DType.Float32, 2, 8);
        var e = Assert.Throws<MambaUnsupportedException>(() => Kernels.RmsNorm(ctx, x, w, y, 1e-5f));
        Assert.That(e!.Message, Does.StartWith("mamba_rms_norm: argument 'x' has dtype int32"));
    }

    [Test]
    public void UnknownCpuDeviceIsReported()
    {
        var e = Assert.Throws<MambaInvalidArgumentException>(() => _ = new MambaContext(new Device(DeviceType.Cpu, 2)));
        Assert.That(e!.Message, Does.Contain("CPU device 2 does not exist"));
    }

    [Test]
    public void MissingGpuIsBackendUnavailable()
    {
        if (MambaRuntime.CudaDeviceCount > 0)
        {
            Assert.Ignore("a CUDA device is present");
        }
        var e = Assert.Throws<MambaBackendUnavailableException>(() => _ = new MambaContext(Device.Cuda(0)));
        Assert.That(e!.Message, Does.StartWith("mamba_context_create:"));
    }

    [Test]
    public void FromStatusMapsEveryStatusToItsType()
    {
        Assert.Multiple(() =>
        {
            Assert.That(MambaException.FromStatus(mamba_status.MAMBA_STATUS_INVALID_ARGUMENT, "m"), Is.TypeOf<MambaInvalidArgumentException>());
            Assert.That(MambaException.FromStatus(mamba_status.MAMBA_STATUS_UNSUPPORTED, "m"), Is.TypeOf<MambaUnsupportedException>());
            Assert.That(MambaException.FromStatus(mamba_status.MAMBA_STATUS_OUT_OF_MEMORY, "m"), Is.TypeOf<MambaOutOfMemoryException>());
            Assert.That(MambaException.FromStatus(mamba_status.MAMBA_STATUS_BACKEND_UNAVAILABLE, "m"), Is.TypeOf<MambaBackendUnavailableException>());
            Assert.That(MambaException.FromStatus(mamba_status.MAMBA_STATUS_DEVICE_ERROR, "m"), Is.TypeOf<MambaDeviceException>());
            Assert.That(MambaException.FromStatus(mamba_status.MAMBA_STATUS_INTERNAL, "m").Status, Is.EqualTo(mamba_status.MAMBA_STATUS_INTERNAL));
        });
    }

    [Test]
    public void OutOfMemoryIsTyped()
    {
        using var ctx = new MambaContext(Device.Cpu);
        Assert.Throws<MambaOutOfMemoryException>(() => Tensor.Empty(ctx, DType.Float32, 1L << 60));
    }
}
