using Mamba.Loading;

namespace Mamba.Tests.Loading;

/// <summary>
/// Random corruption of valid files: every outcome must be a successful open or a
/// <see cref="CheckpointFormatException"/>, never another exception, a crash or a hang.
/// </summary>
[TestFixture]
public class CorruptionTests
{
    private static void OpenMutants(byte[] original, Func<string, IDisposable> open, int seed, int count)
    {
        using var dir = new TempDir();
        var rng = new Random(seed);
        var opened = 0;
        for (var i = 0; i < count; i++)
        {
            var bytes = (byte[])original.Clone();
            // Flip a few bytes, mostly near the start where headers and the pickle live, sometimes anywhere.
            var flips = rng.Next(1, 4);
            for (var f = 0; f < flips; f++)
            {
                var at = rng.Next(2) == 0 ? rng.Next(Math.Min(bytes.Length, 400)) : rng.Next(bytes.Length);
                bytes[at] = (byte)rng.Next(256);
            }
            if (rng.Next(8) == 0)
            {
                bytes = bytes[..rng.Next(bytes.Length)];
            }
            var path = dir.Write($"m{i}.bin", bytes);
            try
            {
                using var checkpoint = open(path);
                opened++;
            }
            catch (CheckpointFormatException)
            {
                // expected for most mutants
            }
            catch (Exception e)
            {
                Assert.Fail($"mutant {i} raised {e.GetType().Name}: {e.Message}");
            }
        }
        Assert.That(opened, Is.LessThan(count), "some mutants must be rejected, or the test proves nothing");
    }

    [Test]
    public void CorruptSafetensorsFilesAreRejectedCleanly()
    {
        var rng = new Random(5);
        var original = new SafetensorsWriter()
            .Metadata("format", "pt")
            .Add("backbone.embeddings.weight", LoadingFixtures.RandomValues(rng, 64), [16, 4], Mamba.Tensors.DType.BFloat16)
            .Add("backbone.norm_f.weight", LoadingFixtures.RandomValues(rng, 4), [4])
            .Add("x", LoadingFixtures.RandomValues(rng, 6), [2, 3], Mamba.Tensors.DType.Float16)
            .ToBytes();
        OpenMutants(original, SafetensorsFile.Open, seed: 17, count: 400);
    }

    [Test]
    public void CorruptTorchArchivesAreRejectedCleanly()
    {
        var original = File.ReadAllBytes(Path.Combine(TorchCheckpointTests.DataDir, "state_dict.bin"));
        OpenMutants(original, TorchCheckpoint.Open, seed: 23, count: 400);
    }
}

/// <summary>Random edits of valid configs: a config, or a typed config exception, never anything else.</summary>
[TestFixture]
public class ConfigCorruptionTests
{
    private const string StateSpacesMamba2 = """
        {"d_model": 64, "d_intermediate": 0, "n_layer": 2, "vocab_size": 100,
         "ssm_cfg": {"layer": "Mamba2", "d_state": 16, "headdim": 16, "ngroups": 2, "dt_limit": [0.0, Infinity]},
         "attn_layer_idx": [], "rms_norm": true, "residual_in_fp32": true, "pad_vocab_size_multiple": 8}
        """;

    [TestCase(0)]
    [TestCase(1)]
    public void MutatedConfigsFailWithTypedExceptions(int which)
    {
        var original = which == 0 ? LoadingFixtures.HfMamba1Config : StateSpacesMamba2;
        var rng = new Random(31 + which);
        const string alphabet = "0123456789-.eE\"{}[],: aNIfinity";
        var rejected = 0;
        for (var i = 0; i < 1500; i++)
        {
            var chars = original.ToCharArray();
            for (var f = rng.Next(1, 3); f > 0; f--)
            {
                chars[rng.Next(chars.Length)] = alphabet[rng.Next(alphabet.Length)];
            }
            try
            {
                var config = ConfigLoader.Parse(new string(chars), "config.json").Config;
                // Whatever parses must describe a usable model.
                Assert.That(config.HiddenSize, Is.Positive);
                Assert.That(config.IntermediateSize, Is.Positive);
                Assert.That(config.VocabSize, Is.Positive);
                Assert.That(CheckpointLayout.For(config, TensorNaming.HuggingFace).Tensors.SelectMany(t => t.Shape), Has.All.Positive);
            }
            catch (Exception e) when (e is ConfigFormatException or UnsupportedModelException)
            {
                rejected++;
            }
            catch (Exception e)
            {
                Assert.Fail($"mutant {i} raised {e.GetType().Name}: {e.Message}\n{new string(chars)}");
            }
        }
        Assert.That(rejected, Is.Positive);
    }
}
