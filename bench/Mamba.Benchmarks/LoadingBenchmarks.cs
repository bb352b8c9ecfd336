using BenchmarkDotNet.Attributes;
using Mamba.Loading;
using Mamba.Models;
using Mamba.Tensors;

namespace Mamba.Benchmarks;

/// <summary>
/// Opening and validating a checkpoint of mamba-130m's shapes (bf16, ~260 MB, written once to a temporary
/// directory), and reading every byte of it through the mapping (cold pages after the first run are warm:
/// this measures the page-cache path, not the disk).
/// </summary>
[MemoryDiagnoser]
public class LoadingBenchmarks
{
    private string _dir = null!;
    private MambaConfig _config = null!;

    [GlobalSetup]
    public void Setup()
    {
        _config = new MambaConfig
        {
            Family = MambaFamily.Mamba1, HiddenSize = 768, NumLayers = 24, VocabSize = 50280, StateSize = 16,
            IntermediateSize = 1536, ConvKernel = 4, TimeStepRank = 48,
        };
        _dir = Path.Combine(Path.GetTempPath(), "mamba-bench-" + Guid.NewGuid().ToString("N"));
        var writer = new SafetensorsWriter();
        var rng = new Random(1);
        foreach (var t in CheckpointLayout.For(_config, TensorNaming.HuggingFace).Tensors.Where(t => !t.Optional))
        {
            var bytes = new byte[t.Shape.Aggregate(1L, (a, d) => a * d) * 2];
            rng.NextBytes(bytes);
            writer.Add(t.Name, DType.BFloat16, t.Shape, bytes);
        }
        writer.Save(Path.Combine(_dir, "model.safetensors"));
    }

    [Benchmark]
    public int OpenAndValidate()
    {
        using var weights = MambaCheckpoint.Open(_config, Checkpoint.Open(_dir));
        return weights.Checkpoint.Tensors.Count;
    }

    [Benchmark]
    public long OpenValidateAndReadEveryByte()
    {
        using var weights = MambaCheckpoint.Open(_config, Checkpoint.Open(_dir));
        long sum = 0;
        foreach (var tensor in weights.Checkpoint.Tensors.Values)
        {
            foreach (var chunk in System.Runtime.InteropServices.MemoryMarshal.Cast<byte, long>(tensor.Bytes))
            {
                sum += chunk;
            }
        }
        return sum;
    }

    [GlobalCleanup]
    public void Cleanup() => Directory.Delete(_dir, recursive: true);
}
