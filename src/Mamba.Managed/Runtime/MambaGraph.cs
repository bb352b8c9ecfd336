using Mamba.Native;
using Mamba.Native.Interop;

namespace Mamba.Runtime;

/// <summary>
/// Calls recorded on a CUDA context and replayed with one launch (a CUDA graph). A replay runs the same kernels on
/// the same tensors with the same scalar arguments, reading what the tensors hold at replay time: inputs that change
/// must be written into the captured tensors before each <see cref="Launch"/>. Run the calls once directly before
/// capturing so that the context's workspace has its final size.
/// </summary>
public sealed unsafe class MambaGraph : IDisposable
{
    private readonly MambaContext _context;
    private readonly GraphHandle _handle;

    private MambaGraph(MambaContext context, GraphHandle handle)
    {
        _context = context;
        _handle = handle;
    }

    internal mamba_graph* Pointer => _handle.Pointer;

    /// <summary>Whether <paramref name="context"/> can capture graphs (CUDA contexts can).</summary>
    public static bool IsSupported(MambaContext context)
    {
        int supported;
        MambaException.Check(NativeMethods.mamba_graph_is_supported(context.Pointer, &supported));
        return supported != 0;
    }

    /// <summary>Records the native calls <paramref name="body"/> makes on <paramref name="context"/> (nothing runs).
    /// If the body throws, the capture is ended and the exception propagates; the context stays usable.</summary>
    public static MambaGraph Capture(MambaContext context, Action body)
    {
        ArgumentNullException.ThrowIfNull(body);
        MambaException.Check(NativeMethods.mamba_graph_capture_begin(context.Pointer));
        try
        {
            body();
        }
        catch
        {
            // A failing native call has ended the capture already; a managed failure has not.
            mamba_graph* partial = null;
            _ = NativeMethods.mamba_graph_capture_end(context.Pointer, &partial);
            NativeMethods.mamba_graph_free(partial);
            throw;
        }
        mamba_graph* graph = null;
        MambaException.Check(NativeMethods.mamba_graph_capture_end(context.Pointer, &graph));
        return new MambaGraph(context, GraphHandle.Adopt(context.Handle, graph));
    }

    /// <summary>Queues one replay on the context's stream and returns without waiting.</summary>
    public void Launch()
    {
        ObjectDisposedException.ThrowIf(_handle.IsClosed, this);
        MambaException.Check(NativeMethods.mamba_graph_launch(_context.Pointer, _handle.Pointer));
    }

    /// <summary>Waits for the context's stream, then releases the graph (and its hold on the context).</summary>
    public void Dispose() => _handle.Dispose();
}
