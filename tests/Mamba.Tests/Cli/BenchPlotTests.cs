using System.Buffers.Binary;
using System.IO.Compression;
using Mamba.Cli;

namespace Mamba.Tests.Cli;

[TestFixture]
public class BenchPlotTests
{
    private static readonly byte[] PngSignature = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];

    private DirectoryInfo _dir = null!;

    [SetUp]
    public void SetUp() => _dir = Directory.CreateTempSubdirectory("mamba-bench-plots-");

    [TearDown]
    public void TearDown() => _dir.Delete(recursive: true);

    private static (int Code, string Out, string Err) Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var code = CliApp.Run(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    // A machine without fonts (the GPU servers here have none) draws charts with no text at all: the command
    // says so and names the way out, instead of writing label-less charts silently.
    [Test]
    public void MissingFontsAreAWarningThatNamesTheWayOut()
    {
        var warning = BenchPlots.MissingFontsWarning(0);
        Assert.That(warning, Does.Contain("no fonts found").And.Contain("--from-json"));
        Assert.That(BenchPlots.MissingFontsWarning(1), Is.Null);
    }

    [Test]
    public void PlotsProfileAndJsonFromOneRunAndAgainFromTheJson()
    {
        var plots = Path.Combine(_dir.FullName, "plots");
        var json = Path.Combine(_dir.FullName, "bench.json");
        var (code, output, err) = Run("bench", "--device", "cpu", "--shapes", "mamba2-130m", "--dtypes", "f32", "--batch", "1,2", "--steps", "1",
            "--prefill", "16", "--profile", "32", "--json", json, "--plots", plots);
        Assert.That(code, Is.Zero, err);
        Assert.That(err.Contains("no fonts found", StringComparison.Ordinal), Is.EqualTo(BenchPlots.InstalledFontFamilies() == 0),
            "the missing-fonts warning appears exactly when no font is installed");
        Assert.That(output, Does.Contain("| ssd | 24 |"), "the profile table lists the scan of every layer");
        foreach (var name in new[] { BenchPlots.RooflineFile, BenchPlots.ThroughputFile, BenchPlots.ProfileFile })
        {
            AssertNonTrivialPng(Path.Combine(plots, name), 1200, 750);
        }

        var profile = System.Text.Json.JsonDocument.Parse(File.ReadAllText(json)).RootElement.GetProperty("profiles")[0];
        Assert.That(profile.GetProperty("Tokens").GetInt32(), Is.EqualTo(32));
        var shares = profile.GetProperty("Ops").EnumerateArray().ToList();
        Assert.That(shares.Sum(o => o.GetProperty("Percent").GetDouble()), Is.EqualTo(100).Within(1e-6));
        Assert.That(shares.Select(o => o.GetProperty("Op").GetString()),
            Is.SupersetOf(new[] { "embedding", "rmsnorm", "in_proj", "conv1d", "ssd", "gated_rmsnorm", "out_proj", "final_norm", "lm_head", "other" }));

        var again = Path.Combine(_dir.FullName, "again");
        var md = Path.Combine(_dir.FullName, "again.md");
        (code, output, err) = Run("bench", "--from-json", json, "--plots", again, "--markdown", md);
        Assert.That(code, Is.Zero, err);
        Assert.That(output, Does.Not.Contain("bandwidth " + "0.0 GB/s"));
        Assert.That(File.ReadAllLines(md).Count(l => l.StartsWith("| mamba2-130m | Float32 |", StringComparison.Ordinal)), Is.EqualTo(2));
        Assert.That(File.ReadAllText(md), Does.Contain("Prefill profile: mamba2-130m Float32 weights, Float32 activations, 32 tokens"));
        AssertNonTrivialPng(Path.Combine(again, BenchPlots.RooflineFile), 1200, 750);
        AssertNonTrivialPng(Path.Combine(again, BenchPlots.ThroughputFile), 1200, 750);
    }

    [Test]
    public void ProfilesABatchOfSequencesPrefilledTogether()
    {
        var json = Path.Combine(_dir.FullName, "bench.json");
        var (code, output, err) = Run("bench", "--device", "cpu", "--shapes", "mamba-130m", "--dtypes", "f32", "--batch", "2", "--steps", "1",
            "--prefill", "8", "--profile", "16", "--profile-batch", "3", "--json", json);
        Assert.That(code, Is.Zero, err);
        Assert.That(output, Does.Contain("Prefill profile: mamba-130m Float32 weights, Float32 activations, 3 x 16 tokens"));
        Assert.That(output, Does.Contain("| selective_scan | 24 |"), "one scan call per layer: the three sequences run as one batch");
        var profile = System.Text.Json.JsonDocument.Parse(File.ReadAllText(json)).RootElement.GetProperty("profiles")[0];
        Assert.That(profile.GetProperty("Batch").GetInt32(), Is.EqualTo(3));
        Assert.That(profile.GetProperty("TokensPerSecond").GetDouble(), Is.EqualTo(48 / (profile.GetProperty("TotalMs").GetDouble() / 1e3)).Within(1e-6).Percent);

        // A report written before profiles recorded their batch reads as one sequence.
        var old = Path.Combine(_dir.FullName, "old.json");
        File.WriteAllText(old, $$"""{"device":"cpu","bandwidthBytesPerSecond":1e10,"results":[{{GoodRow}}],"profiles":[{"Shape":"mamba-130m","DType":"Float32","Device":"cpu","Tokens":8,"TotalMs":3,"TokensPerSecond":2666,"Ops":[{"Op":"in_proj","Milliseconds":3,"Calls":24,"Percent":100}]}]}""");
        (code, output, err) = Run("bench", "--from-json", old);
        Assert.That(code, Is.Zero, err);
        Assert.That(output, Does.Contain("Float32 activations, 8 tokens on cpu"));

        (code, _, err) = Run("bench", "--device", "cpu", "--shapes", "mamba-130m", "--profile", "8", "--profile-batch", "0");
        Assert.That(code, Is.EqualTo(1));
        Assert.That(err, Does.Contain("--profile-batch must be at least 1"));
    }

    [Test]
    public void ProfileTimingIsRecordedAndAnUnknownOneFailsBeforeAnyWork()
    {
        foreach (var timing in new[] { "events", "sync" })
        {
            var json = Path.Combine(_dir.FullName, $"{timing}.json");
            var (code, output, err) = Run("bench", "--device", "cpu", "--shapes", "mamba-130m", "--dtypes", "f32", "--steps", "1", "--prefill", "0",
                "--profile", "16", "--profile-timing", timing, "--json", json);
            Assert.That(code, Is.Zero, err);
            Assert.That(output, Does.Contain(timing == "events" ? "nothing synchronized between ops" : "each op synchronized"), timing);
            var profile = System.Text.Json.JsonDocument.Parse(File.ReadAllText(json)).RootElement.GetProperty("profiles")[0];
            Assert.That(profile.GetProperty("Timing").GetString(), Is.EqualTo(timing));
            var shares = profile.GetProperty("Ops").EnumerateArray().ToList();
            Assert.That(shares.Sum(o => o.GetProperty("Percent").GetDouble()), Is.EqualTo(100).Within(1e-6), timing);
            Assert.That(shares.Single(o => o.GetProperty("Op").GetString() == "selective_scan").GetProperty("Calls").GetInt32(), Is.EqualTo(24), timing);
        }
        var (failed, stdout, error) = Run("bench", "--device", "cpu", "--shapes", "mamba-130m", "--profile", "8", "--profile-timing", "wall");
        Assert.That(failed, Is.EqualTo(1));
        Assert.That(error, Does.Contain("--profile-timing must be 'events' or 'sync', not 'wall'"));
        Assert.That(stdout, Does.Not.Contain("bandwidth"), "nothing was measured");
    }

    [Test]
    public void PlotsIntoAPathThatIsAFileFailWithOneLine()
    {
        var json = Path.Combine(_dir.FullName, "bench.json");
        File.WriteAllText(json, """{"device":"cpu","bandwidthBytesPerSecond":1e10,"bandwidthKind":"read","results":[]}""");
        var blocker = Path.Combine(_dir.FullName, "not-a-dir");
        File.WriteAllText(blocker, "x");
        var (code, _, err) = Run("bench", "--from-json", json, "--plots", Path.Combine(blocker, "plots"));
        Assert.That(code, Is.EqualTo(1));
        Assert.That(err, Does.Contain("--plots: cannot create directory"));
        Assert.That(err, Does.Not.Contain("   at "));
    }

    [TestCase("missing.json", "cannot read")]
    [TestCase("garbage.json", "is not a bench report")]
    public void BadJsonFailsWithOneLine(string file, string message)
    {
        File.WriteAllText(Path.Combine(_dir.FullName, "garbage.json"), "{ not json");
        var (code, _, err) = Run("bench", "--from-json", Path.Combine(_dir.FullName, file));
        Assert.That(code, Is.EqualTo(1));
        Assert.That(err, Does.Contain("--from-json: ").And.Contain(message));
        Assert.That(err, Does.Not.Contain("   at "));
    }

    [TestCase("--profile", "32")]
    [TestCase("--device", "cpu")]
    [TestCase("--shapes", "mamba-130m")]
    public void FromJsonRefusesMeasurementOptions(string option, string value)
    {
        var json = Path.Combine(_dir.FullName, "bench.json");
        File.WriteAllText(json, $$"""{"device":"cpu","bandwidthBytesPerSecond":1e10,"results":[{{GoodRow}}]}""");
        var (code, output, err) = Run("bench", "--from-json", json, option, value);
        Assert.That(code, Is.EqualTo(1), output);
        Assert.That(err, Does.Contain($"--from-json measures nothing: {option} cannot be combined with it"));
        Assert.That(output, Is.Empty);
    }

    private const string GoodRow = """{"Shape":"mamba-130m","DType":"Float32","Batch":1,"WeightBytes":500000000,"DecodeMs":2,"DecodeTokensPerSecond":500}""";

    [TestCase("results", "[null]", "results[0] is not a bench result")]
    [TestCase("results", "[{}]", "results[0] is not a bench result")]
    [TestCase("results", "[" + GoodRow + ",{\"Shape\":\"mamba-130m\",\"DType\":\"Float32\",\"Batch\":2,\"WeightBytes\":500000000,\"DecodeMs\":0,\"DecodeTokensPerSecond\":0}]", "results[1] is not a bench result")]
    [TestCase("profiles", "[{\"Shape\":\"mamba-130m\",\"DType\":\"Float32\",\"Device\":\"cpu\",\"Tokens\":8,\"TotalMs\":3}]", "profiles[0] is not a prefill profile")]
    [TestCase("profiles", "[{\"Shape\":\"mamba-130m\",\"DType\":\"Float32\",\"Device\":\"cpu\",\"Tokens\":8,\"TotalMs\":3,\"Ops\":[{}]}]", "profiles[0] is not a prefill profile")]
    [TestCase("profiles", "[{\"Shape\":\"mamba-130m\",\"DType\":\"Float32\",\"Device\":\"cpu\",\"Tokens\":8,\"Batch\":0,\"TotalMs\":3,\"Ops\":[]}]", "profiles[0] is not a prefill profile")]
    public void MalformedEntriesFailWithOneLine(string property, string value, string message)
    {
        var json = Path.Combine(_dir.FullName, "bench.json");
        var results = property == "results" ? value : "[" + GoodRow + "]";
        var profiles = property == "profiles" ? value : "null";
        File.WriteAllText(json, $$"""{"device":"cpu","bandwidthBytesPerSecond":1e10,"bandwidthKind":"read","results":{{results}},"profiles":{{profiles}}}""");
        var (code, output, err) = Run("bench", "--from-json", json, "--plots", Path.Combine(_dir.FullName, "plots"));
        Assert.That(code, Is.EqualTo(1), output);
        Assert.That(err, Does.Contain("--from-json: ").And.Contain(message));
        Assert.That(err, Does.Not.Contain("   at "));
        Assert.That(Directory.Exists(Path.Combine(_dir.FullName, "plots")), Is.False, "nothing is drawn from a bad report");
    }

    [Test]
    public void AWellFormedReportIsAccepted()
    {
        // The counterpart of the malformed cases: the same minimal report with good entries is read and drawn.
        var json = Path.Combine(_dir.FullName, "bench.json");
        File.WriteAllText(json, $$"""{"device":"cpu","bandwidthBytesPerSecond":1e10,"results":[{{GoodRow}}]}""");
        var (code, output, err) = Run("bench", "--from-json", json, "--plots", Path.Combine(_dir.FullName, "plots"));
        Assert.That(code, Is.Zero, err);
        Assert.That(output, Does.Contain("| mamba-130m | Float32 | Float32 | 1 | 500 | 2.000 | - | 500.0 |"),
            "a report without activations or a sampled step (older runs) shows float32 and no sampled time");
        AssertNonTrivialPng(Path.Combine(_dir.FullName, "plots", BenchPlots.RooflineFile), 1200, 750);
    }

    [Test]
    public void PlotsWithoutSkiasNativeLibraryFailWithOneLine()
    {
        if (!OperatingSystem.IsLinux())
        {
            Assert.Ignore("the application copy is made with cp -al");
        }
        // A copy of the application folder without libSkiaSharp, as on a platform it does not ship for: hard links,
        // so it sits next to the application folder (hard links cannot cross into another file system such as /tmp).
        var appDir = AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar);
        var work = Path.Combine(Path.GetDirectoryName(appDir)!, "no-skia-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            Directory.CreateDirectory(work);
            var app = Path.Combine(work, "app");
            var (cpCode, cpOut) = Native.CudaLibraryPreferenceTests.Run("cp", ["-al", appDir, app], null);
            Assert.That(cpCode, Is.Zero, cpOut);
            var skia = Directory.GetFiles(app, "libSkiaSharp*", SearchOption.AllDirectories);
            Assert.That(skia, Is.Not.Empty, "the application ships libSkiaSharp");
            foreach (var file in skia)
            {
                File.Delete(file);
            }
            var json = Path.Combine(_dir.FullName, "bench.json");
            File.WriteAllText(json, $$"""{"device":"cpu","bandwidthBytesPerSecond":1e10,"results":[{{GoodRow}}]}""");
            var (code, output) = Native.CudaLibraryPreferenceTests.Run("dotnet", [Path.Combine(app, "mamba.dll"), "bench", "--from-json", json, "--plots", Path.Combine(_dir.FullName, "plots")], null);
            Assert.That(code, Is.EqualTo(1), output);
            var error = output.Split('\n').Where(l => l.StartsWith("mamba: error:", StringComparison.Ordinal)).ToList();
            Assert.That(error, Has.Count.EqualTo(1), output);
            Assert.That(error[0], Does.Contain("--plots: cannot draw charts, SkiaSharp's native library did not load: "));
            Assert.That(output, Does.Not.Contain("   at "));
            Assert.That(output.TrimEnd(), Does.EndWith(error[0].TrimEnd()), "the error is the last line");
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }

    /// <summary>Checks the PNG signature, the IHDR size, and that the decoded pixels are not one colour.</summary>
    private static void AssertNonTrivialPng(string path, int width, int height)
    {
        Assert.That(File.Exists(path), Is.True, path);
        var bytes = File.ReadAllBytes(path);
        Assert.That(bytes.AsSpan(0, 8).ToArray(), Is.EqualTo(PngSignature), "PNG signature");
        Assert.That(System.Text.Encoding.ASCII.GetString(bytes, 12, 4), Is.EqualTo("IHDR"));
        Assert.That(BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(16)), Is.EqualTo(width));
        Assert.That(BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(20)), Is.EqualTo(height));
        int bitDepth = bytes[24], colorType = bytes[25];
        Assert.That(bitDepth, Is.EqualTo(8));
        var channels = colorType switch { 2 => 3, 6 => 4, _ => throw new AssertionException($"unexpected PNG colour type {colorType}") };

        // Concatenate the IDAT chunks, inflate, undo the per-row filters and count distinct colours.
        var idat = new MemoryStream();
        for (var pos = 8; pos < bytes.Length;)
        {
            var length = BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(pos));
            var type = System.Text.Encoding.ASCII.GetString(bytes, pos + 4, 4);
            if (type == "IDAT")
            {
                idat.Write(bytes, pos + 8, length);
            }
            pos += 12 + length;
        }
        idat.Position = 0;
        using var z = new ZLibStream(idat, CompressionMode.Decompress);
        var raw = new MemoryStream();
        z.CopyTo(raw);
        var data = raw.ToArray();
        var stride = width * channels;
        Assert.That(data, Has.Length.EqualTo(height * (stride + 1)));
        var prev = new byte[stride];
        var row = new byte[stride];
        var colours = new HashSet<int>();
        for (var y = 0; y < height; y++)
        {
            var filter = data[y * (stride + 1)];
            for (var x = 0; x < stride; x++)
            {
                int raw8 = data[y * (stride + 1) + 1 + x];
                int left = x >= channels ? row[x - channels] : 0, up = prev[x], upLeft = x >= channels ? prev[x - channels] : 0;
                row[x] = (byte)(filter switch
                {
                    0 => raw8,
                    1 => raw8 + left,
                    2 => raw8 + up,
                    3 => raw8 + (left + up) / 2,
                    4 => raw8 + Paeth(left, up, upLeft),
                    _ => throw new AssertionException($"bad PNG filter {filter}"),
                });
            }
            for (var x = 0; x < stride; x += channels)
            {
                colours.Add(row[x] | row[x + 1] << 8 | row[x + 2] << 16);
            }
            (prev, row) = (row, prev);
        }
        Assert.That(colours, Has.Count.GreaterThan(5), "a chart has a background, axes, text and several series colours");
    }

    private static int Paeth(int a, int b, int c)
    {
        int p = a + b - c, pa = Math.Abs(p - a), pb = Math.Abs(p - b), pc = Math.Abs(p - c);
        return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
    }
}
