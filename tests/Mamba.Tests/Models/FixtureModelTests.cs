using System.Text.Json;
using Mamba.Generation;
using Mamba.Loading;
using Mamba.Models;
using Mamba.Runtime;
using Mamba.Tensors;
using static Mamba.Tests.Models.ModelTestSupport;

namespace Mamba.Tests.Models;

/// <summary>Checkpoints saved by transformers, loaded from disk, against the logits and greedy continuations
/// transformers computed for them (tests/Mamba.Tests/TestData/models), and the shipped model against its reference.</summary>
[TestFixture]
public class FixtureModelTests
{
    private static string FixtureDir(string name) => Path.Combine(TestSupport.RepoRoot, "tests", "Mamba.Tests", "TestData", "models", name);

    private static string ShippedModel => Path.Combine(TestSupport.RepoRoot, "models", "mamba2-pystdlib");

    public static IEnumerable<TestCaseData> Fixtures()
    {
        foreach (var n in new[] { "mamba1-tied", "mamba1-untied-bias", "mamba2-tied", "mamba2-dtlimit", "mamba2-groups2" })
        {
            yield return new TestCaseData(n, Device.Cpu).SetArgDisplayNames(n, "cpu");
            yield return new TestCaseData(n, Device.Cuda(0)).SetArgDisplayNames(n, "cuda").SetCategory(TestSupport.Gpu);
        }
    }

    private static int[] Ints(JsonElement e) => e.EnumerateArray().Select(v => v.GetInt32()).ToArray();

    [TestCaseSource(nameof(Fixtures))]
    public void LogitsAndGreedyTokensMatchTransformers(string name, Device device) =>
        _ = CheckAgainstTransformers(name, new MambaModelOptions { Device = device, PrefillChunkSize = 16 }, "", wholeTolerance: null,
            positionTolerance: 1e-4);

    /// <summary>Weights and activations in bfloat16 against transformers run in bfloat16 on the same checkpoint
    /// (logits_bf16.safetensors, expected_bf16.json; tools/fixtures/make_bf16_fixtures.py): all logits of the prompt
    /// within 2e-2 relative (2-norm of the difference over 2-norm of the reference), each position within 3e-2 (largest
    /// difference over the largest reference logit), and the same greedy continuation. The two implementations
    /// round at different points (transformers rounds the residual stream to bfloat16 before each norm; here it stays
    /// float32), so single positions of the Mamba-2 fixtures differ by up to about 2.06e-2 on both backends.</summary>
    [TestCaseSource(nameof(Fixtures))]
    public void BFloat16LogitsAndGreedyTokensMatchTransformersInBFloat16(string name, Device device)
    {
        var bf16 = new MambaModelOptions { Device = device, PrefillChunkSize = 16, WeightDType = DType.BFloat16, ActivationDType = DType.BFloat16 };
        var logits = CheckAgainstTransformers(name, bf16, "_bf16", wholeTolerance: 2e-2, positionTolerance: 3e-2);

        // The fixtures' bf16 and fp32 references are close (their greedy tokens agree), so check that the run really
        // rounded: bf16 activations give other logits than float32 activations over the same bf16 weights.
        using var weightsOnly = MambaModel.Load(FixtureDir(name), bf16 with { ActivationDType = DType.Float32 });
        Assert.That(weightsOnly.Embedding.Table.DType, Is.EqualTo(DType.BFloat16));
        var positions = logits.Length / weightsOnly.Config.VocabSize;
        var expected = weightsOnly.Score(InputIds(name), keepLogits: true).Logits!;
        Assert.That(NormRelativeError(logits, expected.AsSpan(0, logits.Length).ToArray()), Is.GreaterThan(1e-5), $"{positions} positions");
    }

    private static int[] InputIds(string name)
    {
        using var inputs = JsonDocument.Parse(File.ReadAllText(Path.Combine(FixtureDir(name), "expected.json")));
        return Ints(inputs.RootElement.GetProperty("input_ids"));
    }

    /// <summary>The fixture's logits (logits{suffix}.safetensors) per position within <paramref name="positionTolerance"/>,
    /// over all positions within <paramref name="wholeTolerance"/> when given, and its greedy continuation
    /// (expected{suffix}.json) exactly.</summary>
    /// <returns>The model's logits of the prompt.</returns>
    private static float[] CheckAgainstTransformers(string name, MambaModelOptions options, string suffix, double? wholeTolerance, double positionTolerance)
    {
        if (options.Device is { Type: DeviceType.Cuda })
        {
            TestSupport.RequireCuda();
        }
        var dir = FixtureDir(name);
        using var expected = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, $"expected{suffix}.json")));
        var ids = InputIds(name);
        var greedy = Ints(expected.RootElement.GetProperty("greedy_ids"));
        using var model = MambaModel.Load(dir, options);
        using var reference = SafetensorsFile.Open(Path.Combine(dir, $"logits{suffix}.safetensors"));
        var refLogits = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(reference.Tensors["logits"].Bytes).ToArray();
        var vocab = model.Config.VocabSize;
        Assert.That(reference.Tensors["logits"].Shape, Is.EqualTo(new long[] { 1, ids.Length, vocab }));

        var score = model.Score(ids, keepLogits: true);
        if (wholeTolerance is { } whole)
        {
            Assert.That(NormRelativeError(score.Logits!.AsSpan(0, ids.Length * vocab), refLogits), Is.LessThan(whole), "all positions");
        }
        for (var t = 0; t < ids.Length; t++)
        {
            var row = score.Logits!.AsSpan(t * vocab, vocab).ToArray();
            var expectedRow = refLogits.AsSpan(t * vocab, vocab).ToArray();
            Assert.That(RelativeError(row, expectedRow), Is.LessThan(positionTolerance), $"position {t}");
        }

        var generated = model.Generate([ids], new GenerationOptions { MaxNewTokens = greedy.Length, StopAtEndOfSequence = false })[0];
        Assert.That(generated.Tokens, Is.EqualTo(greedy));
        return score.Logits!.AsSpan(0, ids.Length * vocab).ToArray();
    }

    private static double NormRelativeError(ReadOnlySpan<float> actual, float[] expected)
    {
        Assert.That(actual.Length, Is.EqualTo(expected.Length));
        double diff = 0, norm = 0;
        for (var i = 0; i < actual.Length; i++)
        {
            diff += (actual[i] - (double)expected[i]) * (actual[i] - (double)expected[i]);
            norm += (double)expected[i] * expected[i];
        }
        return Math.Sqrt(diff / norm);
    }

    /// <summary>Config fields the library does not read are listed on the loaded model (a misspelt one among them), in
    /// the file's order, and the model still loads; a transformers-written config lists none, a model made in memory
    /// none either.</summary>
    [Test]
    public void IgnoredConfigFieldsAreListedOnTheModel()
    {
        var source = FixtureDir("mamba1-tied");
        using var dir = new Mamba.Tests.Loading.TempDir();
        foreach (var file in Directory.GetFiles(source))
        {
            File.Copy(file, Path.Combine(dir.Path, Path.GetFileName(file)));
        }
        var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(source, "config.json")))!.AsObject();
        config["my_tag"] = "x";
        config["state_sise"] = 99;
        File.WriteAllText(Path.Combine(dir.Path, "config.json"), config.ToJsonString());
        var cpu = new MambaModelOptions { Device = Device.Cpu };
        using (var model = MambaModel.Load(dir.Path, cpu))
        {
            Assert.That(model.IgnoredConfigFields, Is.EqualTo(new[] { "my_tag", "state_sise" }));
        }
        using (var model = MambaModel.Load(source, cpu))
        {
            Assert.That(model.IgnoredConfigFields, Is.Empty);
            using var made = MambaModel.Create(model.Config, TinyModel.Create(model.Config, seed: 1).Checkpoint, cpu);
            Assert.That(made.IgnoredConfigFields, Is.Empty);
        }
    }

    [Test]
    public void OriginalStateSpacesPickleCheckpointRuns()
    {
        // Original naming (backbone.embedding), padded vocabulary, PyTorch pickle weights.
        var dir = Path.Combine(TestSupport.RepoRoot, "tests", "Mamba.Tests", "TestData", "torch", "state-spaces-mamba1");
        using var model = MambaModel.Load(dir, new MambaModelOptions { Device = Device.Cpu });
        Assert.That(model.Config.Family, Is.EqualTo(MambaFamily.Mamba1));
        var score = model.Score([1, 2, 3, 4, 5], keepLogits: true);
        Assert.That(score.Logits!.All(float.IsFinite), Is.True);
        Assert.That(score.Logits!.Distinct().Count(), Is.GreaterThan(1));
        var generated = model.Generate([[1, 2, 3]], new GenerationOptions { MaxNewTokens = 4, StopAtEndOfSequence = false })[0];
        Assert.That(generated.Tokens, Has.Count.EqualTo(4));
    }

    [Test]
    public async Task ShippedModelReproducesItsReferenceContinuation()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(ShippedModel, "reference.json")));
        var prompt = doc.RootElement.GetProperty("prompt").GetString()!;
        var promptIds = Ints(doc.RootElement.GetProperty("prompt_ids"));
        var greedy = Ints(doc.RootElement.GetProperty("greedy_ids"));
        var greedyText = doc.RootElement.GetProperty("greedy_text").GetString()!;
        using var model = MambaModel.Load(ShippedModel, new MambaModelOptions { Device = Device.Cpu });
        Assert.That(model.Tokenizer, Is.Not.Null);
        Assert.That(model.Tokenizer!.Encode(prompt), Is.EqualTo(promptIds));

        var options = new GenerationOptions { MaxNewTokens = greedy.Length, StopAtEndOfSequence = false };
        var tokens = new List<int>();
        await foreach (var t in model.GenerateTokensAsync(promptIds, options))
        {
            tokens.Add(t);
        }
        Assert.That(tokens, Is.EqualTo(greedy));

        var text = new System.Text.StringBuilder();
        GenerationStats? stats = null;
        await foreach (var piece in model.GenerateAsync(prompt, options with { OnStats = s => stats = s }))
        {
            text.Append(piece);
        }
        Assert.That(text.ToString(), Is.EqualTo(greedyText));
        Assert.That(stats!.GeneratedTokens, Is.EqualTo(greedy.Length));
        Assert.That(stats.PromptTokens, Is.EqualTo(promptIds.Length));
    }

    /// <summary>ActivationDType left null: the bf16 shipped model computes in bfloat16 on CUDA and in float32 on the CPU,
    /// converted to float16 weights in float16 on CUDA, to float32 weights in float32 on both, and an explicit type wins. The logits of the reference prompt are the
    /// explicit float32 ones exactly where the resolved type is float32, and otherwise differ but stay within 3e-2.</summary>
    [TestCaseSource(typeof(TestSupport), nameof(TestSupport.Devices))]
    public void ActivationTypeFollowsTheDeviceAndTheWeightsWhenUnset(Device device)
    {
        if (device.Type == DeviceType.Cuda)
        {
            TestSupport.RequireCuda();
        }
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(ShippedModel, "reference.json")));
        var promptIds = Ints(doc.RootElement.GetProperty("prompt_ids"));
        using var auto = MambaModel.Load(ShippedModel, new MambaModelOptions { Device = device });
        using var full = MambaModel.Load(ShippedModel, new MambaModelOptions { Device = device, ActivationDType = DType.Float32 });
        using var f32Weights = MambaModel.Load(ShippedModel, new MambaModelOptions { Device = device, WeightDType = DType.Float32 });
        using var f16Weights = MambaModel.Load(ShippedModel, new MambaModelOptions { Device = device, WeightDType = DType.Float16 });
        var expectedType = device.Type == DeviceType.Cpu ? DType.Float32 : DType.BFloat16;
        Assert.Multiple(() =>
        {
            Assert.That(auto.Options.ActivationDType, Is.Null);
            Assert.That(auto.ActivationDType, Is.EqualTo(expectedType));
            Assert.That(full.ActivationDType, Is.EqualTo(DType.Float32));
            Assert.That(f32Weights.ActivationDType, Is.EqualTo(DType.Float32));
            Assert.That(f16Weights.ActivationDType, Is.EqualTo(device.Type == DeviceType.Cpu ? DType.Float32 : DType.Float16));
        });
        // The float16 model runs in its resolved type: its logits of the prompt are finite.
        var f16Logits = f16Weights.Score(promptIds, keepLogits: true).Logits!;
        Assert.That(f16Logits.All(float.IsFinite), Is.True, "float16 weights, auto activations");
        var autoLogits = auto.Score(promptIds, keepLogits: true).Logits!;
        var fullLogits = full.Score(promptIds, keepLogits: true).Logits!;
        if (expectedType == DType.Float32)
        {
            Assert.That(autoLogits, Is.EqualTo(fullLogits));
        }
        else
        {
            Assert.That(NormRelativeError(autoLogits, fullLogits), Is.GreaterThan(1e-5).And.LessThan(3e-2));
        }
    }

    [Test]
    public async Task StopStringEndsTextGeneration()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(ShippedModel, "reference.json")));
        var prompt = doc.RootElement.GetProperty("prompt").GetString()!;
        var greedyText = doc.RootElement.GetProperty("greedy_text").GetString()!;
        using var model = MambaModel.Load(ShippedModel, new MambaModelOptions { Device = Device.Cpu });
        var stop = "\n#";
        var pieces = new List<string>();
        await foreach (var piece in model.GenerateAsync(prompt, new GenerationOptions { MaxNewTokens = 48, StopAtEndOfSequence = false, StopStrings = [stop] }))
        {
            pieces.Add(piece);
        }
        Assert.That(string.Concat(pieces), Is.EqualTo(greedyText[..greedyText.IndexOf(stop, StringComparison.Ordinal)]));
    }
}
