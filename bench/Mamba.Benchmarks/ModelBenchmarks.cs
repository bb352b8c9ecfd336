using BenchmarkDotNet.Attributes;
using Mamba.Loading;
using Mamba.Models;
using Mamba.Tensors;

namespace Mamba.Benchmarks;

/// <summary>The models the end-to-end benchmarks run: the shipped Mamba-2 model (models/mamba2-pystdlib), and random
/// bf16 weights in the shapes of the public 130m checkpoints (<see cref="ModelShapes"/>; no download).</summary>
public static class BenchModels
{
    public const string Shipped = "mamba2-pystdlib";

    public static MambaModel Load(string shape, string device)
    {
        var options = new MambaModelOptions { Device = Runtime.Device.Parse(device) };
        if (shape == Shipped)
        {
            return MambaModel.Load(FindShipped(), options);
        }
        var config = ModelShapes.Get(shape);
        using var checkpoint = RandomCheckpoint.Create(config, DType.BFloat16, seed: 1);
        return MambaModel.Create(config, checkpoint, options);
    }

    private static string FindShipped()
    {
        foreach (var start in new[] { AppContext.BaseDirectory, Directory.GetCurrentDirectory() })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, "models", Shipped);
                if (File.Exists(Path.Combine(candidate, "config.json")))
                {
                    return candidate;
                }
            }
        }
        throw new FileNotFoundException($"models/{Shipped} not found above " + AppContext.BaseDirectory);
    }
}

/// <summary>One decode step (a token for each of <see cref="Batch"/> sequences) through <see cref="InferenceSession"/>,
/// logits included, per model and batch size; the Tokens/s column is batch / step time, and the memory column shows
/// that a decode step allocates nothing.</summary>
[MemoryDiagnoser]
[Config(typeof(TokenThroughputConfig))]
public class DecodeBenchmarks
{
    private MambaModel _model = null!;
    private InferenceSession _session = null!;
    private int[] _next = [];

    [ParamsSource(typeof(DeviceParams), nameof(DeviceParams.Available))]
    public string Device { get; set; } = "cpu";

    [Params(BenchModels.Shipped, "mamba-130m", "mamba2-130m")]
    public string Model { get; set; } = BenchModels.Shipped;

    [Params(1, 8)]
    public int Batch { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _model = BenchModels.Load(Model, Device);
        _session = _model.CreateSession(Batch);
        var prompt = Enumerable.Range(0, 16).Select(i => 5 + i * 7 % 4000).ToArray();
        for (var b = 0; b < Batch; b++)
        {
            _session.Prefill(b, prompt);
        }
        _next = Enumerable.Range(0, Batch).Select(b => 10 + b).ToArray();
    }

    [Benchmark]
    public void DecodeStep()
    {
        _session.Decode(_next);
        _model.Context.Synchronize();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _session.Dispose();
        _model.Dispose();
    }
}

/// <summary>A prompt of <see cref="Tokens"/> tokens for each of <see cref="Batch"/> sequences, prefilled together (the
/// scan / SSD path), last-token logits included, per model; the Tokens/s column is batch x tokens / prefill time.</summary>
[MemoryDiagnoser]
[Config(typeof(TokenThroughputConfig))]
public class PrefillBenchmarks
{
    private MambaModel _model = null!;
    private InferenceSession _session = null!;
    private int[] _sequences = [];
    private ReadOnlyMemory<int>[] _prompts = [];

    [ParamsSource(typeof(DeviceParams), nameof(DeviceParams.Available))]
    public string Device { get; set; } = "cpu";

    [Params(BenchModels.Shipped, "mamba-130m", "mamba2-130m")]
    public string Model { get; set; } = BenchModels.Shipped;

    [Params(512)]
    public int Tokens { get; set; }

    [Params(1, 4)]
    public int Batch { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _model = BenchModels.Load(Model, Device);
        _session = _model.CreateSession(Batch);
        _sequences = Enumerable.Range(0, Batch).ToArray();
        _prompts = _sequences.Select(b => (ReadOnlyMemory<int>)Enumerable.Range(0, Tokens).Select(i => 5 + (i * 7 + b * 13) % 4000).ToArray()).ToArray();
    }

    [IterationSetup]
    public void EmptyStates() => _session.Reset();

    [Benchmark]
    public void Prefill()
    {
        _session.Prefill(_sequences, _prompts);
        _model.Context.Synchronize();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _session.Dispose();
        _model.Dispose();
    }
}
