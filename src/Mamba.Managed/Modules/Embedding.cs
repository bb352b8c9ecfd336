using Mamba.Ops;
using Mamba.Runtime;
using Mamba.Tensors;

namespace Mamba.Modules;

/// <summary>Token embedding table (vocab, hidden).</summary>
public sealed class Embedding(Tensor table) : IDisposable
{
    /// <summary>(vocab, hidden).</summary>
    public Tensor Table { get; } = table;

    /// <summary>y (count, hidden) = rows of the table for ids (count).</summary>
    public void Forward(MambaContext context, Tensor ids, Tensor y) => Kernels.Embedding(context, ids, Table, y);

    /// <inheritdoc />
    public void Dispose() => Table.Dispose();
}
