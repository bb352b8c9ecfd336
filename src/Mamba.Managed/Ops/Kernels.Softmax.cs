using Mamba.Native;
using Mamba.Native.Interop;
using Mamba.Runtime;
using Mamba.Tensors;

namespace Mamba.Ops;

public static unsafe partial class Kernels
{
    /// <summary>Softmax, or log-softmax when <paramref name="log"/>, over the last axis of x (rows, n) (see mamba_softmax).</summary>
    public static void Softmax(MambaContext context, Tensor x, Tensor y, bool log = false)
    {
        ArgumentNullException.ThrowIfNull(context);
        MambaException.Check(NativeMethods.mamba_softmax(context.Handle.Pointer, x.DL, y.DL, log ? 1 : 0));
        GC.KeepAlive(x);
        GC.KeepAlive(y);
    }
}
