using System.Runtime.InteropServices;

namespace Mamba.Tests;

/// <summary>Sets an environment variable for libmamba (the C runtime's environment, which .NET on Linux does not update)
/// and for managed code, then restores both on dispose. For switches the native library reads when a context is created.</summary>
internal sealed partial class NativeEnvironment : IDisposable
{
    private readonly string _name;
    private readonly string? _previous;

    private NativeEnvironment(string name, string? value)
    {
        _name = name;
        _previous = Environment.GetEnvironmentVariable(name);
        Apply(name, value);
    }

    /// <summary>Sets <paramref name="name"/> to <paramref name="value"/> (null unsets it) until disposed; skips the
    /// calling test where the C runtime's environment cannot be changed from here (not Linux).</summary>
    public static NativeEnvironment Set(string name, string? value)
    {
        if (!OperatingSystem.IsLinux())
        {
            Assert.Ignore("setting libmamba's environment from a test needs Linux's C runtime");
        }
        return new NativeEnvironment(name, value);
    }

    public void Dispose() => Apply(_name, _previous);

    private static void Apply(string name, string? value)
    {
        Environment.SetEnvironmentVariable(name, value);
        var rc = value is null ? unsetenv(name) : setenv(name, value, 1);
        if (rc != 0)
        {
            throw new InvalidOperationException($"could not set {name} in the C runtime's environment");
        }
    }

    [LibraryImport("libc.so.6", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int setenv(string name, string value, int overwrite);

    [LibraryImport("libc.so.6", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int unsetenv(string name);
}
