using Mamba.Runtime;

namespace Mamba.Benchmarks;

/// <summary>
/// Devices a benchmark runs on: the CPU, and CUDA device 0 when one is present. The environment variable
/// <c>MAMBA_BENCH_DEVICES</c> (a comma-separated list of <c>cpu</c> and <c>cuda</c>) narrows that list, e.g. to
/// run the suite on the GPU alone.
/// </summary>
public static class DeviceParams
{
    public const string EnvironmentVariable = "MAMBA_BENCH_DEVICES";

    public static IEnumerable<string> Available()
    {
        var present = new List<string> { "cpu" };
        if (MambaRuntime.CudaDeviceCount > 0)
        {
            present.Add("cuda");
        }

        string? wanted = Environment.GetEnvironmentVariable(EnvironmentVariable);
        if (string.IsNullOrWhiteSpace(wanted))
        {
            return present;
        }

        var chosen = new List<string>();
        foreach (string name in wanted.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            string device = name.ToLowerInvariant();
            if (device is not ("cpu" or "cuda"))
            {
                throw new ArgumentException($"{EnvironmentVariable}: unknown device '{name}' (expected cpu or cuda).");
            }

            if (!present.Contains(device))
            {
                throw new InvalidOperationException($"{EnvironmentVariable} asks for '{device}', which this machine does not have.");
            }

            if (!chosen.Contains(device))
            {
                chosen.Add(device);
            }
        }

        if (chosen.Count == 0)
        {
            throw new ArgumentException($"{EnvironmentVariable} is set but names no device (expected cpu and/or cuda).");
        }

        return chosen;
    }
}
