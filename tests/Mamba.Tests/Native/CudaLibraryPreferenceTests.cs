using System.Diagnostics;
using Mamba.Native;

namespace Mamba.Tests.Native;

/// <summary>The CUDA build of libmamba is preferred where it loads, and the CPU build is used, with a reason
/// shown by <c>mamba info</c>, where it does not (no cuBLAS libraries).</summary>
[TestFixture]
public class CudaLibraryPreferenceTests
{
    [Test]
    public void EachPlaceOffersTheCudaBuildBeforeTheCpuBuild()
    {
        if (MambaLibrary.CudaFileName is not { } cuda)
        {
            Assert.Ignore("no CUDA build on this platform");
            return;
        }
        var candidates = MambaLibrary.CandidatePaths(explicitPath: null);
        var cpu = candidates.Where(p => Path.GetFileName(p) == MambaLibrary.FileName).ToList();
        Assert.That(cpu, Is.Not.Empty);
        Assert.That(candidates, Has.Count.EqualTo(2 * cpu.Count), "one CUDA and one CPU candidate per place");
        foreach (var path in cpu)
        {
            var i = candidates.ToList().IndexOf(path);
            Assert.That(candidates[i - 1], Is.EqualTo(Path.Combine(Path.GetDirectoryName(path)!, cuda)), path);
        }
        Assert.That(candidates[0], Is.EqualTo(Path.Combine(AppContext.BaseDirectory, cuda)));
    }

    [Test]
    public void AnExplicitLibraryIsTheOnlyCandidateEvenWithACudaBuildAround()
    {
        var explicitPath = Path.Combine(Path.GetTempPath(), "some", MambaLibrary.FileName);
        Assert.That(MambaLibrary.CandidatePaths(explicitPath), Is.EqualTo(new[] { explicitPath }));
    }

    [TestCase("libcublas.so.12: cannot open shared object file: No such file or directory", "cuBLAS libraries")]
    [TestCase("libcublasLt.so.12: cannot open shared object file: No such file or directory", "cuBLAS libraries")]
    [TestCase("libcuda.so.1: cannot open shared object file: No such file or directory", "driver's libcuda.so.1")]
    [TestCase("libmamba_cuda.so: invalid ELF header", null)]
    public void TheNoteNamesWhatTheCudaBuildLacks(string loaderMessage, string? expected)
    {
        var hint = MambaLibrary.CudaLoadHint(loaderMessage);
        Assert.That(hint, expected is null ? Is.Empty : Does.Contain(expected));
    }

    [Test]
    public void ACudaBuildThatCannotLoadFallsBackToTheCpuBuildAndInfoSaysWhy()
    {
        if (!OperatingSystem.IsLinux())
        {
            Assert.Ignore("the stand-in library is built as a Linux shared object");
        }
        // A copy of the application folder (hard links: no space, same file system) whose libmamba_cuda.so is a
        // real shared object that needs a library nobody has, as the CUDA build needs libcublas on a machine
        // without CUDA. Were it loaded anyway, its ABI version 999 would make `mamba info` fail.
        var app = AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar);
        var work = Path.Combine(Path.GetDirectoryName(app)!, "cuda-fallback-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            var copy = Path.Combine(work, "app");
            Directory.CreateDirectory(work);
            var (cpCode, cpOut) = Run("cp", ["-al", app, copy], null);
            Assert.That(cpCode, Is.Zero, cpOut);
            var (ccCode, ccOut) = BuildStandIn(work, Path.Combine(copy, MambaLibrary.CudaFileName!));
            if (ccCode != 0)
            {
                Assert.Ignore($"no C compiler to build the stand-in library: {ccOut}");
            }
            if (!File.Exists(Path.Combine(copy, MambaLibrary.FileName)))
            {
                // A published copy without its own CPU build (e.g. one pointed at another build through
                // MAMBA_NATIVE_LIBRARY) has nothing to fall back to: the case cannot be staged there.
                Assert.Ignore("no CPU build of libmamba sits next to the application");
            }

            var (code, output) = Run("dotnet", [Path.Combine(copy, "mamba.dll"), "info"], work);
            Assert.That(code, Is.Zero, output);
            Assert.That(output, Does.Contain($"from {Path.Combine(copy, MambaLibrary.FileName)}"));
            Assert.That(output, Does.Contain($"note: CUDA build {Path.Combine(copy, MambaLibrary.CudaFileName!)} not loaded"));
            Assert.That(output, Does.Contain("libmamba_test_absent_driver.so.1"), "the reason names the missing library");
            Assert.That(output, Does.Contain("using the CPU build"));
        }
        finally
        {
            if (Directory.Exists(work))
            {
                Directory.Delete(work, recursive: true);
            }
        }
    }

    /// <summary>Links a library exporting mamba_abi_version (999) against a dependency that is then deleted.</summary>
    private static (int Code, string Output) BuildStandIn(string work, string target)
    {
        var dependencySource = Path.Combine(work, "dep.c");
        var dependency = Path.Combine(work, "libmamba_test_absent_driver.so.1");
        File.WriteAllText(dependencySource, "int absent_driver_entry(void) { return 1; }\n");
        var r = Run("cc", ["-shared", "-fPIC", "-Wl,-soname,libmamba_test_absent_driver.so.1", dependencySource, "-o", dependency], null);
        if (r.Code != 0)
        {
            return r;
        }
        var source = Path.Combine(work, "standin.c");
        File.WriteAllText(source, "int absent_driver_entry(void);\nint mamba_abi_version(void) { return 999 + 0 * absent_driver_entry(); }\n");
        r = Run("cc", ["-shared", "-fPIC", source, dependency, "-o", target], null);
        File.Delete(dependency);
        return r;
    }

    /// <summary>Runs a program to its end (without MAMBA_NATIVE_LIBRARY): exit code and stdout + stderr.</summary>
    internal static (int Code, string Output) Run(string program, string[] arguments, string? workingDirectory)
    {
        var start = new ProcessStartInfo(program, arguments) { RedirectStandardOutput = true, RedirectStandardError = true };
        if (workingDirectory is not null)
        {
            start.WorkingDirectory = workingDirectory;
        }
        start.Environment.Remove(MambaLibrary.PathVariable);
        try
        {
            using var process = Process.Start(start)!;
            var stderr = process.StandardError.ReadToEndAsync();
            var stdout = process.StandardOutput.ReadToEnd();
            process.WaitForExit(120_000);
            return (process.ExitCode, stdout + stderr.Result);
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            return (-1, e.Message);
        }
    }
}
