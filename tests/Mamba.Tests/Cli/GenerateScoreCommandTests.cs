using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using Mamba.Cli;
using Mamba.Loading;
using Mamba.Tests.Loading;

namespace Mamba.Tests.Cli;

[TestFixture]
public class GenerateScoreCommandTests
{
    private static string Fixture(string name) => Path.Combine(TestSupport.RepoRoot, "tests", "Mamba.Tests", "TestData", "models", name);

    private static (int Code, string Out, string Err) Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var code = CliApp.Run([.. args, "--device", "cpu"], stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    private static int[] Ints(JsonElement e) => e.EnumerateArray().Select(v => v.GetInt32()).ToArray();

    [Test]
    public void GenerateStreamsTheShippedModelsGreedyText()
    {
        var dir = Path.Combine(TestSupport.RepoRoot, "models", ModelOptions.DefaultModelName);
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "reference.json")));
        var prompt = doc.RootElement.GetProperty("prompt").GetString()!;
        var greedy = Ints(doc.RootElement.GetProperty("greedy_ids"));
        var (code, output, err) = Run("generate", "--model", dir, "--prompt", prompt, "--max-tokens", greedy.Length.ToString(CultureInfo.InvariantCulture),
            "--ignore-eos", "--print-token-ids");
        Assert.That(code, Is.EqualTo(0), err);
        Assert.That(output, Is.EqualTo(doc.RootElement.GetProperty("greedy_text").GetString() + Environment.NewLine));
        Assert.That(err, Does.Contain("generated ids: " + string.Join(",", greedy)));
        Assert.That(err, Does.Match("prefill: 11 tokens, [0-9.]+ tokens/s; decode: 48 tokens, [0-9.]+ tokens/s"));
        Assert.That(err, Does.Not.Contain("warning"));
    }

    /// <summary>A config field the library does not read (here a misspelt one) is named in a warning on stderr, with the
    /// file, and the command still runs.</summary>
    [Test]
    public void ScoreWarnsOfConfigFieldsItIgnores()
    {
        var source = Fixture("mamba1-tied");
        using var dir = new TempDir();
        foreach (var file in Directory.GetFiles(source))
        {
            File.Copy(file, Path.Combine(dir.Path, Path.GetFileName(file)));
        }
        var config = File.ReadAllText(Path.Combine(source, "config.json"));
        File.WriteAllText(Path.Combine(dir.Path, "config.json"), config.Insert(config.IndexOf('{', StringComparison.Ordinal) + 1, "\"layer_norm_epsilom\": 1e-5, "));
        var (code, output, err) = Run("score", "--model", dir.Path, "--tokens", "1,2,3");
        Assert.That(code, Is.EqualTo(0), err);
        Assert.That(output, Does.Contain("perplexity:"));
        Assert.That(err, Does.Contain($"mamba: warning: {Path.Combine(dir.Path, "config.json")}: ignoring field this library does not read: layer_norm_epsilom"));
    }

    [Test]
    public void GenerateFromTokenIdsWithoutATokenizerPrintsIds()
    {
        var dir = Fixture("mamba1-tied");
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "expected.json")));
        var ids = Ints(doc.RootElement.GetProperty("input_ids"));
        var greedy = Ints(doc.RootElement.GetProperty("greedy_ids"));
        var (code, output, err) = Run("generate", "-m", dir, "--tokens", string.Join(",", ids), "-n", "12", "--ignore-eos");
        Assert.That(code, Is.EqualTo(0), err);
        Assert.That(output.Trim(), Is.EqualTo(string.Join(",", greedy)));
    }

    /// <summary>score --weights / --activations: bf16 weights and activations land within 2e-2 of transformers' bfloat16
    /// logits, and each option changes the result (a run that ignored either would equal the float32 one).</summary>
    [Test]
    public void ScoreInBFloat16MatchesTransformersInBFloat16()
    {
        var dir = Fixture("mamba1-untied-bias");
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "expected.json")));
        var ids = string.Join(",", Ints(doc.RootElement.GetProperty("input_ids")));
        float[] Score(params string[] options)
        {
            var outPath = Path.Combine(Path.GetTempPath(), $"mamba-score-{Guid.NewGuid():N}.safetensors");
            try
            {
                var (code, _, err) = Run(["score", "--model", dir, "--tokens", ids, "--logits-out", outPath, .. options]);
                Assert.That(code, Is.EqualTo(0), err);
                using var written = SafetensorsFile.Open(outPath);
                return MemoryMarshal.Cast<byte, float>(written.Tensors["logits"].Bytes).ToArray();
            }
            finally
            {
                File.Delete(outPath);
            }
        }
        static double Relative(float[] a, float[] b) =>
            Math.Sqrt(a.Zip(b, (x, y) => (double)(x - y) * (x - y)).Sum() / b.Sum(y => (double)y * y));

        var full = Score("--weights", "bf16", "--activations", "bf16");
        var weightsOnly = Score("--weights", "bf16");
        var fp32 = Score();
        using var reference = SafetensorsFile.Open(Path.Combine(dir, "logits_bf16.safetensors"));
        Assert.That(Relative(full, MemoryMarshal.Cast<byte, float>(reference.Tensors["logits"].Bytes).ToArray()), Is.LessThan(2e-2));
        Assert.That(Relative(weightsOnly, fp32), Is.GreaterThan(1e-5), "--weights bf16 converts the weights");
        Assert.That(Relative(full, weightsOnly), Is.GreaterThan(1e-5), "--activations bf16 rounds the activations");
    }

    [Test]
    public void ScoreWritesLogitsAndPerplexity()
    {
        var dir = Fixture("mamba2-groups2");
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "expected.json")));
        var ids = Ints(doc.RootElement.GetProperty("input_ids"));
        var outPath = Path.Combine(Path.GetTempPath(), $"mamba-score-{Guid.NewGuid():N}.safetensors");
        try
        {
            var (code, output, err) = Run("score", "--model", dir, "--tokens", string.Join(",", ids), "--logits-out", outPath);
            Assert.That(code, Is.EqualTo(0), err);
            using var reference = SafetensorsFile.Open(Path.Combine(dir, "logits.safetensors"));
            using var written = SafetensorsFile.Open(outPath);
            var expected = MemoryMarshal.Cast<byte, float>(reference.Tensors["logits"].Bytes).ToArray();
            var actual = MemoryMarshal.Cast<byte, float>(written.Tensors["logits"].Bytes).ToArray();
            Assert.That(written.Tensors["logits"].Shape, Is.EqualTo(reference.Tensors["logits"].Shape));
            Assert.That(written.Tensors["logits"].DType, Is.EqualTo(Mamba.Tensors.DType.Float32));
            var scale = expected.Max(MathF.Abs);
            Assert.That(actual.Zip(expected, (a, b) => Math.Abs(a - b)).Max() / scale, Is.LessThan(1e-4));

            // Perplexity from the reference logits, in float64.
            var vocab = (int)reference.Tensors["logits"].Shape[2];
            double sum = 0;
            for (var t = 0; t + 1 < ids.Length; t++)
            {
                var row = expected.AsSpan(t * vocab, vocab).ToArray();
                var max = row.Max();
                sum += row[ids[t + 1]] - max - Math.Log(row.Sum(v => Math.Exp(v - max)));
            }
            var mean = sum / (ids.Length - 1);
            var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            var meanPrinted = double.Parse(lines.Single(l => l.StartsWith("mean log-prob: ", StringComparison.Ordinal))["mean log-prob: ".Length..], CultureInfo.InvariantCulture);
            var pplPrinted = double.Parse(lines.Single(l => l.StartsWith("perplexity: ", StringComparison.Ordinal))["perplexity: ".Length..], CultureInfo.InvariantCulture);
            Assert.That(meanPrinted, Is.EqualTo(mean).Within(1e-5));
            Assert.That(pplPrinted, Is.EqualTo(Math.Exp(-mean)).Within(1e-3 * Math.Exp(-mean)));
        }
        finally
        {
            File.Delete(outPath);
        }
    }

    [TestCase("generate", "--prompt", "x", "--tokens", "1")]
    [TestCase("generate", "--model", "/no/such/model", "--prompt", "x")]
    [TestCase("score", "--text", "a", "--tokens", "1,2")]
    [TestCase("score", "--tokens", "1,banana")]
    [TestCase("generate", "--tokens", "1", "--weights", "int4")]
    [TestCase("score", "--tokens", "1,2", "--activations", "f64")]
    public void ErrorsAreOneLineWithNonZeroExit(params string[] args)
    {
        var (code, output, err) = Run(args);
        Assert.That(code, Is.Not.EqualTo(0));
        Assert.That(err, Does.StartWith("mamba: error: "));
        Assert.That(err.TrimEnd().Split('\n'), Has.Length.EqualTo(1), err);
        Assert.That(output, Is.Empty);
    }

    [TestCase("--weights", "int4", "--weights: unknown dtype 'int4' (f32, f16, bf16)")]
    [TestCase("--activations", "f64", "--activations: unknown dtype 'f64' (auto, f32, f16, bf16)")]
    public void DtypeOptionsNameTheOptionAndTheChoices(string option, string value, string message)
    {
        var (code, _, err) = Run("generate", "-m", Fixture("mamba1-tied"), "--tokens", "1", option, value);
        Assert.That(code, Is.Not.EqualTo(0));
        Assert.That(err, Does.Contain(message));
    }

    [Test]
    public void PromptTextNeedsATokenizer()
    {
        var (code, _, err) = Run("generate", "--model", Fixture("mamba1-tied"), "--prompt", "hello");
        Assert.That(code, Is.EqualTo(1));
        Assert.That(err, Does.Contain("no tokenizer"));
    }
}
