using BenchmarkDotNet.Attributes;
using Mamba.Models;

namespace Mamba.Benchmarks;

/// <summary>Whole-model prefill and decode of the shipped Mamba-2 model (models/mamba2-pystdlib) through
/// <see cref="InferenceSession"/>; the memory column shows that a decode step allocates nothing.</summary>
[MemoryDiagnoser]
public class ModelBenchmarks
{
    private MambaModel _model = null!;
    private InferenceSession _session = null!;
    private int[] _prompt = [];
    private int[] _next = [];

    [ParamsSource(typeof(DeviceParams), nameof(DeviceParams.Available))]
    public string Device { get; set; } = "cpu";

    [Params(1, 8)]
    public int Batch { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _model = MambaModel.Load(FindModel(), new MambaModelOptions { Device = Runtime.Device.Parse(Device) });
        _session = _model.CreateSession(Batch);
        _prompt = Enumerable.Range(0, 512).Select(i => 5 + i * 7 % 4000).ToArray();
        for (var b = 0; b < Batch; b++)
        {
            _session.Prefill(b, _prompt.AsSpan(0, 16));
        }
        _next = Enumerable.Range(0, Batch).Select(b => 10 + b).ToArray();
    }

    /// <summary>One token for every sequence of the batch (conv update + state update path), logits included.</summary>
    [Benchmark]
    public void DecodeStep()
    {
        _session.Decode(_next);
        _model.Context.Synchronize();
    }

    /// <summary>A 512-token prompt for one sequence (scan / SSD path), last-token logits included.</summary>
    [Benchmark]
    public void Prefill512()
    {
        _session.Reset(0);
        _session.Prefill(0, _prompt);
        _model.Context.Synchronize();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _session.Dispose();
        _model.Dispose();
    }

    private static string FindModel()
    {
        foreach (var start in new[] { AppContext.BaseDirectory, Directory.GetCurrentDirectory() })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, "models", "mamba2-pystdlib");
                if (File.Exists(Path.Combine(candidate, "config.json")))
                {
                    return candidate;
                }
            }
        }
        throw new FileNotFoundException("models/mamba2-pystdlib not found above " + AppContext.BaseDirectory);
    }
}
