using Mamba.Loading;
using Mamba.Models;
using Mamba.Tensors;

namespace Mamba.Tests.Loading;

/// <summary>Expected tensor sets, validation of checkpoints against a config, and layout-independent access.</summary>
[TestFixture]
public class CheckpointLayoutTests
{
    private static IEnumerable<TestCaseData> Cases()
    {
        foreach (var naming in new[] { TensorNaming.HuggingFace, TensorNaming.StateSpaces })
        {
            yield return new TestCaseData(LoadingFixtures.TinyMamba1(), naming).SetArgDisplayNames("mamba1", naming.ToString());
            yield return new TestCaseData(LoadingFixtures.TinyMamba2(), naming).SetArgDisplayNames("mamba2", naming.ToString());
        }
    }

    [Test]
    public void Mamba1ShapesFollowTheReferenceModule()
    {
        // D=8, I=16, N=4, R=2, K=4, V=16
        var layout = CheckpointLayout.For(LoadingFixtures.TinyMamba1(), TensorNaming.HuggingFace);
        var shapes = layout.Tensors.ToDictionary(t => t.Name, t => t.Shape);
        Assert.Multiple(() =>
        {
            Assert.That(shapes["backbone.embeddings.weight"], Is.EqualTo(new long[] { 16, 8 }));
            Assert.That(shapes["backbone.norm_f.weight"], Is.EqualTo(new long[] { 8 }));
            Assert.That(shapes["backbone.layers.1.norm.weight"], Is.EqualTo(new long[] { 8 }));
            Assert.That(shapes["backbone.layers.1.mixer.in_proj.weight"], Is.EqualTo(new long[] { 32, 8 }));
            Assert.That(shapes["backbone.layers.1.mixer.conv1d.weight"], Is.EqualTo(new long[] { 16, 1, 4 }));
            Assert.That(shapes["backbone.layers.1.mixer.conv1d.bias"], Is.EqualTo(new long[] { 16 }));
            Assert.That(shapes["backbone.layers.1.mixer.x_proj.weight"], Is.EqualTo(new long[] { 2 + 8, 16 }));
            Assert.That(shapes["backbone.layers.1.mixer.dt_proj.weight"], Is.EqualTo(new long[] { 16, 2 }));
            Assert.That(shapes["backbone.layers.1.mixer.dt_proj.bias"], Is.EqualTo(new long[] { 16 }));
            Assert.That(shapes["backbone.layers.1.mixer.A_log"], Is.EqualTo(new long[] { 16, 4 }));
            Assert.That(shapes["backbone.layers.1.mixer.D"], Is.EqualTo(new long[] { 16 }));
            Assert.That(shapes["backbone.layers.1.mixer.out_proj.weight"], Is.EqualTo(new long[] { 8, 16 }));
            Assert.That(shapes, Does.Not.ContainKey("backbone.layers.2.norm.weight"));
            Assert.That(shapes, Does.Not.ContainKey("backbone.layers.0.mixer.in_proj.bias"));
            Assert.That(layout.Tensors.Single(t => t.Name == "lm_head.weight").Optional, Is.True, "tied");
            Assert.That(shapes, Has.Count.EqualTo(3 + 2 * 10));
        });
    }

    [Test]
    public void Mamba2ShapesFollowTheReferenceModule()
    {
        // D=8, I=16, N=4, H=4, G=2, K=4: conv channels I + 2GN = 32, in_proj rows 2I + 2GN + H = 52
        var layout = CheckpointLayout.For(LoadingFixtures.TinyMamba2(), TensorNaming.StateSpaces);
        var shapes = layout.Tensors.ToDictionary(t => t.Name, t => t.Shape);
        Assert.Multiple(() =>
        {
            Assert.That(shapes["backbone.embedding.weight"], Is.EqualTo(new long[] { 16, 8 }));
            Assert.That(shapes["lm_head.weight"], Is.EqualTo(new long[] { 16, 8 }));
            Assert.That(shapes["backbone.layers.0.mixer.in_proj.weight"], Is.EqualTo(new long[] { 52, 8 }));
            Assert.That(shapes["backbone.layers.0.mixer.conv1d.weight"], Is.EqualTo(new long[] { 32, 1, 4 }));
            Assert.That(shapes["backbone.layers.0.mixer.conv1d.bias"], Is.EqualTo(new long[] { 32 }));
            Assert.That(shapes["backbone.layers.0.mixer.dt_bias"], Is.EqualTo(new long[] { 4 }));
            Assert.That(shapes["backbone.layers.0.mixer.A_log"], Is.EqualTo(new long[] { 4 }));
            Assert.That(shapes["backbone.layers.0.mixer.D"], Is.EqualTo(new long[] { 4 }));
            Assert.That(shapes["backbone.layers.0.mixer.norm.weight"], Is.EqualTo(new long[] { 16 }));
            Assert.That(shapes["backbone.layers.0.mixer.out_proj.weight"], Is.EqualTo(new long[] { 8, 16 }));
            Assert.That(shapes, Does.Not.ContainKey("backbone.layers.0.mixer.x_proj.weight"));
            Assert.That(layout.Tensors.Single(t => t.Name == "lm_head.weight").Optional, Is.False, "untied");
        });
    }

    [Test]
    public void BiasesAppearOnlyWhenConfigured()
    {
        var config = LoadingFixtures.TinyMamba1(useBias: true) with { UseConvBias = false };
        var names = CheckpointLayout.For(config, TensorNaming.HuggingFace).Tensors.Select(t => t.Name).ToList();
        Assert.That(names, Does.Contain("backbone.layers.0.mixer.in_proj.bias").And.Contain("backbone.layers.0.mixer.out_proj.bias"));
        Assert.That(names, Does.Not.Contain("backbone.layers.0.mixer.conv1d.bias"));
    }

    [TestCaseSource(nameof(Cases))]
    public void ValidCheckpointOpensAndGivesTheSameTensorsInEitherNaming(MambaConfig config, TensorNaming naming)
    {
        using var dir = new TempDir();
        var path = dir.File("model.safetensors");
        LoadingFixtures.FullCheckpoint(config, naming, new Random(99), DType.BFloat16).Save(path);
        using var weights = MambaCheckpoint.Open(config, SafetensorsFile.Open(path));
        Assert.That(weights.Layout.Naming, Is.EqualTo(naming));

        // Same seed, same order: the values do not depend on the naming, so compare against a fresh HF-named copy.
        var other = dir.File("other.safetensors");
        LoadingFixtures.FullCheckpoint(config, TensorNaming.HuggingFace, new Random(99), DType.BFloat16).Save(other);
        using var reference = SafetensorsFile.Open(other);

        Assert.That(weights.Embedding.ToFloatArray(), Is.EqualTo(reference.Tensors["backbone.embeddings.weight"].ToFloatArray()));
        Assert.That(weights.FinalNorm.Name, Is.EqualTo("backbone.norm_f.weight"));
        Assert.That(weights.LmHead.Name, Is.EqualTo(config.TieWordEmbeddings ? weights.Embedding.Name : "lm_head.weight"));
        for (var layer = 0; layer < config.NumLayers; layer++)
        {
            Assert.That(weights.Get(layer, "in_proj.weight").ToFloatArray(),
                Is.EqualTo(reference.Tensors[$"backbone.layers.{layer}.mixer.in_proj.weight"].ToFloatArray()));
            Assert.That(weights.Get(layer, TensorKeys.InProjWeight).Name, Is.EqualTo($"backbone.layers.{layer}.mixer.in_proj.weight"));
            Assert.That(weights.Get(layer, "norm.weight").Name, Is.EqualTo($"backbone.layers.{layer}.norm.weight"));
            Assert.That(weights.Get(layer, "A_log").DType, Is.EqualTo(DType.BFloat16));
            Assert.That(weights.TryGet(layer, "in_proj.bias"), Is.Null);
        }
        if (config.Family == MambaFamily.Mamba2)
        {
            Assert.That(weights.Get(0, TensorKeys.MixerNorm).Shape, Is.EqualTo(new long[] { config.IntermediateSize }));
            Assert.Throws<KeyNotFoundException>(() => weights.Get(0, "x_proj.weight"));
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => weights.Get(config.NumLayers, "in_proj.weight"));
        Assert.Throws<ArgumentOutOfRangeException>(() => weights.Get(-1, "in_proj.weight"));
    }

    [Test]
    public void TiedHeadMayBeStoredAndIsIgnored()
    {
        using var dir = new TempDir();
        var config = LoadingFixtures.TinyMamba1(tie: true);
        var path = dir.File("m.safetensors");
        LoadingFixtures.FullCheckpoint(config, TensorNaming.StateSpaces, new Random(5), includeOptional: true).Save(path);
        using var weights = MambaCheckpoint.Open(config, SafetensorsFile.Open(path));
        Assert.That(weights.LmHead.Name, Is.EqualTo("backbone.embedding.weight"));
    }

    private static CheckpointFormatException Invalid(MambaConfig config, SafetensorsWriter writer)
    {
        using var dir = new TempDir();
        var path = dir.File("model.safetensors");
        writer.Save(path);
        var file = SafetensorsFile.Open(path);
        var e = Assert.Throws<CheckpointFormatException>(() => MambaCheckpoint.Open(config, file))!;
        Assert.That(e.Message, Does.Contain(path), "names the file");
        Assert.Throws<ObjectDisposedException>(() => _ = file.Tensors.Values.First().Bytes.Length, "closed on failure");
        return e;
    }

    /// <summary>A full checkpoint with one tensor replaced (null: removed) and optionally one added.</summary>
    private static SafetensorsWriter Mutated(MambaConfig config, string? replace, long[]? shape, DType dtype = DType.Float32, string? add = null)
    {
        var rng = new Random(11);
        var writer = new SafetensorsWriter();
        foreach (var t in CheckpointLayout.For(config, TensorNaming.HuggingFace).Tensors.Where(t => !t.Optional))
        {
            if (t.Name == replace)
            {
                if (shape is null)
                {
                    continue;
                }
                var count = shape.Aggregate(1L, (a, d) => a * d);
                if (dtype == DType.Int32)
                {
                    writer.Add(t.Name, DType.Int32, shape, new byte[count * 4]);
                }
                else
                {
                    writer.Add(t.Name, LoadingFixtures.RandomValues(rng, count), shape, dtype);
                }
                continue;
            }
            writer.Add(t.Name, LoadingFixtures.RandomValues(rng, t.Shape.Aggregate(1L, (a, d) => a * d)), t.Shape);
        }
        if (add is not null)
        {
            writer.Add(add, [1f, 2f], [2]);
        }
        return writer;
    }

    [Test]
    public void MissingTensor()
    {
        var e = Invalid(LoadingFixtures.TinyMamba1(), Mutated(LoadingFixtures.TinyMamba1(), "backbone.layers.1.mixer.dt_proj.bias", null));
        Assert.That(e.Problem, Does.Contain("tensor 'backbone.layers.1.mixer.dt_proj.bias' is missing (expected shape [16])"));
    }

    [Test]
    public void MissingUntiedHead()
    {
        var config = LoadingFixtures.TinyMamba2(tie: false);
        var e = Invalid(config, Mutated(config, "lm_head.weight", null));
        Assert.That(e.Problem, Does.Contain("'lm_head.weight' is missing"));
    }

    [Test]
    public void WrongShape()
    {
        var e = Invalid(LoadingFixtures.TinyMamba2(), Mutated(LoadingFixtures.TinyMamba2(), "backbone.layers.0.mixer.conv1d.weight", [32, 4]));
        Assert.That(e.Problem, Does.Contain("tensor 'backbone.layers.0.mixer.conv1d.weight' has shape [32, 4], expected [32, 1, 4]"));
    }

    [Test]
    public void WrongDtype()
    {
        var e = Invalid(LoadingFixtures.TinyMamba1(), Mutated(LoadingFixtures.TinyMamba1(), "backbone.layers.0.mixer.D", [16], DType.Int32));
        Assert.That(e.Problem, Does.Contain("tensor 'backbone.layers.0.mixer.D' has dtype Int32"));
    }

    [Test]
    public void UnexpectedTensor()
    {
        var e = Invalid(LoadingFixtures.TinyMamba1(), Mutated(LoadingFixtures.TinyMamba1(), null, null, add: "backbone.layers.2.norm.weight"));
        Assert.That(e.Problem, Does.Contain("unexpected tensor 'backbone.layers.2.norm.weight'"));
    }

    [Test]
    public void ConfigOfTheOtherFamilyReportsEveryMismatch()
    {
        var e = Invalid(LoadingFixtures.TinyMamba1(), Mutated(LoadingFixtures.TinyMamba2(), null, null));
        Assert.That(e.Problem, Does.Contain("problems:").And.Contain("x_proj.weight' is missing").And.Contain("unexpected tensor 'backbone.layers.0.mixer.dt_bias'"));
    }

    [Test]
    public void NoEmbeddingMeansNotAMambaCheckpoint()
    {
        var e = Invalid(LoadingFixtures.TinyMamba1(), new SafetensorsWriter().Add("model.embed_tokens.weight", [1f, 2f], [1, 2]));
        Assert.That(e.Problem, Does.Contain("no embedding tensor"));
    }

    [Test]
    public void BothEmbeddingNamesAreAmbiguous()
    {
        var w = Mutated(LoadingFixtures.TinyMamba1(), null, null).Add("backbone.embedding.weight", new float[16 * 8], [16, 8]);
        var e = Invalid(LoadingFixtures.TinyMamba1(), w);
        Assert.That(e.Problem, Does.Contain("both"));
    }
}
