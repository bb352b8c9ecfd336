using System.Runtime.InteropServices;
using Mamba.Loading;
using Mamba.Tensors;

namespace Mamba.Tests.Models;

/// <summary>A checkpoint held in managed arrays, for building models in tests.</summary>
internal sealed class InMemoryCheckpoint : ICheckpoint
{
    private readonly Dictionary<string, ICheckpointTensor> _tensors = [];

    public IReadOnlyDictionary<string, ICheckpointTensor> Tensors => _tensors;

    /// <summary>Stores float values as <paramref name="dtype"/>; returns the values as stored (rounded for 16-bit types).</summary>
    public float[] Add(string name, float[] values, long[] shape, DType dtype = DType.Float32)
    {
        byte[] bytes;
        float[] stored;
        switch (dtype)
        {
            case DType.Float32:
                bytes = MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
                stored = (float[])values.Clone();
                break;
            case DType.Float16:
                var halves = values.Select(v => (Half)v).ToArray();
                bytes = MemoryMarshal.AsBytes(halves.AsSpan()).ToArray();
                stored = halves.Select(h => (float)h).ToArray();
                break;
            case DType.BFloat16:
                var bf = values.Select(ToBf16).ToArray();
                bytes = MemoryMarshal.AsBytes(bf.AsSpan()).ToArray();
                stored = bf.Select(b => BitConverter.Int32BitsToSingle(b << 16)).ToArray();
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(dtype));
        }
        _tensors[name] = new Entry(name, dtype, shape, bytes);
        return stored;
    }

    public void Remove(string name) => _tensors.Remove(name);

    /// <summary>Stores an existing tensor under another name (e.g. to mimic another naming scheme).</summary>
    public void Rename(string from, string to)
    {
        var t = (Entry)_tensors[from];
        _tensors.Remove(from);
        _tensors[to] = new Entry(to, t.DType, [.. t.Shape], t.Bytes.ToArray());
    }

    public void Dispose()
    {
    }

    // Round to nearest even, as every bf16 conversion in the project does.
    private static ushort ToBf16(float v)
    {
        var bits = (uint)BitConverter.SingleToInt32Bits(v);
        bits += 0x7FFF + ((bits >> 16) & 1);
        return (ushort)(bits >> 16);
    }

    private sealed class Entry(string name, DType dtype, long[] shape, byte[] bytes) : ICheckpointTensor
    {
        public string Name => name;
        public DType DType => dtype;
        public IReadOnlyList<long> Shape => shape;
        public string SourceFile => "memory";
        public ReadOnlySpan<byte> Bytes => bytes;
    }
}
