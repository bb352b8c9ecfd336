using System.Diagnostics;
using Mamba.Native;

namespace Mamba.Tests.Native;

/// <summary>How libmamba is found, and what a user is told when it is not.</summary>
[TestFixture]
public class LibraryLoadingTests
{
    [Test]
    public void LoadsFromNextToTheApplicationAndMatchesAbi()
    {
        var path = MambaLibrary.Load();
        Assert.That(path, Does.EndWith(MambaLibrary.FileName).Or.Contain("system search path"));
        Assert.That(Mamba.Runtime.MambaRuntime.AbiVersion, Is.EqualTo(Mamba.Native.Interop.NativeConstants.MAMBA_ABI_VERSION));
    }

    [Test]
    public void CandidatesIncludeApplicationFolderAndRuntimesFolder()
    {
        var candidates = MambaLibrary.CandidatePaths();
        Assert.That(candidates, Has.Some.EqualTo(Path.Combine(AppContext.BaseDirectory, MambaLibrary.FileName)));
        Assert.That(candidates, Has.Some.Contains(Path.Combine("runtimes", "linux-x64", "native")));
    }

    [Test]
    public void MissingExplicitLibraryFailsWithTheListOfPlacesTried()
    {
        // The resolver runs once per process, so the failure is observed in a child process.
        var cli = Path.Combine(AppContext.BaseDirectory, "mamba.dll");
        var start = new ProcessStartInfo("dotnet", [cli, "info"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.Environment[MambaLibrary.PathVariable] = "/nonexistent/libmamba.so";
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEnd();
        process.WaitForExit(60_000);
        Assert.That(process.ExitCode, Is.Not.EqualTo(0));
        Assert.That(stderr, Does.Contain("libmamba could not be loaded"));
        Assert.That(stderr, Does.Contain("/nonexistent/libmamba.so"));
        Assert.That(stderr, Does.Contain(MambaLibrary.PathVariable));
        Assert.That(stderr, Does.Not.Contain("   at "), "a stack trace leaked to the user");
    }
}
