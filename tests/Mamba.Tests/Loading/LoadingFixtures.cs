using System.Text;
using Mamba.Loading;
using Mamba.Models;
using Mamba.Tensors;

namespace Mamba.Tests.Loading;

/// <summary>A temporary directory deleted on dispose.</summary>
internal sealed class TempDir : IDisposable
{
    public TempDir() => Directory.CreateDirectory(Path);

    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "mamba-tests-" + Guid.NewGuid().ToString("N"));

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public string Write(string name, string text)
    {
        var path = File(name);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(path)!);
        System.IO.File.WriteAllText(path, text);
        return path;
    }

    public string Write(string name, byte[] bytes)
    {
        var path = File(name);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(path)!);
        System.IO.File.WriteAllBytes(path, bytes);
        return path;
    }

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
            // best effort
        }
    }
}

/// <summary>Tiny random models and raw safetensors files, built in the test.</summary>
internal static class LoadingFixtures
{
    public static float[] RandomValues(Random rng, long count) =>
        Enumerable.Range(0, (int)count).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();

    /// <summary>A raw safetensors file from a literal header and a data buffer (for malformed cases).</summary>
    public static byte[] RawFile(string header, int dataBytes, ulong? declaredHeaderLength = null)
    {
        var json = Encoding.UTF8.GetBytes(header);
        var result = new byte[8 + json.Length + dataBytes];
        BitConverter.GetBytes(declaredHeaderLength ?? (ulong)json.Length).CopyTo(result, 0);
        json.CopyTo(result, 8);
        for (var i = 0; i < dataBytes; i++)
        {
            result[8 + json.Length + i] = (byte)(i * 37 + 11);
        }
        return result;
    }

    public static MambaConfig TinyMamba1(bool tie = true, bool useBias = false) => new()
    {
        Family = MambaFamily.Mamba1,
        HiddenSize = 8,
        NumLayers = 2,
        VocabSize = 16,
        StateSize = 4,
        IntermediateSize = 16,
        ConvKernel = 4,
        TimeStepRank = 2,
        TieWordEmbeddings = tie,
        UseBias = useBias,
    };

    public static MambaConfig TinyMamba2(bool tie = false) => new()
    {
        Family = MambaFamily.Mamba2,
        HiddenSize = 8,
        NumLayers = 2,
        VocabSize = 16,
        StateSize = 4,
        IntermediateSize = 16,
        ConvKernel = 4,
        NumHeads = 4,
        HeadDim = 4,
        NumGroups = 2,
        TieWordEmbeddings = tie,
    };

    /// <summary>A writer holding every tensor of the config's layout, random values, with the given dtype.</summary>
    public static SafetensorsWriter FullCheckpoint(MambaConfig config, TensorNaming naming, Random rng, DType dtype = DType.Float32,
        bool includeOptional = false)
    {
        var writer = new SafetensorsWriter().Metadata("format", "pt");
        foreach (var t in CheckpointLayout.For(config, naming).Tensors)
        {
            if (t.Optional && !includeOptional)
            {
                continue;
            }
            writer.Add(t.Name, RandomValues(rng, t.Shape.Aggregate(1L, (a, d) => a * d)), t.Shape, dtype);
        }
        return writer;
    }

    public const string HfMamba1Config = """
        {
          "_name_or_path": "tiny", "architectures": ["MambaForCausalLM"], "bos_token_id": 0, "conv_kernel": 4,
          "eos_token_id": 0, "expand": 2, "fused_add_norm": true, "hidden_act": "silu", "hidden_size": 8,
          "initializer_range": 0.1, "intermediate_size": 16, "layer_norm_epsilon": 1e-05, "model_type": "mamba",
          "n_layer": 2, "num_hidden_layers": 2, "pad_token_id": 0, "pad_vocab_size_multiple": 8,
          "rescale_prenorm_residual": false, "residual_in_fp32": true, "rms_norm": true, "state_size": 4,
          "time_step_floor": 0.0001, "time_step_init_scheme": "random", "time_step_max": 0.1, "time_step_min": 0.001,
          "time_step_rank": 2, "time_step_scale": 1.0, "torch_dtype": "float32", "transformers_version": "4.39.0.dev0",
          "use_bias": false, "use_cache": true, "use_conv_bias": true, "vocab_size": 16
        }
        """;
}
