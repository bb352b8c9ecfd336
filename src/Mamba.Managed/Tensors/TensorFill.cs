using Mamba.Native;
using Mamba.Native.Interop;

namespace Mamba.Tensors;

/// <summary>Byte-pattern fills of contiguous tensors on their device.</summary>
internal static unsafe class TensorFill
{
    /// <summary>Sets every byte of a contiguous tensor to <paramref name="value"/> (0: zeros; 0xFF: -1 for integers).</summary>
    public static void Bytes(Tensor tensor, byte value)
    {
        if (!tensor.IsContiguous)
        {
            throw new InvalidOperationException("only a contiguous tensor can be filled");
        }
        var dl = tensor.DL;
        var bytes = (nuint)(tensor.ElementCount * tensor.DType.Size());
        if (bytes == 0)
        {
            return;
        }
        MambaException.Check(NativeMethods.mamba_memset(tensor.Context.Pointer, (byte*)dl->data + dl->byte_offset, value, bytes));
        GC.KeepAlive(tensor);
    }
}
