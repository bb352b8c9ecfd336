using System.IO.MemoryMappedFiles;
using System.Text;
using System.Text.Json;
using Mamba.Tensors;

namespace Mamba.Loading;

/// <summary>
/// A memory-mapped safetensors file: an 8-byte little-endian header length, a JSON header
/// (<c>{"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}</c>, offsets relative
/// to the end of the header), then the raw tensor bytes. Opening validates the whole header; the tensors'
/// bytes are then read straight from the mapping without copies until the file is disposed.
/// </summary>
/// <remarks>
/// Rejected with <see cref="CheckpointFormatException"/>: a file shorter than 8 bytes, a header length past the
/// end of the file (or above 100 MB), a header that is not a JSON object, entries without dtype/shape/offsets or
/// with values of the wrong type, duplicate names, unmapped dtypes, negative dimensions, ranges past the end of
/// the file, ranges whose length differs from shape x element size, ranges not aligned to the element size, and
/// ranges that overlap. Gaps between ranges and bytes after the last one are allowed (they are never read).
/// </remarks>
public sealed unsafe class SafetensorsFile : ICheckpoint
{
    /// <summary>Largest header accepted; real headers are a few hundred KB at most.</summary>
    public const long MaxHeaderBytes = 100L * 1024 * 1024;

    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;
    private byte* _base;
    private readonly Dictionary<string, ICheckpointTensor> _tensors;

    private SafetensorsFile(string path, MemoryMappedFile map, MemoryMappedViewAccessor view, long dataStart,
        IReadOnlyDictionary<string, string> metadata, List<SafetensorsTensor> tensors)
    {
        FilePath = path;
        _map = map;
        _view = view;
        DataStart = dataStart;
        Metadata = metadata;
        byte* pointer = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
        _base = pointer + view.PointerOffset;
        _tensors = new Dictionary<string, ICheckpointTensor>(StringComparer.Ordinal);
        foreach (var t in tensors)
        {
            t.Owner = this;
            _tensors.Add(t.Name, t);
        }
    }

    /// <summary>The file.</summary>
    public string FilePath { get; }

    /// <summary>Absolute offset of the data buffer (8 + header length).</summary>
    public long DataStart { get; }

    /// <summary>The <c>__metadata__</c> string map (empty when absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <inheritdoc />
    public IReadOnlyDictionary<string, ICheckpointTensor> Tensors => _tensors;

    internal bool IsDisposed => _base == null;

    internal byte* Base => _base != null ? _base : throw new ObjectDisposedException(nameof(SafetensorsFile), $"{FilePath} is closed");

    /// <summary>Opens, validates and maps a safetensors file.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="CheckpointFormatException">The file is malformed (see the class remarks).</exception>
    public static SafetensorsFile Open(string path)
    {
        path = Path.GetFullPath(path);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"safetensors file not found: {path}", path);
        }
        if (!BitConverter.IsLittleEndian)
        {
            throw new PlatformNotSupportedException("safetensors data is little-endian; big-endian hosts are not supported");
        }
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        var fileLength = stream.Length;
        var (dataStart, metadata, tensors) = ReadHeader(path, stream, fileLength);
        stream.Dispose();

        var map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, mapName: null, capacity: 0, MemoryMappedFileAccess.Read);
        try
        {
            var view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            return new SafetensorsFile(path, map, view, dataStart, metadata, tensors);
        }
        catch
        {
            map.Dispose();
            throw;
        }
    }

    private static (long DataStart, IReadOnlyDictionary<string, string> Metadata, List<SafetensorsTensor> Tensors) ReadHeader(
        string path, Stream stream, long fileLength)
    {
        if (fileLength < 8)
        {
            throw new CheckpointFormatException(path, $"truncated: {fileLength} bytes, a safetensors file starts with an 8-byte header length");
        }
        Span<byte> lengthBytes = stackalloc byte[8];
        stream.ReadExactly(lengthBytes);
        var headerLength = BitConverter.ToUInt64(lengthBytes);
        if (headerLength > (ulong)(fileLength - 8))
        {
            throw new CheckpointFormatException(path, $"header length {headerLength} runs past the end of the file ({fileLength} bytes); the file is truncated or not safetensors");
        }
        if (headerLength > MaxHeaderBytes)
        {
            throw new CheckpointFormatException(path, $"header length {headerLength} exceeds the {MaxHeaderBytes}-byte limit");
        }
        if (headerLength < 2)
        {
            throw new CheckpointFormatException(path, $"header length {headerLength} is too short for a JSON object");
        }
        var header = new byte[headerLength];
        stream.ReadExactly(header);
        var dataStart = 8 + (long)headerLength;
        var dataLength = fileLength - dataStart;

        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(header, new JsonDocumentOptions { MaxDepth = 16 });
        }
        catch (JsonException e)
        {
            throw new CheckpointFormatException(path, $"header is not valid JSON: {e.Message}", e);
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw new CheckpointFormatException(path, $"header is a JSON {doc.RootElement.ValueKind}, expected an object");
            }
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            var tensors = new List<SafetensorsTensor>();
            var names = new HashSet<string>(StringComparer.Ordinal);
            foreach (var entry in doc.RootElement.EnumerateObject())
            {
                if (!names.Add(entry.Name))
                {
                    throw new CheckpointFormatException(path, $"header names '{entry.Name}' twice");
                }
                if (entry.Name == "__metadata__")
                {
                    ReadMetadata(path, entry.Value, metadata);
                    continue;
                }
                tensors.Add(ReadTensor(path, entry.Name, entry.Value, dataStart, dataLength));
            }
            CheckRanges(path, tensors);
            return (dataStart, metadata, tensors);
        }
    }

    private static void ReadMetadata(string path, JsonElement value, Dictionary<string, string> metadata)
    {
        if (value.ValueKind != JsonValueKind.Object)
        {
            throw new CheckpointFormatException(path, $"__metadata__ is a JSON {value.ValueKind}, expected an object of strings");
        }
        foreach (var item in value.EnumerateObject())
        {
            if (item.Value.ValueKind != JsonValueKind.String)
            {
                throw new CheckpointFormatException(path, $"__metadata__ entry '{item.Name}' is a JSON {item.Value.ValueKind}, expected a string");
            }
            metadata[item.Name] = item.Value.GetString()!;
        }
    }

    private static SafetensorsTensor ReadTensor(string path, string name, JsonElement value, long dataStart, long dataLength)
    {
        CheckpointFormatException Bad(string problem) => new(path, $"tensor '{name}': {problem}");

        if (value.ValueKind != JsonValueKind.Object)
        {
            throw Bad($"entry is a JSON {value.ValueKind}, expected an object");
        }
        if (!value.TryGetProperty("dtype", out var dtypeElement) || dtypeElement.ValueKind != JsonValueKind.String)
        {
            throw Bad("missing string field 'dtype'");
        }
        var dtypeName = dtypeElement.GetString()!;
        var dtype = SafetensorsDTypes.Parse(dtypeName)
            ?? throw Bad($"dtype '{dtypeName}' is not supported (supported: {SafetensorsDTypes.Supported})");

        if (!value.TryGetProperty("shape", out var shapeElement) || shapeElement.ValueKind != JsonValueKind.Array)
        {
            throw Bad("missing array field 'shape'");
        }
        var shape = new long[shapeElement.GetArrayLength()];
        long elements = 1;
        var i = 0;
        foreach (var dim in shapeElement.EnumerateArray())
        {
            if (dim.ValueKind != JsonValueKind.Number || !dim.TryGetInt64(out var size) || size < 0)
            {
                throw Bad($"shape[{i}] is {dim.GetRawText()}, expected a non-negative integer");
            }
            shape[i++] = size;
            try
            {
                elements = checked(elements * size);
            }
            catch (OverflowException)
            {
                throw Bad($"shape [{string.Join(", ", shapeElement.EnumerateArray().Select(d => d.GetRawText()))}] overflows");
            }
        }

        if (!value.TryGetProperty("data_offsets", out var offsetsElement) || offsetsElement.ValueKind != JsonValueKind.Array
            || offsetsElement.GetArrayLength() != 2)
        {
            throw Bad("missing field 'data_offsets' (an array [begin, end])");
        }
        var begin = ReadOffset(offsetsElement[0]) ?? throw Bad($"data_offsets[0] is {offsetsElement[0].GetRawText()}, expected a non-negative integer");
        var end = ReadOffset(offsetsElement[1]) ?? throw Bad($"data_offsets[1] is {offsetsElement[1].GetRawText()}, expected a non-negative integer");
        if (end < begin)
        {
            throw Bad($"data_offsets [{begin}, {end}] end before they begin");
        }
        if (end > dataLength)
        {
            throw Bad($"data_offsets [{begin}, {end}] run past the end of the data ({dataLength} bytes after the header; the file is truncated)");
        }
        long expectedBytes;
        try
        {
            expectedBytes = checked(elements * dtype.Size());
        }
        catch (OverflowException)
        {
            throw Bad("byte size overflows");
        }
        if (end - begin != expectedBytes)
        {
            throw Bad($"data_offsets [{begin}, {end}] hold {end - begin} bytes, but shape [{string.Join(", ", shape)}] of {dtypeName} needs {expectedBytes}");
        }
        if (begin % dtype.Size() != 0)
        {
            throw Bad($"data_offsets begin at {begin}, not aligned to the {dtype.Size()}-byte element size");
        }
        return new SafetensorsTensor(name, dtype, shape, path, dataStart + begin, end - begin, begin, end);
    }

    private static long? ReadOffset(JsonElement element) =>
        element.ValueKind == JsonValueKind.Number && element.TryGetInt64(out var v) && v >= 0 ? v : null;

    private static void CheckRanges(string path, List<SafetensorsTensor> tensors)
    {
        // Sorted by begin, each non-empty range must start at or after the end of every earlier one.
        var sorted = tensors.Where(t => t.RelativeEnd > t.RelativeBegin).OrderBy(t => t.RelativeBegin).ToList();
        for (var k = 1; k < sorted.Count; k++)
        {
            var previous = sorted[k - 1];
            var current = sorted[k];
            if (current.RelativeBegin < previous.RelativeEnd)
            {
                throw new CheckpointFormatException(path,
                    $"tensor '{current.Name}' bytes [{current.RelativeBegin}, {current.RelativeEnd}) overlap tensor '{previous.Name}' bytes [{previous.RelativeBegin}, {previous.RelativeEnd})");
            }
        }
    }

    /// <summary>Unmaps the file; tensors obtained from it can no longer be read.</summary>
    public void Dispose()
    {
        if (_base == null)
        {
            return;
        }
        _base = null;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _map.Dispose();
    }

    /// <inheritdoc />
    public override string ToString() => $"{FilePath} ({_tensors.Count} tensors)";
}

/// <summary>One tensor of a <see cref="SafetensorsFile"/>; its bytes point into the file's mapping.</summary>
public sealed unsafe class SafetensorsTensor : ICheckpointTensor
{
    internal SafetensorsTensor(string name, DType dtype, long[] shape, string sourceFile, long fileOffset, long byteLength,
        long relativeBegin, long relativeEnd)
    {
        Name = name;
        DType = dtype;
        Shape = shape;
        SourceFile = sourceFile;
        FileOffset = fileOffset;
        ByteLength = byteLength;
        RelativeBegin = relativeBegin;
        RelativeEnd = relativeEnd;
    }

    internal SafetensorsFile? Owner { get; set; }

    internal long RelativeBegin { get; }

    internal long RelativeEnd { get; }

    /// <inheritdoc />
    public string Name { get; }

    /// <inheritdoc />
    public DType DType { get; }

    /// <inheritdoc />
    public IReadOnlyList<long> Shape { get; }

    /// <inheritdoc />
    public string SourceFile { get; }

    /// <summary>Absolute offset of the first byte in the file.</summary>
    public long FileOffset { get; }

    /// <summary>Number of bytes (may exceed what a span can hold; see <see cref="Pointer"/>).</summary>
    public long ByteLength { get; }

    /// <summary>Address of the first byte in the mapping, valid while the file is open.</summary>
    public nint Pointer => (nint)(Owner!.Base + FileOffset);

    /// <inheritdoc />
    /// <exception cref="NotSupportedException">The tensor is 2 GiB or larger; use <see cref="Pointer"/> and <see cref="ByteLength"/>.</exception>
    public ReadOnlySpan<byte> Bytes
    {
        get
        {
            if (ByteLength > int.MaxValue)
            {
                throw new NotSupportedException($"{SourceFile}: tensor '{Name}' has {ByteLength} bytes, more than a span holds; read it through Pointer and ByteLength");
            }
            return new ReadOnlySpan<byte>(Owner!.Base + FileOffset, (int)ByteLength);
        }
    }

    /// <inheritdoc />
    public override string ToString() => $"{Name} {SafetensorsDTypes.Name(DType)}[{string.Join(", ", Shape)}]";
}
