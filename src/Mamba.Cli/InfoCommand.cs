using System.CommandLine;
using Mamba.Native;
using Mamba.Runtime;

namespace Mamba.Cli;

/// <summary><c>mamba info</c>: library version, backends and devices.</summary>
internal static class InfoCommand
{
    public static Command Create(TextWriter stdout)
    {
        var command = new Command("info", "Show the library version, backends and devices");
        command.SetAction(_ =>
        {
            Write(stdout);
            return 0;
        });
        return command;
    }

    public static void Write(TextWriter stdout)
    {
        var path = MambaLibrary.Load();
        stdout.WriteLine($"Mamba.NET {typeof(InfoCommand).Assembly.GetName().Version?.ToString(3)}");
        stdout.WriteLine($"libmamba {MambaRuntime.Version} (ABI {MambaRuntime.AbiVersion}) from {path}");
        foreach (var note in MambaLibrary.LoadNotes)
        {
            stdout.WriteLine($"note: {note}");
        }
        stdout.WriteLine($"build: {MambaRuntime.BuildInfo}");
        stdout.WriteLine($"backends: cpu{(MambaRuntime.HasCudaBackend ? ", cuda" : "")}");
        stdout.WriteLine("devices:");
        foreach (var d in MambaRuntime.Devices())
        {
            var memory = $"{d.TotalMemoryBytes / (1024.0 * 1024 * 1024):F1} GiB";
            var detail = d.Device.Type == DeviceType.Cuda
                ? $"compute {d.ComputeCapabilityMajor}.{d.ComputeCapabilityMinor}, {d.MultiprocessorCount} SMs, {memory}"
                : $"{d.MultiprocessorCount} cores, {memory}";
            stdout.WriteLine($"  {d.Device,-7} {d.Name} ({detail})");
        }
        stdout.WriteLine($"default device: {Device.Default}");
    }
}
