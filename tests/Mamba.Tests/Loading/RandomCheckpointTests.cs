using Mamba.Loading;
using Mamba.Models;
using Mamba.Tensors;

namespace Mamba.Tests.Loading;

[TestFixture]
public class RandomCheckpointTests
{
    // Parameter counts of the public checkpoints, from their names (tied embeddings, vocab padded to 50280).
    [TestCase("mamba-130m", 130e6)]
    [TestCase("mamba-370m", 370e6)]
    [TestCase("mamba-790m", 790e6)]
    [TestCase("mamba-1.4b", 1.4e9)]
    [TestCase("mamba-2.8b", 2.8e9)]
    [TestCase("mamba2-130m", 130e6)]
    [TestCase("mamba2-370m", 370e6)]
    [TestCase("mamba2-780m", 780e6)]
    [TestCase("mamba2-1.3b", 1.3e9)]
    [TestCase("mamba2-2.7b", 2.7e9)]
    public void ShapesHaveTheNamedParameterCount(string name, double nominal)
    {
        var config = ModelShapes.Get(name);
        var layout = CheckpointLayout.For(config, TensorNaming.HuggingFace);
        var parameters = layout.Tensors.Where(t => !t.Optional).Sum(t => t.Shape.Aggregate(1.0, (a, b) => a * b));
        Assert.That(parameters / nominal, Is.InRange(0.9, 1.1), $"{name}: {parameters:E3} parameters");
    }

    [Test]
    public void UnknownShapeListsTheKnownOnes()
    {
        var e = Assert.Throws<ArgumentException>(() => ModelShapes.Get("mamba-3b"));
        Assert.That(e!.Message, Does.Contain("mamba2-2.7b"));
    }

    [TestCase(DType.Float32)]
    [TestCase(DType.BFloat16)]
    public void RandomWeightsMakeAValidModelWithFiniteLogits(DType dtype)
    {
        var config = ModelShapes.Get("mamba2-130m") with { NumLayers = 2 };
        using var checkpoint = RandomCheckpoint.Create(config, dtype, seed: 5);
        var layout = CheckpointLayout.For(config, TensorNaming.HuggingFace);
        Assert.That(checkpoint.Tensors.Keys, Is.EquivalentTo(layout.Tensors.Where(t => !t.Optional).Select(t => t.Name)));
        Assert.That(checkpoint.Tensors[layout.NameOf(TensorKeys.InProjWeight, 0)].DType, Is.EqualTo(dtype));
        Assert.That(checkpoint.Tensors[layout.NameOf(TensorKeys.ALog, 0)].DType, Is.EqualTo(DType.Float32));

        using var model = MambaModel.Create(config, checkpoint, new MambaModelOptions { Device = Mamba.Runtime.Device.Cpu });
        using var session = model.CreateSession(1);
        session.Prefill(0, [5, 17, 300, 4000, 12]);
        for (var i = 0; i < 4; i++)
        {
            session.Decode([42 + i]);
        }
        var logits = new float[config.VocabSize];
        session.CopyLogits(0, logits);
        Assert.That(logits.All(float.IsFinite), Is.True);
        Assert.That(logits.Max() - logits.Min(), Is.GreaterThan(1f), "random weights should give a spread of logits");
    }

    [Test]
    public void ProjectionsHaveUnitVarianceProductsAndIndependentBlocks()
    {
        // in_proj of mamba-130m: 3072 x 768 = 2.25 blocks of RandomCheckpoint.BlockElements, bfloat16.
        var config = ModelShapes.Get("mamba-130m") with { NumLayers = 1, VocabSize = 64 };
        using var checkpoint = RandomCheckpoint.Create(config, DType.BFloat16, seed: 3);
        var tensor = checkpoint.Tensors["backbone.layers.0.mixer.in_proj.weight"];
        var values = tensor.ToFloatArray();
        Assert.That(values, Has.Length.EqualTo(3072 * 768));
        var mean = values.Average(v => (double)v);
        var variance = values.Average(v => (double)v * v) - mean * mean;
        // uniform in +-sqrt(3 / fan_in): variance 1 / fan_in, every value inside the bound
        Assert.That(variance * 768, Is.EqualTo(1.0).Within(0.01));
        Assert.That(Math.Abs(mean) * Math.Sqrt(768), Is.LessThan(0.01));
        Assert.That(values.Max(Math.Abs), Is.LessThanOrEqualTo(MathF.Sqrt(3f / 768) * 1.004f));
        // the blocks come from different streams: no block repeats the first one's values
        var block = RandomCheckpoint.BlockElements;
        var first = values.AsSpan(0, 1024);
        Assert.That(values.AsSpan(block, 1024).SequenceEqual(first), Is.False);
        Assert.That(values.AsSpan(2 * block, 1024).SequenceEqual(first), Is.False);
    }

    [Test]
    public void SameSeedSameWeightsOtherSeedOtherWeights()
    {
        var config = ModelShapes.Get("mamba-130m") with { NumLayers = 1, VocabSize = 64 };
        using var a = RandomCheckpoint.Create(config, DType.Float32, seed: 1);
        using var b = RandomCheckpoint.Create(config, DType.Float32, seed: 1);
        using var c = RandomCheckpoint.Create(config, DType.Float32, seed: 2);
        var name = "backbone.layers.0.mixer.in_proj.weight";
        Assert.That(a.Tensors[name].Bytes.SequenceEqual(b.Tensors[name].Bytes), Is.True);
        Assert.That(a.Tensors[name].Bytes.SequenceEqual(c.Tensors[name].Bytes), Is.False);
    }
}
