using System.Text.Json;
using Mamba.Loading;

namespace Mamba.Tests.Loading;

/// <summary>Sharded checkpoints (model.safetensors.index.json), directory lookup and the refusal of pickles.</summary>
[TestFixture]
public class ShardedCheckpointTests
{
    private static (float[] A, float[] B, float[] C) WriteShards(TempDir dir, Dictionary<string, string>? weightMap = null)
    {
        var rng = new Random(21);
        var a = LoadingFixtures.RandomValues(rng, 6);
        var b = LoadingFixtures.RandomValues(rng, 4);
        var c = LoadingFixtures.RandomValues(rng, 3);
        new SafetensorsWriter().Add("a", a, [2, 3]).Add("b", b, [4]).Save(dir.File("model-00001-of-00002.safetensors"));
        new SafetensorsWriter().Add("c", c, [3]).Save(dir.File("model-00002-of-00002.safetensors"));
        weightMap ??= new Dictionary<string, string>
        {
            ["a"] = "model-00001-of-00002.safetensors",
            ["b"] = "model-00001-of-00002.safetensors",
            ["c"] = "model-00002-of-00002.safetensors",
        };
        dir.Write("model.safetensors.index.json", JsonSerializer.Serialize(new { metadata = new { total_size = 52 }, weight_map = weightMap }));
        return (a, b, c);
    }

    [Test]
    public void OpensEveryShardThroughTheIndex()
    {
        using var dir = new TempDir();
        var (a, b, c) = WriteShards(dir);
        using var checkpoint = ShardedCheckpoint.Open(dir.File("model.safetensors.index.json"));
        Assert.That(checkpoint.Shards, Has.Count.EqualTo(2));
        Assert.That(checkpoint.Tensors["a"].ToFloatArray(), Is.EqualTo(a));
        Assert.That(checkpoint.Tensors["b"].ToFloatArray(), Is.EqualTo(b));
        Assert.That(checkpoint.Tensors["c"].ToFloatArray(), Is.EqualTo(c));
        Assert.That(checkpoint.Tensors["c"].SourceFile, Is.EqualTo(dir.File("model-00002-of-00002.safetensors")));
        Assert.That(ShardedCheckpoint.ReadShardNames(dir.File("model.safetensors.index.json")),
            Is.EqualTo(new[] { "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors" }));
    }

    [Test]
    public void DirectoryPrefersSingleFileThenIndex()
    {
        using var dir = new TempDir();
        WriteShards(dir);
        using (var sharded = Checkpoint.Open(dir.Path))
        {
            Assert.That(sharded, Is.InstanceOf<ShardedCheckpoint>());
        }
        new SafetensorsWriter().Add("z", [1f], [1]).Save(dir.File("model.safetensors"));
        using var single = Checkpoint.Open(dir.Path);
        Assert.That(single.Tensors.Keys, Is.EqualTo(new[] { "z" }));
    }

    [Test]
    public void DirectoryWithOneOtherSafetensorsFile()
    {
        using var dir = new TempDir();
        new SafetensorsWriter().Add("z", [1f], [1]).Save(dir.File("weights.safetensors"));
        using var checkpoint = Checkpoint.Open(dir.Path);
        Assert.That(checkpoint.Tensors.Keys, Is.EqualTo(new[] { "z" }));
    }

    [Test]
    public void EmptyDirectoryIsNotFound()
    {
        using var dir = new TempDir();
        Assert.Throws<FileNotFoundException>(() => Checkpoint.Open(dir.Path));
        Assert.Throws<FileNotFoundException>(() => Checkpoint.Open(dir.File("missing")));
    }

    private static CheckpointFormatException Bad(TempDir dir)
    {
        var e = Assert.Throws<CheckpointFormatException>(() => ShardedCheckpoint.Open(dir.File("model.safetensors.index.json")).Dispose())!;
        Assert.That(e.Message, Does.Contain(dir.Path));
        return e;
    }

    [Test]
    public void TensorInTheWrongShard()
    {
        using var dir = new TempDir();
        WriteShards(dir, new() { ["a"] = "model-00001-of-00002.safetensors", ["b"] = "model-00002-of-00002.safetensors", ["c"] = "model-00002-of-00002.safetensors" });
        Assert.That(Bad(dir).Problem, Does.Contain("puts tensor 'b' in 'model-00002-of-00002.safetensors', which does not contain it"));
    }

    [Test]
    public void ShardTensorMissingFromTheIndex()
    {
        using var dir = new TempDir();
        WriteShards(dir, new() { ["a"] = "model-00001-of-00002.safetensors", ["c"] = "model-00002-of-00002.safetensors" });
        Assert.That(Bad(dir).Problem, Does.Contain("holds tensor 'b', which weight_map does not list"));
    }

    [Test]
    public void MissingShardFile()
    {
        using var dir = new TempDir();
        WriteShards(dir);
        File.Delete(dir.File("model-00002-of-00002.safetensors"));
        var e = Assert.Throws<FileNotFoundException>(() => ShardedCheckpoint.Open(dir.File("model.safetensors.index.json")))!;
        Assert.That(e.Message, Does.Contain("model-00002-of-00002.safetensors"));
    }

    [TestCase("../outside.safetensors")]
    [TestCase("/etc/passwd")]
    [TestCase("a/../../b.safetensors")]
    public void ShardPathsMayNotEscapeTheDirectory(string shard)
    {
        using var dir = new TempDir();
        WriteShards(dir, new() { ["a"] = shard });
        Assert.That(Bad(dir).Problem, Does.Contain("not a plain relative path"));
    }

    [TestCase("{", "not valid JSON")]
    [TestCase("{\"metadata\": {}}", "missing object field 'weight_map'")]
    [TestCase("{\"weight_map\": {}}", "weight_map is empty")]
    [TestCase("{\"weight_map\": {\"a\": 3}}", "expected a file name")]
    public void MalformedIndex(string json, string expected)
    {
        using var dir = new TempDir();
        dir.Write("model.safetensors.index.json", json);
        Assert.That(Bad(dir).Problem, Does.Contain(expected));
    }

    [Test]
    public void CorruptShardNamesTheShard()
    {
        using var dir = new TempDir();
        WriteShards(dir);
        dir.Write("model-00002-of-00002.safetensors", new byte[] { 1, 2, 3 });
        var e = Assert.Throws<CheckpointFormatException>(() => ShardedCheckpoint.Open(dir.File("model.safetensors.index.json")))!;
        Assert.That(e.FilePath, Is.EqualTo(dir.File("model-00002-of-00002.safetensors")));
    }

    [TestCase("pytorch_model.bin")]
    [TestCase("model.pt")]
    public void PickleCheckpointsAreRefusedWithAConversionRecipe(string name)
    {
        using var dir = new TempDir();
        var path = dir.Write(name, new byte[] { 0x80, 0x02 });
        foreach (var target in new[] { dir.Path, path })
        {
            var e = Assert.Throws<UnsupportedModelException>(() => Checkpoint.Open(target))!;
            Assert.That(e.Message, Does.Contain(name).And.Contain("safetensors").And.Contain("save_file").And.Contain("weights_only=True"));
        }
    }
}
