using Mamba.Native.Interop;

namespace Mamba.Runtime;

/// <summary>Kinds of device libmamba runs on.</summary>
public enum DeviceType
{
    /// <summary>The host CPU (always available).</summary>
    Cpu = 1,

    /// <summary>An NVIDIA GPU through the CUDA backend.</summary>
    Cuda = 2,
}

/// <summary>A device: its type and index among devices of that type.</summary>
public readonly record struct Device(DeviceType Type, int Index)
{
    /// <summary>The CPU.</summary>
    public static Device Cpu => new(DeviceType.Cpu, 0);

    /// <summary>CUDA device <paramref name="index"/>.</summary>
    public static Device Cuda(int index = 0) => new(DeviceType.Cuda, index);

    /// <summary>Environment variable that overrides <see cref="Default"/>: <c>cpu</c>, <c>cuda</c> or <c>cuda:N</c>.</summary>
    public const string OverrideVariable = "MAMBA_DEVICE";

    /// <summary>CUDA device 0 when the library has a CUDA backend and a GPU is present, else the CPU;
    /// <c>MAMBA_DEVICE</c> overrides the choice.</summary>
    public static Device Default
    {
        get
        {
            var requested = Environment.GetEnvironmentVariable(OverrideVariable);
            if (!string.IsNullOrWhiteSpace(requested))
            {
                return Parse(requested);
            }
            return MambaRuntime.CudaDeviceCount > 0 ? Cuda(0) : Cpu;
        }
    }

    /// <summary>Parses <c>cpu</c>, <c>cuda</c> or <c>cuda:N</c>.</summary>
    public static Device Parse(string text)
    {
        var t = text.Trim().ToLowerInvariant();
        if (t == "cpu")
        {
            return Cpu;
        }
        if (t == "cuda" || t == "gpu")
        {
            return Cuda(0);
        }
        if (t.StartsWith("cuda:", StringComparison.Ordinal) && int.TryParse(t.AsSpan(5), out var index) && index >= 0)
        {
            return Cuda(index);
        }
        throw new FormatException($"'{text}' is not a device: expected cpu, cuda or cuda:N");
    }

    internal mamba_device_type Native => Type == DeviceType.Cuda ? mamba_device_type.MAMBA_DEVICE_CUDA : mamba_device_type.MAMBA_DEVICE_CPU;

    /// <inheritdoc />
    public override string ToString() => Type == DeviceType.Cpu ? "cpu" : $"cuda:{Index}";
}

/// <summary>What libmamba reports about a device.</summary>
public sealed record DeviceInfo(Device Device, string Name, int ComputeCapabilityMajor, int ComputeCapabilityMinor,
    int MultiprocessorCount, long TotalMemoryBytes, long FreeMemoryBytes);
