using Mamba.Runtime;

namespace Mamba.Tests.Runtime;

[TestFixture]
public class DeviceTests
{
    [Test]
    public void CpuIsListedFirst()
    {
        var devices = MambaRuntime.Devices();
        Assert.That(devices[0].Device, Is.EqualTo(Device.Cpu));
        Assert.That(devices[0].Name, Is.Not.Empty);
        Assert.That(devices[0].MultiprocessorCount, Is.GreaterThan(0));
    }

    [TestCase("cpu", DeviceType.Cpu, 0)]
    [TestCase("cuda", DeviceType.Cuda, 0)]
    [TestCase("CUDA:3", DeviceType.Cuda, 3)]
    public void ParsesDeviceNames(string text, DeviceType type, int index) =>
        Assert.That(Device.Parse(text), Is.EqualTo(new Device(type, index)));

    [TestCase("tpu")]
    [TestCase("cuda:-1")]
    [TestCase("cuda:x")]
    public void RejectsUnknownDeviceNames(string text) =>
        Assert.That(() => Device.Parse(text), Throws.TypeOf<FormatException>().With.Message.Contains(text));

    [Test]
    [Category(TestSupport.Gpu)]
    public void CudaDeviceIsReportedWhenPresent()
    {
        TestSupport.RequireCuda();
        var info = MambaRuntime.GetDeviceInfo(Device.Cuda(0));
        Assert.That(info.ComputeCapabilityMajor, Is.GreaterThanOrEqualTo(7));
        Assert.That(info.TotalMemoryBytes, Is.GreaterThan(1L << 30));
        Assert.That(Device.Default, Is.EqualTo(Device.Cuda(0)).Or.Property("Type").EqualTo(DeviceType.Cpu));
    }
}
