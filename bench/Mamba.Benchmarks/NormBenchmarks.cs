using BenchmarkDotNet.Attributes;
using Mamba.Ops;
using Mamba.Runtime;
using Mamba.Tensors;

namespace Mamba.Benchmarks;

/// <summary>RMSNorm with fused residual through the managed API (including the binding overhead), synchronized.</summary>
[MemoryDiagnoser]
public class NormBenchmarks
{
    private MambaContext _ctx = null!;
    private Tensor _x = null!, _residual = null!, _w = null!, _y = null!;

    [ParamsSource(typeof(DeviceParams), nameof(DeviceParams.Available))]
    public string Device { get; set; } = "cpu";

    [Params(1, 2048)]
    public int Rows { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        const int hidden = 2560;
        _ctx = new MambaContext(Runtime.Device.Parse(Device));
        var rng = new Random(1);
        float[] Rand(int n) => Enumerable.Range(0, n).Select(_ => (float)rng.NextDouble()).ToArray();
        _x = Tensor.FromHost<float>(_ctx, Rand(Rows * hidden), [Rows, hidden], DType.BFloat16);
        _residual = Tensor.FromHost<float>(_ctx, Rand(Rows * hidden), [Rows, hidden]);
        _w = Tensor.FromHost<float>(_ctx, Rand(hidden), [hidden], DType.BFloat16);
        _y = Tensor.Empty(_ctx, DType.BFloat16, Rows, hidden);
    }

    [Benchmark]
    public void RmsNormResidual()
    {
        Kernels.RmsNorm(_ctx, _x, _w, _y, 1e-5f, _residual, _residual);
        _ctx.Synchronize();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _x.Dispose();
        _residual.Dispose();
        _w.Dispose();
        _y.Dispose();
        _ctx.Dispose();
    }
}
