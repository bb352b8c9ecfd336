using System.Text;
using System.Text.Json;
using Mamba.Tensors;

namespace Mamba.Loading;

/// <summary>
/// Builds a safetensors file: add tensors (raw bytes, or float values converted to F32/F16/BF16), then
/// <see cref="Save"/>. Tensors are laid out in insertion order, each aligned to 8 bytes, after a header padded
/// with spaces to a multiple of 8 so every tensor starts 8-byte aligned in the file.
/// </summary>
public sealed class SafetensorsWriter
{
    private readonly List<(string Name, DType DType, long[] Shape, byte[] Bytes)> _tensors = [];
    private readonly Dictionary<string, string> _metadata = new(StringComparer.Ordinal);

    /// <summary>Adds a tensor from raw little-endian bytes.</summary>
    /// <exception cref="ArgumentException">Duplicate name, reserved name, or a byte count that does not match the shape.</exception>
    public SafetensorsWriter Add(string name, DType dtype, long[] shape, ReadOnlySpan<byte> bytes)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (name == "__metadata__")
        {
            throw new ArgumentException("'__metadata__' is reserved", nameof(name));
        }
        if (_tensors.Any(t => t.Name == name))
        {
            throw new ArgumentException($"tensor '{name}' was already added", nameof(name));
        }
        if (shape.Any(d => d < 0))
        {
            throw new ArgumentException($"tensor '{name}': negative dimension in [{string.Join(", ", shape)}]", nameof(shape));
        }
        var expected = shape.Aggregate(1L, (a, d) => checked(a * d)) * dtype.Size();
        if (bytes.Length != expected)
        {
            throw new ArgumentException($"tensor '{name}': {bytes.Length} bytes given, shape [{string.Join(", ", shape)}] of {dtype} needs {expected}", nameof(bytes));
        }
        _ = SafetensorsDTypes.Name(dtype);
        _tensors.Add((name, dtype, (long[])shape.Clone(), bytes.ToArray()));
        return this;
    }

    /// <summary>Adds a tensor of float values stored as <paramref name="dtype"/> (F32, F16 or BF16, rounded to nearest even).</summary>
    public SafetensorsWriter Add(string name, ReadOnlySpan<float> values, long[] shape, DType dtype = DType.Float32)
    {
        if (dtype is not (DType.Float32 or DType.Float16 or DType.BFloat16))
        {
            throw new ArgumentException($"float values cannot be stored as {dtype}", nameof(dtype));
        }
        var bytes = new byte[checked(values.Length * dtype.Size())];
        StoredFloats.Encode(values, dtype, bytes);
        return Add(name, dtype, shape, bytes);
    }

    /// <summary>Adds a <c>__metadata__</c> entry (e.g. <c>format</c> = <c>pt</c>).</summary>
    public SafetensorsWriter Metadata(string key, string value)
    {
        _metadata[key] = value;
        return this;
    }

    /// <summary>The header and data, exactly as <see cref="Save"/> writes them.</summary>
    public byte[] ToBytes()
    {
        using var stream = new MemoryStream();
        WriteTo(stream);
        return stream.ToArray();
    }

    /// <summary>Writes the file (through a temporary file renamed into place, so readers never see half a file).</summary>
    public void Save(string path)
    {
        var directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
        Directory.CreateDirectory(directory);
        var temporary = path + ".tmp";
        using (var stream = new FileStream(temporary, FileMode.Create, FileAccess.Write))
        {
            WriteTo(stream);
        }
        File.Move(temporary, path, overwrite: true);
    }

    private void WriteTo(Stream stream)
    {
        var offsets = new List<(long Begin, long End)>();
        long position = 0;
        foreach (var t in _tensors)
        {
            offsets.Add((position, position + t.Bytes.Length));
            position = AlignUp(position + t.Bytes.Length);
        }

        var json = new MemoryStream();
        using (var writer = new Utf8JsonWriter(json))
        {
            writer.WriteStartObject();
            if (_metadata.Count > 0)
            {
                writer.WriteStartObject("__metadata__");
                foreach (var (key, value) in _metadata)
                {
                    writer.WriteString(key, value);
                }
                writer.WriteEndObject();
            }
            for (var i = 0; i < _tensors.Count; i++)
            {
                var t = _tensors[i];
                writer.WriteStartObject(t.Name);
                writer.WriteString("dtype", SafetensorsDTypes.Name(t.DType));
                writer.WriteStartArray("shape");
                foreach (var d in t.Shape)
                {
                    writer.WriteNumberValue(d);
                }
                writer.WriteEndArray();
                writer.WriteStartArray("data_offsets");
                writer.WriteNumberValue(offsets[i].Begin);
                writer.WriteNumberValue(offsets[i].End);
                writer.WriteEndArray();
                writer.WriteEndObject();
            }
            writer.WriteEndObject();
        }
        var header = json.ToArray();
        var paddedLength = AlignUp(header.Length);
        stream.Write(BitConverter.GetBytes((ulong)paddedLength));
        stream.Write(header);
        stream.Write(Encoding.ASCII.GetBytes(new string(' ', (int)(paddedLength - header.Length))));
        long written = 0;
        for (var i = 0; i < _tensors.Count; i++)
        {
            stream.Write(new byte[offsets[i].Begin - written]);
            stream.Write(_tensors[i].Bytes);
            written = offsets[i].End;
        }
    }

    private static long AlignUp(long n) => (n + 7) & ~7L;
}
