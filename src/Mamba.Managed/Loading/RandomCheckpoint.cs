using System.Runtime.InteropServices;
using Mamba.Models;
using Mamba.Tensors;

namespace Mamba.Loading;

/// <summary>
/// A checkpoint of random weights in the exact layout a config asks for (Hugging Face names), held in memory:
/// for benchmarks and tests of model shapes whose real weights are not at hand. Values are in the ranges
/// trained models use (unit-variance projections, A = -exp(A_log) with A_log = log(1..16), small dt), so
/// activations and states stay finite over long runs.
/// </summary>
public sealed class RandomCheckpoint : ICheckpoint
{
    private readonly Dictionary<string, ICheckpointTensor> _tensors = new(StringComparer.Ordinal);

    private RandomCheckpoint()
    {
    }

    /// <inheritdoc />
    public IReadOnlyDictionary<string, ICheckpointTensor> Tensors => _tensors;

    /// <summary>Bytes of every stored tensor together.</summary>
    public long TotalBytes => _tensors.Values.Sum(t => (long)t.Bytes.Length);

    /// <summary>Random weights for <paramref name="config"/>, stored as <paramref name="dtype"/> (vectors such as
    /// A_log, D and dt_bias are float32, as published checkpoints store them).</summary>
    public static RandomCheckpoint Create(MambaConfig config, DType dtype = DType.BFloat16, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (!CheckpointLayout.AllowedDTypes.Contains(dtype))
        {
            throw new ArgumentException($"weights cannot be stored as {dtype}", nameof(dtype));
        }
        var result = new RandomCheckpoint();
        var layout = CheckpointLayout.For(config, TensorNaming.HuggingFace);
        var rng = new Random(seed);
        foreach (var t in layout.Tensors.Where(t => !t.Optional))
        {
            var count = checked((int)t.Shape.Aggregate(1L, (a, b) => a * b));
            var values = new float[count];
            var stored = dtype;
            switch (t.Key)
            {
                case TensorKeys.ALog:
                    Fill(values, rng, (r, _) => MathF.Log(1f + 15f * (float)r.NextDouble()));
                    stored = DType.Float32;
                    break;
                case TensorKeys.D:
                    Array.Fill(values, 1f);
                    stored = DType.Float32;
                    break;
                case TensorKeys.DtBias:
                case TensorKeys.DtProjBias:
                    // softplus^-1 of dt in [1e-3, 1e-1], log-uniform
                    Fill(values, rng, (r, _) =>
                    {
                        var dt = MathF.Exp(MathF.Log(1e-3f) + (float)r.NextDouble() * (MathF.Log(1e-1f) - MathF.Log(1e-3f)));
                        return (float)(dt + Math.Log(-(Math.Exp(-dt) - 1.0)));
                    });
                    stored = DType.Float32;
                    break;
                case TensorKeys.Norm or TensorKeys.FinalNorm or TensorKeys.MixerNorm:
                    Array.Fill(values, 1f);
                    break;
                default:
                    // Uniform with unit variance after the product: scale 1/sqrt(fan_in) (sqrt(3) for the uniform's variance).
                    var scale = MathF.Sqrt(3f / t.Shape[^1]);
                    Fill(values, rng, (r, _) => scale * (2f * (float)r.NextDouble() - 1f));
                    break;
            }
            result._tensors[t.Name] = new Entry(t.Name, stored, t.Shape, Encode(values, stored));
        }
        return result;
    }

    /// <inheritdoc />
    public void Dispose()
    {
    }

    private static void Fill(float[] values, Random rng, Func<Random, int, float> next)
    {
        for (var i = 0; i < values.Length; i++)
        {
            values[i] = next(rng, i);
        }
    }

    private static byte[] Encode(float[] values, DType dtype)
    {
        switch (dtype)
        {
            case DType.Float32:
                return MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
            case DType.Float16:
                var halves = new Half[values.Length];
                for (var i = 0; i < values.Length; i++) halves[i] = (Half)values[i];
                return MemoryMarshal.AsBytes(halves.AsSpan()).ToArray();
            default:
                var bf = new ushort[values.Length];
                for (var i = 0; i < values.Length; i++) bf[i] = BFloat16Bits.FromFloat(values[i]);
                return MemoryMarshal.AsBytes(bf.AsSpan()).ToArray();
        }
    }

    private sealed class Entry(string name, DType dtype, long[] shape, byte[] bytes) : ICheckpointTensor
    {
        public string Name => name;
        public DType DType => dtype;
        public IReadOnlyList<long> Shape => shape;
        public string SourceFile => "(random weights)";
        public ReadOnlySpan<byte> Bytes => bytes;
    }
}
