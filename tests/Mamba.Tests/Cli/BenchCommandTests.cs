using Mamba.Cli;

namespace Mamba.Tests.Cli;

[TestFixture]
public class BenchCommandTests
{
    [Test]
    public void BenchWritesARowPerCaseAndTheFiles()
    {
        var dir = Directory.CreateTempSubdirectory("mamba-bench-");
        try
        {
            var md = Path.Combine(dir.FullName, "bench.md");
            var json = Path.Combine(dir.FullName, "bench.json");
            var stdout = new StringWriter();
            var stderr = new StringWriter();
            var code = CliApp.Run(["bench", "--device", "cpu", "--shapes", "mamba2-130m", "--dtypes", "bf16", "--steps", "1", "--prefill", "16",
                "--markdown", md, "--json", json], stdout, stderr);
            Assert.That(code, Is.Zero, stderr.ToString());
            Assert.That(stdout.ToString(), Does.Contain("memory read bandwidth"));
            var row = File.ReadAllLines(md).Single(l => l.StartsWith("| mamba2-130m |", StringComparison.Ordinal));
            var cells = row.Split('|', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
            Assert.That(cells[1], Is.EqualTo("BFloat16"));
            Assert.That(cells[2], Is.EqualTo("Float32"), "--activations auto computes in float32 on the CPU");
            // weight MB: the bf16 projections, conv and norms plus the float32 A_log, D and dt_bias vectors
            Assert.That(double.Parse(cells[4], System.Globalization.CultureInfo.InvariantCulture), Is.InRange(250, 265));
            Assert.That(double.Parse(cells[5], System.Globalization.CultureInfo.InvariantCulture), Is.GreaterThan(0));
            // the sampled step: the same decode plus a top-p draw and the ids read back
            Assert.That(double.Parse(cells[6], System.Globalization.CultureInfo.InvariantCulture), Is.GreaterThan(0));
            Assert.That(File.ReadAllText(json), Does.Contain("\"DecodeTokensPerSecond\"").And.Contain("\"SampledDecodeMs\""));
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [TestCase("--shapes", "mamba-9b", "unknown model shape 'mamba-9b'")]
    [TestCase("--dtypes", "int8", "unknown dtype 'int8'")]
    [TestCase("--batch", "0", "'0' is not a positive integer")]
    [TestCase("--activations", "int8", "--activations: unknown dtype 'int8' (auto, f32, f16, bf16)")]
    [TestCase("--prefill-chunk", "-1", "--prefill-chunk must not be negative")]
    public void BadOptionsFailWithOneLine(string option, string value, string message)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var code = CliApp.Run(["bench", "--device", "cpu", option, value], stdout, stderr);
        Assert.That(code, Is.EqualTo(1));
        Assert.That(stderr.ToString(), Does.Contain(message));
        Assert.That(stderr.ToString(), Does.Not.Contain("   at "));
    }

    [Test]
    public void FixedActivationTypeIsUsedAndRecorded()
    {
        var dir = Directory.CreateTempSubdirectory("mamba-bench-");
        try
        {
            var json = Path.Combine(dir.FullName, "bench.json");
            var stdout = new StringWriter();
            var stderr = new StringWriter();
            var code = CliApp.Run(["bench", "--device", "cpu", "--shapes", "mamba-130m", "--dtypes", "bf16", "--activations", "bf16", "--steps", "1",
                "--prefill", "8", "--prefill-chunk", "4", "--json", json], stdout, stderr);
            Assert.That(code, Is.Zero, stderr.ToString());
            Assert.That(stdout.ToString(), Does.Contain("| mamba-130m | BFloat16 | BFloat16 | 1 |"));
            Assert.That(File.ReadAllText(json), Does.Contain("\"Activations\": \"BFloat16\"").And.Contain("\"PrefillChunk\": 4"));
            Assert.That(stdout.ToString(), Does.Match(@"\| mamba-130m \|.*\| 4 \|"), "the piece size is the last column");
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [TestCase("--shapes", "mamba-9b", "unknown model shape 'mamba-9b'")]
    [TestCase("--dtype", "int8", "--dtype: unknown dtype 'int8'")]
    [TestCase("--batch", "0", "--batch and --steps must be at least 1")]
    [TestCase("--steps", "0", "--batch and --steps must be at least 1")]
    [TestCase("--steps", "1", "device cpu cannot capture graphs")]
    public void BadOverheadBenchOptionsFailWithOneLine(string option, string value, string message)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var code = CliApp.Run(["bench-overhead", "--device", "cpu", option, value], stdout, stderr);
        Assert.That(code, Is.EqualTo(1));
        Assert.That(stderr.ToString(), Does.Contain(message));
        Assert.That(stderr.ToString(), Does.Not.Contain("   at "));
        Assert.That(stdout.ToString(), Is.Empty, "nothing is measured or printed before the options are checked");
    }
}
