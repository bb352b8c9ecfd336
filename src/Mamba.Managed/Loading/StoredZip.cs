using System.Buffers.Binary;
using System.IO.Compression;

namespace Mamba.Loading;

/// <summary>
/// The central directory of a zip archive (with zip64) read from a mapped file, so that stored (uncompressed)
/// entries can be used in place. Only what PyTorch archives need: no encryption, no multi-disk archives.
/// </summary>
internal sealed unsafe class StoredZip
{
    private readonly byte* _base;
    private readonly long _length;
    private readonly string _path;

    public sealed record Entry(string Name, int Method, long CompressedSize, long Size, long DataOffset);

    private StoredZip(string path, byte* data, long length)
    {
        _path = path;
        _base = data;
        _length = length;
    }

    public IReadOnlyDictionary<string, Entry> Entries { get; private set; } = new Dictionary<string, Entry>();

    private CheckpointFormatException Bad(string problem) => new(_path, "zip archive: " + problem);

    /// <summary>Throws unless [offset, offset + count) lies inside the file (entries may exceed 2 GiB).</summary>
    private void Check(long offset, long count)
    {
        if (offset < 0 || count < 0 || offset > _length - count)
        {
            throw Bad($"record at {offset} (+{count} bytes) runs past the end of the file ({_length} bytes)");
        }
    }

    private ReadOnlySpan<byte> At(long offset, long count)
    {
        Check(offset, count);
        return count <= int.MaxValue ? new ReadOnlySpan<byte>(_base + offset, (int)count) : throw Bad($"record at {offset} is too large ({count} bytes)");
    }

    public static StoredZip Read(string path, byte* data, long length)
    {
        var zip = new StoredZip(path, data, length);
        zip.Entries = zip.ReadDirectory();
        return zip;
    }

    public ReadOnlySpan<byte> StoredData(Entry entry) =>
        entry.Method == 0 ? At(entry.DataOffset, entry.Size) : throw Bad($"entry '{entry.Name}' is compressed; tensor data must be stored");

    public byte* StoredPointer(Entry entry)
    {
        Check(entry.DataOffset, entry.Size);
        return _base + entry.DataOffset;
    }

    public byte[] ReadAll(Entry entry)
    {
        if (entry.Method == 0)
        {
            return entry.Size <= int.MaxValue ? StoredData(entry).ToArray() : throw Bad($"entry '{entry.Name}' is too large to read ({entry.Size} bytes)");
        }
        if (entry.Method != 8)
        {
            throw Bad($"entry '{entry.Name}' uses compression method {entry.Method}");
        }
        Check(entry.DataOffset, entry.CompressedSize);
        if (entry.Size > int.MaxValue)
        {
            throw Bad($"entry '{entry.Name}' is too large to inflate ({entry.Size} bytes)");
        }
        using var input = new UnmanagedMemoryStream(_base + entry.DataOffset, entry.CompressedSize);
        using var inflate = new DeflateStream(input, CompressionMode.Decompress);
        using var output = new MemoryStream();
        try
        {
            inflate.CopyTo(output);
        }
        catch (InvalidDataException e)
        {
            throw Bad($"entry '{entry.Name}' does not inflate: {e.Message}");
        }
        return output.Length == entry.Size ? output.ToArray() : throw Bad($"entry '{entry.Name}' inflates to {output.Length} bytes, expected {entry.Size}");
    }

    private Dictionary<string, Entry> ReadDirectory()
    {
        // The end-of-central-directory record is in the last 64 KiB + 22 bytes.
        long eocd = -1;
        for (var p = _length - 22; p >= Math.Max(0, _length - 22 - 65535); p--)
        {
            if (BinaryPrimitives.ReadUInt32LittleEndian(At(p, 4)) == 0x06054b50)
            {
                eocd = p;
                break;
            }
        }
        if (eocd < 0)
        {
            throw Bad("no end-of-central-directory record (not a zip file, or truncated)");
        }
        var record = At(eocd, 22);
        long count = BinaryPrimitives.ReadUInt16LittleEndian(record[10..]);
        long directorySize = BinaryPrimitives.ReadUInt32LittleEndian(record[12..]);
        long directoryOffset = BinaryPrimitives.ReadUInt32LittleEndian(record[16..]);
        if (count == 0xFFFF || directorySize == 0xFFFFFFFF || directoryOffset == 0xFFFFFFFF)
        {
            var locator = At(eocd - 20, 20);
            if (BinaryPrimitives.ReadUInt32LittleEndian(locator) != 0x07064b50)
            {
                throw Bad("zip64 fields without a zip64 locator");
            }
            var eocd64 = At((long)BinaryPrimitives.ReadUInt64LittleEndian(locator[8..]), 56);
            if (BinaryPrimitives.ReadUInt32LittleEndian(eocd64) != 0x06064b50)
            {
                throw Bad("bad zip64 end-of-central-directory record");
            }
            count = (long)BinaryPrimitives.ReadUInt64LittleEndian(eocd64[32..]);
            directorySize = (long)BinaryPrimitives.ReadUInt64LittleEndian(eocd64[40..]);
            directoryOffset = (long)BinaryPrimitives.ReadUInt64LittleEndian(eocd64[48..]);
        }
        Check(directoryOffset, directorySize);

        var entries = new Dictionary<string, Entry>(StringComparer.Ordinal);
        var position = directoryOffset;
        for (long i = 0; i < count; i++)
        {
            var header = At(position, 46);
            if (BinaryPrimitives.ReadUInt32LittleEndian(header) != 0x02014b50)
            {
                throw Bad($"bad central directory entry {i}");
            }
            var flags = BinaryPrimitives.ReadUInt16LittleEndian(header[8..]);
            int method = BinaryPrimitives.ReadUInt16LittleEndian(header[10..]);
            long compressed = BinaryPrimitives.ReadUInt32LittleEndian(header[20..]);
            long size = BinaryPrimitives.ReadUInt32LittleEndian(header[24..]);
            int nameLength = BinaryPrimitives.ReadUInt16LittleEndian(header[28..]);
            int extraLength = BinaryPrimitives.ReadUInt16LittleEndian(header[30..]);
            int commentLength = BinaryPrimitives.ReadUInt16LittleEndian(header[32..]);
            long local = BinaryPrimitives.ReadUInt32LittleEndian(header[42..]);
            var name = System.Text.Encoding.UTF8.GetString(At(position + 46, nameLength));
            var extra = At(position + 46 + nameLength, extraLength);
            if ((flags & 1) != 0)
            {
                throw Bad($"entry '{name}' is encrypted");
            }
            // zip64 extra field: the 64-bit values of the fields that were set to all ones, in this order.
            for (var e = 0; e + 4 <= extra.Length;)
            {
                var id = BinaryPrimitives.ReadUInt16LittleEndian(extra[e..]);
                var length = BinaryPrimitives.ReadUInt16LittleEndian(extra[(e + 2)..]);
                if (id == 0x0001)
                {
                    var field = extra.Slice(e + 4, Math.Min((int)length, extra.Length - e - 4)).ToArray();
                    var k = 0;
                    long Next()
                    {
                        if (k + 8 > field.Length)
                        {
                            throw Bad($"short zip64 field in '{name}'");
                        }
                        k += 8;
                        return (long)BinaryPrimitives.ReadUInt64LittleEndian(field.AsSpan(k - 8));
                    }
                    if (size == 0xFFFFFFFF)
                    {
                        size = Next();
                    }
                    if (compressed == 0xFFFFFFFF)
                    {
                        compressed = Next();
                    }
                    if (local == 0xFFFFFFFF)
                    {
                        local = Next();
                    }
                }
                e += 4 + length;
            }
            var localHeader = At(local, 30);
            if (BinaryPrimitives.ReadUInt32LittleEndian(localHeader) != 0x04034b50)
            {
                throw Bad($"bad local header for '{name}'");
            }
            var dataOffset = local + 30 + BinaryPrimitives.ReadUInt16LittleEndian(localHeader[26..]) + BinaryPrimitives.ReadUInt16LittleEndian(localHeader[28..]);
            Check(dataOffset, compressed);
            if (!entries.TryAdd(name, new Entry(name, method, compressed, size, dataOffset)))
            {
                throw Bad($"entry '{name}' appears twice");
            }
            position += 46 + nameLength + extraLength + commentLength;
        }
        return entries;
    }
}
