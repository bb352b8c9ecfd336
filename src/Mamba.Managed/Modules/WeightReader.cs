using System.Runtime.InteropServices;
using Mamba.Loading;
using Mamba.Runtime;
using Mamba.Tensors;

namespace Mamba.Modules;

/// <summary>Finds checkpoint tensors under the names used by Hugging Face and by the original state-spaces
/// checkpoints, checks their shapes and uploads them to a device.</summary>
internal sealed class WeightReader(ICheckpoint checkpoint, MambaContext context, DType? weightDType)
{
    private static readonly string[] Prefixes = ["backbone.", "", "model."];

    public MambaContext Context { get; } = context;

    /// <summary>The stored tensor for a name relative to the backbone (or one of its aliases), or null.</summary>
    public ICheckpointTensor? Find(params string[] names)
    {
        foreach (var name in names)
        {
            foreach (var prefix in Prefixes)
            {
                if (checkpoint.Tensors.TryGetValue(prefix + name, out var t))
                {
                    return t;
                }
            }
        }
        return null;
    }

    public ICheckpointTensor Require(params string[] names) =>
        Find(names) ?? throw new InvalidDataException($"checkpoint has no tensor '{names[0]}'"
                                                      + (names.Length > 1 ? $" (nor {string.Join(", ", names.Skip(1).Select(n => $"'{n}'"))})" : ""));

    /// <summary>Uploads a matrix or norm weight, checking its shape (viewed as <paramref name="shape"/>, same element
    /// count) and converting to the weight dtype option.</summary>
    public Tensor Weight(long[] shape, params string[] names) => Upload(Require(names), shape, weightDType);

    /// <summary>An optional weight (null when the checkpoint lacks it).</summary>
    public Tensor? OptionalWeight(long[] shape, params string[] names)
    {
        var t = Find(names);
        return t is null ? null : Upload(t, shape, weightDType);
    }

    /// <summary>A float32 vector, transformed on the host (e.g. A = -exp(A_log)).</summary>
    public Tensor Float32(long[] shape, Func<float, float>? transform, params string[] names)
    {
        var t = Require(names);
        var values = ToFloats(t, shape);
        if (transform is not null)
        {
            for (var i = 0; i < values.Length; i++)
            {
                values[i] = transform(values[i]);
            }
        }
        return Tensor.FromHost<float>(Context, values, shape);
    }

    private Tensor Upload(ICheckpointTensor t, long[] shape, DType? target)
    {
        CheckShape(t, shape);
        var bytes = t.Bytes;
        return t.DType switch
        {
            DType.Float32 => Tensor.FromHost(Context, MemoryMarshal.Cast<byte, float>(bytes), shape, target ?? DType.Float32),
            DType.Float16 => Tensor.FromHost(Context, MemoryMarshal.Cast<byte, Half>(bytes), shape, target ?? DType.Float16),
            DType.BFloat16 => Tensor.FromHost(Context, MemoryMarshal.Cast<byte, ushort>(bytes), shape, target ?? DType.BFloat16),
            _ => throw new InvalidDataException($"tensor '{t.Name}' in {t.SourceFile} is {t.DType}; a floating-point weight is needed"),
        };
    }

    private static float[] ToFloats(ICheckpointTensor t, long[] shape)
    {
        CheckShape(t, shape);
        var bytes = t.Bytes;
        return t.DType switch
        {
            DType.Float32 => MemoryMarshal.Cast<byte, float>(bytes).ToArray(),
            DType.Float16 => MemoryMarshal.Cast<byte, Half>(bytes).ToArray().Select(h => (float)h).ToArray(),
            DType.BFloat16 => MemoryMarshal.Cast<byte, ushort>(bytes).ToArray().Select(b => BitConverter.Int32BitsToSingle(b << 16)).ToArray(),
            _ => throw new InvalidDataException($"tensor '{t.Name}' in {t.SourceFile} is {t.DType}; a floating-point weight is needed"),
        };
    }

    private static void CheckShape(ICheckpointTensor t, long[] shape)
    {
        // Stored shapes may carry unit axes the model does not use (conv1d weights are (dim, 1, width)).
        var stored = t.Shape.Where(s => s != 1).ToArray();
        var wanted = shape.Where(s => s != 1).ToArray();
        if (!stored.SequenceEqual(wanted))
        {
            throw new InvalidDataException(
                $"tensor '{t.Name}' in {t.SourceFile} has shape {Tensor.ShapeString(t.Shape.ToArray())}, expected {Tensor.ShapeString(shape)}");
        }
        long count = 1;
        foreach (var s in t.Shape)
        {
            count *= s;
        }
        if (t.Bytes.Length != count * t.DType.Size())
        {
            throw new InvalidDataException($"tensor '{t.Name}' in {t.SourceFile} holds {t.Bytes.Length} bytes; its shape needs {count * t.DType.Size()}");
        }
    }
}
