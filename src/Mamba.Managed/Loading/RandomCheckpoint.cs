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
    /// A_log, D and dt_bias are float32, as published checkpoints store them). The values are drawn in blocks of
    /// <see cref="BlockElements"/>, each from its own generator seeded by (seed, tensor, block), on all cores: the
    /// same seed gives the same weights on any machine, and a 2.8b shape takes seconds on a many-core machine.</summary>
    public static RandomCheckpoint Create(MambaConfig config, DType dtype = DType.BFloat16, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (!CheckpointLayout.AllowedDTypes.Contains(dtype))
        {
            throw new ArgumentException($"weights cannot be stored as {dtype}", nameof(dtype));
        }
        var result = new RandomCheckpoint();
        var layout = CheckpointLayout.For(config, TensorNaming.HuggingFace);
        var tensors = layout.Tensors.Where(t => !t.Optional).ToArray();
        var plans = new TensorPlan[tensors.Length];
        var blocks = new List<(int Tensor, long Start)>();
        for (var i = 0; i < tensors.Length; i++)
        {
            var t = tensors[i];
            var count = checked((int)t.Shape.Aggregate(1L, (a, b) => a * b));
            var (kind, stored) = t.Key switch
            {
                TensorKeys.ALog => (ValueKind.ALog, DType.Float32),
                TensorKeys.D => (ValueKind.One, DType.Float32),
                TensorKeys.DtBias or TensorKeys.DtProjBias => (ValueKind.DtBias, DType.Float32),
                TensorKeys.Norm or TensorKeys.FinalNorm or TensorKeys.MixerNorm => (ValueKind.One, dtype),
                _ => (ValueKind.Uniform, dtype),
            };
            // Uniform with unit variance after the product: scale 1/sqrt(fan_in) (sqrt(3) for the uniform's variance).
            var scale = MathF.Sqrt(3f / t.Shape[^1]);
            plans[i] = new TensorPlan(kind, stored, scale, new byte[checked(count * stored.Size())], count);
            for (long start = 0; start < count; start += BlockElements)
            {
                blocks.Add((i, start));
            }
        }
        Parallel.For(0, blocks.Count, k =>
        {
            var (i, start) = blocks[k];
            var plan = plans[i];
            var n = (int)Math.Min(BlockElements, plan.Count - start);
            var rng = new SplitMix64(((ulong)(uint)seed << 40) ^ ((ulong)i << 24) ^ (ulong)(start / BlockElements));
            Span<float> values = stackalloc float[256];
            for (var done = 0; done < n; done += values.Length)
            {
                var part = values[..Math.Min(values.Length, n - done)];
                for (var j = 0; j < part.Length; j++)
                {
                    part[j] = plan.Next(ref rng);
                }
                var size = plan.Stored.Size();
                StoredFloats.Encode(part, plan.Stored, plan.Bytes.AsSpan(checked((int)(start + done) * size), part.Length * size));
            }
        });
        for (var i = 0; i < tensors.Length; i++)
        {
            result._tensors[tensors[i].Name] = new Entry(tensors[i].Name, plans[i].Stored, tensors[i].Shape, plans[i].Bytes);
        }
        return result;
    }

    /// <summary>Elements drawn from one generator (and one parallel work item).</summary>
    public const int BlockElements = 1 << 20;

    /// <inheritdoc />
    public void Dispose()
    {
    }

    private enum ValueKind
    {
        Uniform,
        One,
        ALog,
        DtBias,
    }

    private sealed record TensorPlan(ValueKind Kind, DType Stored, float Scale, byte[] Bytes, int Count)
    {
        public float Next(ref SplitMix64 rng)
        {
            switch (Kind)
            {
                case ValueKind.One:
                    return 1f;
                case ValueKind.ALog:
                    return MathF.Log(1f + 15f * rng.NextUnit());
                case ValueKind.DtBias:
                    // softplus^-1 of dt in [1e-3, 1e-1], log-uniform
                    var dt = MathF.Exp(MathF.Log(1e-3f) + rng.NextUnit() * (MathF.Log(1e-1f) - MathF.Log(1e-3f)));
                    return (float)(dt + Math.Log(-(Math.Exp(-dt) - 1.0)));
                default:
                    return Scale * (2f * rng.NextUnit() - 1f);
            }
        }
    }

    /// <summary>SplitMix64: a small, fast generator whose streams from nearby seeds are independent enough for
    /// weights (each output is a full 64-bit mix of the counter).</summary>
    private struct SplitMix64(ulong seed)
    {
        private ulong _state = seed;

        /// <summary>Uniform in [0, 1) with 24 random bits.</summary>
        public float NextUnit()
        {
            _state += 0x9E3779B97F4A7C15UL;
            var z = _state;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            z ^= z >> 31;
            return (z >> 40) * (1f / (1 << 24));
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
