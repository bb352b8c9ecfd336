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
        // As without MAMBA_NATIVE_LIBRARY, whatever this process was started with.
        var candidates = MambaLibrary.CandidatePaths(explicitPath: null);
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

    [Test]
    public void LibraryOfAnotherAbiVersionIsRefusedWithBothVersions()
    {
        // A stand-in library exporting only mamba_abi_version, returning a version no binding was made for.
        var dir = Directory.CreateTempSubdirectory("mamba-abi-");
        try
        {
            var source = Path.Combine(dir.FullName, "fake.c");
            var library = Path.Combine(dir.FullName, "libmamba.so");
            File.WriteAllText(source, "int mamba_abi_version(void) { return 999; }\n");
            var (ccCode, ccOutput) = RunChild("cc", ["-shared", "-fPIC", source, "-o", library], null);
            if (ccCode != 0)
            {
                Assert.Ignore($"no C compiler to build the stand-in library: {ccOutput}");
            }
            var (code, stderr) = RunChild("dotnet", [Path.Combine(AppContext.BaseDirectory, "mamba.dll"), "info"], library);
            Assert.That(code, Is.Not.EqualTo(0));
            Assert.That(stderr, Does.Contain("has ABI version 999"));
            Assert.That(stderr, Does.Contain($"ABI version {Mamba.Native.Interop.NativeConstants.MAMBA_ABI_VERSION}"));
            Assert.That(stderr, Does.Not.Contain("   at "), "a stack trace leaked to the user");
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    private static (int Code, string Stderr) RunChild(string program, string[] arguments, string? library)
    {
        var start = new ProcessStartInfo(program, arguments) { RedirectStandardOutput = true, RedirectStandardError = true };
        if (library is not null)
        {
            start.Environment[MambaLibrary.PathVariable] = library;
        }
        try
        {
            using var process = Process.Start(start)!;
            var stderr = process.StandardError.ReadToEndAsync();
            process.StandardOutput.ReadToEnd();
            process.WaitForExit(60_000);
            return (process.ExitCode, stderr.Result);
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            return (-1, e.Message);
        }
    }
}
