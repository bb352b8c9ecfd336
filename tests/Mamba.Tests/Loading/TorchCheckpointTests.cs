using System.Text.Json;
using Mamba.Loading;
using Mamba.Tensors;

namespace Mamba.Tests.Loading;

/// <summary>
/// The restricted torch.save reader, on archives written by Python's own pickler and zipfile
/// (tools/fixtures/make_torch_fixture.py), including one that would run a command if unpickled by Python.
/// </summary>
[TestFixture]
public class TorchCheckpointTests
{
    public static string DataDir => Path.Combine(TestSupport.RepoRoot, "tests", "Mamba.Tests", "TestData", "torch");

    [Test]
    public void ReadsEveryTensorOfAStateDict()
    {
        using var checkpoint = TorchCheckpoint.Open(Path.Combine(DataDir, "state_dict.bin"));
        using var expected = JsonDocument.Parse(File.ReadAllText(Path.Combine(DataDir, "state_dict.expected.json")));
        var names = expected.RootElement.EnumerateObject().Select(p => p.Name).ToList();
        Assert.That(checkpoint.Tensors.Keys, Is.EquivalentTo(names));
        foreach (var entry in expected.RootElement.EnumerateObject())
        {
            var tensor = checkpoint.Tensors[entry.Name];
            Assert.That(tensor.Shape, Is.EqualTo(entry.Value.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64())), entry.Name);
            Assert.That(tensor.ToFloatArray().Select(v => (double)v),
                Is.EqualTo(entry.Value.GetProperty("values").EnumerateArray().Select(v => v.GetDouble())), entry.Name);
            Assert.That(tensor.SourceFile, Is.EqualTo(Path.Combine(DataDir, "state_dict.bin")));
        }
        Assert.That(checkpoint.Tensors["half"].DType, Is.EqualTo(DType.Float16));
        Assert.That(checkpoint.Tensors["bf16"].DType, Is.EqualTo(DType.BFloat16));
        Assert.That(checkpoint.Tensors["a.second"].DType, Is.EqualTo(DType.Float32));
    }

    [Test]
    public unsafe void TiedTensorsShareTheirBytes()
    {
        using var checkpoint = TorchCheckpoint.Open(Path.Combine(DataDir, "state_dict.bin"));
        fixed (byte* a = checkpoint.Tensors["backbone.embedding.weight"].Bytes)
        fixed (byte* b = checkpoint.Tensors["lm_head.weight"].Bytes)
        {
            Assert.That((nint)a, Is.EqualTo((nint)b), "one storage, mapped once");
        }
    }

    [Test]
    public void CodeInThePickleIsRefusedNotRun()
    {
        var path = Path.Combine(DataDir, "malicious.bin");
        var e = Assert.Throws<CheckpointFormatException>(() => TorchCheckpoint.Open(path))!;
        Assert.That(e.Message, Does.Contain("refusing global").And.Contain("system").And.Contain(path));
    }

    [Test]
    public void UnsupportedStorageTypeIsNamed()
    {
        var e = Assert.Throws<CheckpointFormatException>(() => TorchCheckpoint.Open(Path.Combine(DataDir, "float64.bin")))!;
        Assert.That(e.Message, Does.Contain("DoubleStorage"));
    }

    [Test]
    public void LegacyAndBrokenArchivesAreRejected()
    {
        using var dir = new TempDir();
        var legacy = dir.Write("legacy.bin", [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e, 0x80, 0x02, 0x4d, 0xe9, 0x03, 0x2e, 0x80, 0x02]);
        Assert.That(Assert.Throws<CheckpointFormatException>(() => TorchCheckpoint.Open(legacy))!.Message,
            Does.Contain("legacy").And.Contain("safetensors"));

        var archive = File.ReadAllBytes(Path.Combine(DataDir, "state_dict.bin"));
        var truncated = dir.Write("truncated.bin", archive[..(archive.Length / 2)]);
        Assert.That(Assert.Throws<CheckpointFormatException>(() => TorchCheckpoint.Open(truncated))!.Message, Does.Contain("zip"));

        // Corrupt the pickle's first opcode after PROTO into one that is not allowed.
        var corrupt = (byte[])archive.Clone();
        var at = IndexOf(corrupt, "ccollections"u8);
        corrupt[at] = (byte)'i'; // INST: builds arbitrary objects
        var corruptPath = dir.Write("corrupt.bin", corrupt);
        Assert.That(Assert.Throws<CheckpointFormatException>(() => TorchCheckpoint.Open(corruptPath))!.Message, Does.Contain("opcode 0x69"));
    }

    private static int IndexOf(byte[] haystack, ReadOnlySpan<byte> needle) => haystack.AsSpan().IndexOf(needle);

    [Test]
    public void StateSpacesModelWithPyTorchWeightsLoadsEndToEnd()
    {
        var dir = Path.Combine(DataDir, "state-spaces-mamba1");
        using var model = LoadedModel.Load(dir);
        Assert.That(model.ConfigInfo.Layout, Is.EqualTo(ConfigLayout.StateSpaces));
        Assert.That(model.Config.VocabSize, Is.EqualTo(16));
        Assert.That(model.Config.UnpaddedVocabSize, Is.EqualTo(10));
        Assert.That(model.Config.TimeStepRank, Is.EqualTo(1));
        Assert.That(model.Weights.Layout.Naming, Is.EqualTo(TensorNaming.StateSpaces));
        Assert.That(model.Weights.LmHead.Name, Is.EqualTo("backbone.embedding.weight"), "tied: the stored lm_head copy is ignored");
        using var expected = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "expected.json")));
        Assert.That(model.Weights.Get(1, "x_proj.weight").ToFloatArray().Select(v => (double)v),
            Is.EqualTo(expected.RootElement.GetProperty("backbone.layers.1.mixer.x_proj.weight").EnumerateArray().Select(v => v.GetDouble())));
        Assert.That(model.Files.TokenizerPath, Is.Null);
    }
}
