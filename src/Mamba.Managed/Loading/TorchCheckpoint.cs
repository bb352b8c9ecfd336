using System.IO.MemoryMappedFiles;
using Mamba.Tensors;

namespace Mamba.Loading;

/// <summary>
/// A PyTorch checkpoint (<c>torch.save</c> zip format, e.g. <c>pytorch_model.bin</c>) read without running
/// Python's unpickler: <see cref="RestrictedUnpickler"/> accepts only a dict of tensors, and the tensor data is
/// used in place from the memory-mapped archive. The legacy (pre-1.6, non-zip) format is refused.
/// </summary>
public sealed unsafe class TorchCheckpoint : ICheckpoint
{
    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;
    private byte* _base;
    private readonly Dictionary<string, ICheckpointTensor> _tensors = new(StringComparer.Ordinal);

    private TorchCheckpoint(string path, MemoryMappedFile map, MemoryMappedViewAccessor view)
    {
        FilePath = path;
        _map = map;
        _view = view;
        byte* pointer = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
        _base = pointer + view.PointerOffset;
    }

    /// <summary>The file.</summary>
    public string FilePath { get; }

    /// <inheritdoc />
    public IReadOnlyDictionary<string, ICheckpointTensor> Tensors => _tensors;

    internal byte* Base => _base != null ? _base : throw new ObjectDisposedException(nameof(TorchCheckpoint), $"{FilePath} is closed");

    /// <summary>Opens a torch.save archive holding a state dict.</summary>
    /// <exception cref="CheckpointFormatException">Not a zip archive, a pickle that is not a plain dict of tensors, a disallowed global, bad storages.</exception>
    public static TorchCheckpoint Open(string path)
    {
        path = Path.GetFullPath(path);
        long length;
        using (var handle = File.OpenHandle(path))
        {
            length = RandomAccess.GetLength(handle); // of the target: hub snapshots are symbolic links
        }
        if (length < 22)
        {
            throw new CheckpointFormatException(path, $"truncated: {length} bytes");
        }
        var map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        TorchCheckpoint? checkpoint = null;
        try
        {
            checkpoint = new TorchCheckpoint(path, map, map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read));
            checkpoint.Load(length);
            return checkpoint;
        }
        catch
        {
            if (checkpoint is not null)
            {
                checkpoint.Dispose();
            }
            else
            {
                map.Dispose();
            }
            throw;
        }
    }

    private void Load(long length)
    {
        if (_base[0] != (byte)'P' || _base[1] != (byte)'K')
        {
            throw new CheckpointFormatException(FilePath,
                "not a zip archive: the legacy (PyTorch < 1.6) torch.save format is not supported; " + Checkpoint.ConversionHint);
        }
        var zip = StoredZip.Read(FilePath, _base, length);
        var pickle = zip.Entries.Values.FirstOrDefault(e => e.Name.EndsWith("/data.pkl", StringComparison.Ordinal) && e.Name.Count(c => c == '/') == 1)
            ?? throw new CheckpointFormatException(FilePath, "no <archive>/data.pkl entry: not a torch.save archive");
        var prefix = pickle.Name[..^"data.pkl".Length];
        if (zip.Entries.TryGetValue(prefix + "byteorder", out var order) && System.Text.Encoding.ASCII.GetString(zip.ReadAll(order)).Trim() != "little")
        {
            throw new CheckpointFormatException(FilePath, "big-endian archive");
        }

        var root = RestrictedUnpickler.Load(FilePath, zip.ReadAll(pickle));
        if (root is not RestrictedUnpickler.PickleDict dict)
        {
            throw new CheckpointFormatException(FilePath, $"the pickle holds a {root?.GetType().Name ?? "None"}, expected a dict of tensors (a state_dict); " + Checkpoint.ConversionHint);
        }
        foreach (var (key, value) in dict)
        {
            if (key is not string name)
            {
                throw new CheckpointFormatException(FilePath, $"state_dict key {key} is not a string");
            }
            if (value is not RestrictedUnpickler.TensorRef tensor)
            {
                throw new CheckpointFormatException(FilePath, $"state_dict entry '{name}' is a {value?.GetType().Name ?? "None"}, not a tensor");
            }
            if (!zip.Entries.TryGetValue($"{prefix}data/{tensor.Storage.Key}", out var storage))
            {
                throw new CheckpointFormatException(FilePath, $"tensor '{name}': storage '{tensor.Storage.Key}' is missing from the archive");
            }
            try
            {
                _tensors[name] = Tensor(name, tensor, zip, storage);
            }
            catch (OverflowException e)
            {
                throw new CheckpointFormatException(FilePath, $"tensor '{name}': shape [{string.Join(", ", tensor.Shape)}] overflows", e);
            }
        }
    }

    private TorchTensor Tensor(string name, RestrictedUnpickler.TensorRef t, StoredZip zip, StoredZip.Entry storage)
    {
        CheckpointFormatException Bad(string problem) => new(FilePath, $"tensor '{name}': {problem}");
        var size = t.Storage.DType.Size();
        if (storage.Method != 0)
        {
            throw Bad("storage is compressed");
        }
        if (storage.Size < t.Storage.Numel * size)
        {
            throw Bad($"storage '{t.Storage.Key}' has {storage.Size} bytes, its header says {t.Storage.Numel} elements of {size}");
        }
        long count = 1, expectedStride = 1;
        for (var d = t.Shape.Length - 1; d >= 0; d--)
        {
            if (t.Shape[d] < 0)
            {
                throw Bad($"negative dimension in [{string.Join(", ", t.Shape)}]");
            }
            if (t.Shape[d] != 1 && t.Stride[d] != expectedStride)
            {
                throw Bad($"is not contiguous (shape [{string.Join(", ", t.Shape)}], stride [{string.Join(", ", t.Stride)}]); save .contiguous() tensors");
            }
            expectedStride *= t.Shape[d];
            count = checked(count * t.Shape[d]);
        }
        if (t.Offset < 0 || t.Offset > t.Storage.Numel - count)
        {
            throw Bad($"elements [{t.Offset}, {t.Offset + count}) lie outside its storage of {t.Storage.Numel}");
        }
        var fileOffset = (long)(zip.StoredPointer(storage) - _base) + t.Offset * size;
        return new TorchTensor(this, name, t.Storage.DType, t.Shape, fileOffset, count * size);
    }

    /// <summary>Unmaps the file.</summary>
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

    private sealed class TorchTensor(TorchCheckpoint owner, string name, DType dtype, long[] shape, long fileOffset, long byteLength) : ICheckpointTensor
    {
        public string Name => name;

        public DType DType => dtype;

        public IReadOnlyList<long> Shape => shape;

        public string SourceFile => owner.FilePath;

        public ReadOnlySpan<byte> Bytes => byteLength <= int.MaxValue
            ? new ReadOnlySpan<byte>(owner.Base + fileOffset, (int)byteLength)
            : throw new NotSupportedException($"{owner.FilePath}: tensor '{name}' has {byteLength} bytes, more than a span holds");
    }
}
