using Mamba.Native;
using Mamba.Native.Interop;
using Mamba.Runtime;
using Mamba.Tensors;

namespace Mamba.Ops;

public static unsafe partial class Kernels
{
    /// <summary>y[i, :] = table[ids[i], :] for ids (count) int32/int64 and table (vocab, hidden) (see mamba_embedding).</summary>
    public static void Embedding(MambaContext context, Tensor ids, Tensor table, Tensor y)
    {
        ArgumentNullException.ThrowIfNull(context);
        var args = new mamba_embedding_args
        {
            ids = ids.DL,
            table = table.DL,
            y = y.DL,
        };
        MambaException.Check(NativeMethods.mamba_embedding(context.Handle.Pointer, &args));
        GC.KeepAlive(ids);
        GC.KeepAlive(table);
        GC.KeepAlive(y);
    }
}
