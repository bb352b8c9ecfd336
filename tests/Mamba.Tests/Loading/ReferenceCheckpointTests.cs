using System.Text.Json;
using Mamba.Loading;
using Mamba.Models;

namespace Mamba.Tests.Loading;

/// <summary>The loader on checkpoints written by transformers (save_pretrained), not by this library.</summary>
[TestFixture]
public class ReferenceCheckpointTests
{
    /// <summary>The reference fixtures, each with logits.safetensors.</summary>
    private static IEnumerable<TestCaseData> Fixtures()
    {
        var root = Path.Combine(TestSupport.RepoRoot, "tests", "Mamba.Tests", "TestData", "models");
        return Directory.GetDirectories(root).Order().Select(dir => new TestCaseData(dir).SetArgDisplayNames(Path.GetFileName(dir)));
    }

    private static IEnumerable<TestCaseData> Models()
    {
        foreach (var fixture in Fixtures())
        {
            yield return fixture;
        }
        yield return new TestCaseData(Path.Combine(TestSupport.RepoRoot, "models", "mamba2-pystdlib")).SetArgDisplayNames("mamba2-pystdlib");
    }

    [TestCaseSource(nameof(Models))]
    public void LoadsAndValidatesWithEveryFieldUnderstood(string dir)
    {
        using var model = LoadedModel.Load(dir);
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "config.json")));
        var raw = json.RootElement;
        var c = model.Config;
        Assert.Multiple(() =>
        {
            Assert.That(model.ConfigInfo.IgnoredFields, Is.Empty);
            Assert.That(model.Files.GenerationConfigPath, Is.EqualTo(Path.Combine(dir, "generation_config.json")));
            Assert.That(c.Family, Is.EqualTo(raw.GetProperty("model_type").GetString() == "mamba2" ? MambaFamily.Mamba2 : MambaFamily.Mamba1));
            Assert.That(c.HiddenSize, Is.EqualTo(raw.GetProperty("hidden_size").GetInt32()));
            Assert.That(c.NumLayers, Is.EqualTo(raw.GetProperty("num_hidden_layers").GetInt32()));
            Assert.That(c.VocabSize, Is.EqualTo(raw.GetProperty("vocab_size").GetInt32()));
            Assert.That(c.StateSize, Is.EqualTo(raw.GetProperty("state_size").GetInt32()));
            Assert.That(c.TieWordEmbeddings, Is.EqualTo(raw.GetProperty("tie_word_embeddings").GetBoolean()));
            Assert.That(c.UseBias, Is.EqualTo(raw.GetProperty("use_bias").GetBoolean()));
            Assert.That(model.Weights.Layout.Naming, Is.EqualTo(TensorNaming.HuggingFace));
            Assert.That(model.Weights.LmHead.Shape, Is.EqualTo(new long[] { c.VocabSize, c.HiddenSize }));
        });
        if (c.Family == MambaFamily.Mamba2)
        {
            Assert.That(c.NumGroups, Is.EqualTo(raw.GetProperty("n_groups").GetInt32()));
            var limit = raw.GetProperty("time_step_limit");
            Assert.That(c.TimeStepLimit.Min, Is.EqualTo((float)limit[0].GetDouble()));
            Assert.That(c.TimeStepLimit.Max, limit[1].ValueKind == JsonValueKind.Number
                ? Is.EqualTo((float)limit[1].GetDouble())
                : Is.EqualTo(float.PositiveInfinity));
        }
        else
        {
            Assert.That(c.TimeStepRank, Is.EqualTo(raw.GetProperty("time_step_rank").GetInt32()));
        }
    }

    [TestCaseSource(nameof(Fixtures))]
    public void LogitsFilesOpen(string dir)
    {
        var logits = Path.Combine(dir, "logits.safetensors");
        using var expected = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "expected.json")));
        var length = expected.RootElement.GetProperty("input_ids").GetArrayLength();
        var vocab = ConfigLoader.Load(Path.Combine(dir, "config.json")).VocabSize;
        using var file = SafetensorsFile.Open(logits);
        Assert.That(file.Tensors["logits"].Shape, Is.EqualTo(new long[] { 1, length, vocab }));
        Assert.That(file.Tensors["logits"].ToFloatArray().All(float.IsFinite), Is.True);
    }
}
