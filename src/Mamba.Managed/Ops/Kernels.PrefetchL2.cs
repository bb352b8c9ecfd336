using Mamba.Native;
using Mamba.Native.Interop;
using Mamba.Runtime;
using Mamba.Tensors;

namespace Mamba.Ops;

public static unsafe partial class Kernels
{
    /// <summary>Asks the device to read the first <paramref name="maxBytes"/> bytes of a contiguous tensor (all of it by
    /// default) into its L2 cache while the work queued after this call runs (see mamba_prefetch_l2). A hint: results never
    /// change. It does nothing on a CPU context, and on CUDA when MAMBA_CUDA_L2_PREFETCH was "off" when the context was
    /// created (unset: libmamba's default mode, bulk).</summary>
    public static void PrefetchL2(MambaContext context, Tensor tensor, long maxBytes = long.MaxValue)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(tensor);
        ArgumentOutOfRangeException.ThrowIfNegative(maxBytes);
        if (!tensor.IsContiguous)
        {
            throw new ArgumentException("only a contiguous tensor can be prefetched", nameof(tensor));
        }
        if (tensor.Context.Device != context.Device)
        {
            throw new ArgumentException($"the tensor lives on {tensor.Context.Device}, the context runs on {context.Device}", nameof(tensor));
        }
        var dl = tensor.DL;
        var bytes = Math.Min(tensor.ElementCount * tensor.DType.Size(), maxBytes);
        var data = (byte*)dl->data + dl->byte_offset;
        MambaException.Check(NativeMethods.mamba_prefetch_l2(context.Handle.Pointer, data, (nuint)bytes));
        GC.KeepAlive(tensor);
    }
}
