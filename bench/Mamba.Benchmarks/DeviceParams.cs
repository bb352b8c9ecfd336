using Mamba.Runtime;

namespace Mamba.Benchmarks;

/// <summary>Devices a benchmark runs on: the CPU, and CUDA device 0 when one is present.</summary>
public static class DeviceParams
{
    public static IEnumerable<string> Available()
    {
        yield return "cpu";
        if (MambaRuntime.CudaDeviceCount > 0)
        {
            yield return "cuda";
        }
    }
}
