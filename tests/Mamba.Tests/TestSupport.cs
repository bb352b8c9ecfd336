using Mamba.Runtime;

namespace Mamba.Tests;

/// <summary>Shared helpers: repository paths, GPU gating, float64 comparisons.</summary>
internal static class TestSupport
{
    /// <summary>Category of tests that need a CUDA device; they are skipped (not passed) without one.</summary>
    public const string Gpu = "GPU";

    /// <summary>The repository root, found by walking up from the test assembly to global.json.</summary>
    public static string RepoRoot
    {
        get
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "global.json")))
            {
                dir = dir.Parent;
            }
            return dir?.FullName ?? throw new InvalidOperationException("repository root not found above " + AppContext.BaseDirectory);
        }
    }

    /// <summary>Skips the calling test, visibly, when no CUDA device can be used.</summary>
    public static void RequireCuda()
    {
        if (!MambaRuntime.HasCudaBackend)
        {
            Assert.Ignore("libmamba was built without the CUDA backend");
        }
        if (MambaRuntime.CudaDeviceCount == 0)
        {
            Assert.Ignore("no CUDA device is present");
        }
    }

    /// <summary>Devices to run a parametrized test on: always the CPU, and CUDA (skipped when absent).</summary>
    public static IEnumerable<TestCaseData> Devices()
    {
        yield return new TestCaseData(Device.Cpu).SetArgDisplayNames("cpu");
        yield return new TestCaseData(Device.Cuda(0)).SetArgDisplayNames("cuda").SetCategory(Gpu);
    }

    /// <summary>Creates a context, skipping the test when the device is CUDA and none is present.</summary>
    public static MambaContext ContextFor(Device device)
    {
        if (device.Type == DeviceType.Cuda)
        {
            RequireCuda();
        }
        return new MambaContext(device);
    }

    /// <summary>max |a - b| / (atol + rtol |b|).</summary>
    public static double MaxScaledError(IReadOnlyList<float> actual, IReadOnlyList<double> expected, double atol, double rtol)
    {
        Assert.That(actual, Has.Count.EqualTo(expected.Count));
        var worst = 0.0;
        for (var i = 0; i < actual.Count; i++)
        {
            var err = Math.Abs(actual[i] - expected[i]) / (atol + rtol * Math.Abs(expected[i]));
            if (double.IsNaN(err))
            {
                return double.PositiveInfinity;
            }
            worst = Math.Max(worst, err);
        }
        return worst;
    }
}
