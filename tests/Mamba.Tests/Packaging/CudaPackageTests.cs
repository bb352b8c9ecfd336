using System.IO.Compression;

namespace Mamba.Tests.Packaging;

/// <summary>Mamba.Native carries the CUDA build as runtimes/linux-x64/native/libmamba_cuda.so exactly when Pack
/// was given one (Pack leaves its copy in artifacts/native), and always the CPU build next to it.</summary>
[TestFixture]
[Category("Packaging")]
public class CudaPackageTests
{
    [Test]
    public void NativePackageCarriesTheCudaBuildExactlyWhenPackHadOne()
    {
        var packages = Environment.GetEnvironmentVariable("MAMBA_PACKAGES_DIR") ?? Path.Combine(TestSupport.RepoRoot, "artifacts", "packages");
        var package = Directory.Exists(packages)
            ? Directory.GetFiles(packages, "Mamba.Native.*.nupkg").FirstOrDefault(p => !p.EndsWith(".snupkg", StringComparison.Ordinal))
            : null;
        if (package is null)
        {
            Assert.Ignore($"no Mamba.Native package in {packages}: run ./build.sh --target=Pack first");
        }
        using var zip = ZipFile.OpenRead(package!);
        var entries = zip.Entries.ToDictionary(e => e.FullName, e => e.Length);
        Assert.That(entries, Does.ContainKey("runtimes/linux-x64/native/libmamba.so"));
        var packedCuda = Path.Combine(TestSupport.RepoRoot, "artifacts", "native", "libmamba_cuda.so");
        if (File.Exists(packedCuda))
        {
            Assert.That(entries, Does.ContainKey("runtimes/linux-x64/native/libmamba_cuda.so"));
            Assert.That(entries["runtimes/linux-x64/native/libmamba_cuda.so"], Is.EqualTo(new FileInfo(packedCuda).Length));
        }
        else
        {
            Assert.That(entries, Does.Not.ContainKey("runtimes/linux-x64/native/libmamba_cuda.so"));
        }
    }
}
