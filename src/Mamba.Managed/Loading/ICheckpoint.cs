using Mamba.Tensors;

namespace Mamba.Loading;

/// <summary>One stored tensor of a checkpoint: its name, dtype, shape and raw little-endian bytes.</summary>
public interface ICheckpointTensor
{
    /// <summary>Name as stored (e.g. "backbone.layers.0.mixer.in_proj.weight").</summary>
    string Name { get; }

    /// <summary>Stored element type.</summary>
    DType DType { get; }

    /// <summary>Stored shape.</summary>
    IReadOnlyList<long> Shape { get; }

    /// <summary>The file the tensor comes from (for error messages).</summary>
    string SourceFile { get; }

    /// <summary>The bytes, valid while the checkpoint is open (memory-mapped; nothing is copied).</summary>
    unsafe ReadOnlySpan<byte> Bytes { get; }
}

/// <summary>An open checkpoint: every tensor by name. Disposing it unmaps the files.</summary>
public interface ICheckpoint : IDisposable
{
    /// <summary>All tensors by name.</summary>
    IReadOnlyDictionary<string, ICheckpointTensor> Tensors { get; }
}
