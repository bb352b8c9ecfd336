using System.Runtime.InteropServices;
using Mamba.Native.Interop;

namespace Mamba.Native;

/// <summary>Owns a <c>mamba_context</c>; released with <c>mamba_context_free</c>.</summary>
public sealed unsafe class ContextHandle : SafeHandle
{
    private ContextHandle() : base(IntPtr.Zero, ownsHandle: true) { }

    /// <inheritdoc />
    public override bool IsInvalid => handle == IntPtr.Zero;

    /// <summary>The raw pointer for a native call; valid while this handle is alive and not disposed.</summary>
    public mamba_context* Pointer => (mamba_context*)handle;

    /// <summary>Creates a context on a device.</summary>
    public static ContextHandle Create(mamba_device_type deviceType, int deviceId, int numThreads)
    {
        var p = NativeMethods.mamba_context_default_params();
        p.device_type = deviceType;
        p.device_id = deviceId;
        p.num_threads = numThreads;
        mamba_context* raw;
        MambaException.Check(NativeMethods.mamba_context_create(&p, &raw));
        var h = new ContextHandle();
        h.SetHandle((IntPtr)raw);
        return h;
    }

    /// <inheritdoc />
    protected override bool ReleaseHandle()
    {
        NativeMethods.mamba_context_free((mamba_context*)handle);
        return true;
    }
}

/// <summary>Owns a <c>mamba_event</c>; keeps its context alive until released.</summary>
public sealed unsafe class EventHandle : SafeHandle
{
    private ContextHandle? _context;

    private EventHandle() : base(IntPtr.Zero, ownsHandle: true) { }

    /// <inheritdoc />
    public override bool IsInvalid => handle == IntPtr.Zero;

    /// <summary>The raw pointer for a native call.</summary>
    public mamba_event* Pointer => (mamba_event*)handle;

    /// <summary>Creates an event on a context's stream.</summary>
    public static EventHandle Create(ContextHandle context)
    {
        var h = new EventHandle();
        var added = false;
        context.DangerousAddRef(ref added);
        mamba_event* raw;
        var status = NativeMethods.mamba_event_create(context.Pointer, &raw);
        if (status != mamba_status.MAMBA_STATUS_OK)
        {
            context.DangerousRelease();
            MambaException.Check(status);
        }
        h._context = context;
        h.SetHandle((IntPtr)raw);
        return h;
    }

    /// <inheritdoc />
    protected override bool ReleaseHandle()
    {
        NativeMethods.mamba_event_free((mamba_event*)handle);
        _context?.DangerousRelease();
        return true;
    }
}

/// <summary>Owns device memory from <c>mamba_alloc</c> (or host memory from <c>mamba_alloc_host</c>); keeps its context alive.</summary>
public sealed unsafe class DeviceMemoryHandle : SafeHandle
{
    private ContextHandle? _context;
    private bool _host;

    private DeviceMemoryHandle() : base(IntPtr.Zero, ownsHandle: true) { }

    /// <inheritdoc />
    public override bool IsInvalid => handle == IntPtr.Zero;

    /// <summary>Size of the allocation in bytes.</summary>
    public nuint Bytes { get; private set; }

    /// <summary>The raw pointer (device address on CUDA).</summary>
    public void* Pointer => (void*)handle;

    /// <summary>Allocates <paramref name="bytes"/> on the context's device, or page-locked host memory when <paramref name="host"/>.</summary>
    public static DeviceMemoryHandle Allocate(ContextHandle context, nuint bytes, bool host = false)
    {
        var h = new DeviceMemoryHandle();
        var added = false;
        context.DangerousAddRef(ref added);
        void* raw;
        var status = host ? NativeMethods.mamba_alloc_host(context.Pointer, bytes, &raw) : NativeMethods.mamba_alloc(context.Pointer, bytes, &raw);
        if (status != mamba_status.MAMBA_STATUS_OK)
        {
            context.DangerousRelease();
            MambaException.Check(status);
        }
        h._context = context;
        h._host = host;
        h.Bytes = bytes;
        h.SetHandle((IntPtr)raw);
        return h;
    }

    /// <inheritdoc />
    protected override bool ReleaseHandle()
    {
        var ctx = _context!.Pointer;
        var status = _host ? NativeMethods.mamba_free_host(ctx, (void*)handle) : NativeMethods.mamba_free(ctx, (void*)handle);
        _context.DangerousRelease();
        return status == mamba_status.MAMBA_STATUS_OK;
    }
}

/// <summary>Owns a <c>mamba_graph</c> (a captured CUDA graph); keeps its context alive until released, as a graph
/// must be freed before the context it was captured on.</summary>
public sealed unsafe class GraphHandle : SafeHandle
{
    private ContextHandle? _context;

    private GraphHandle() : base(IntPtr.Zero, ownsHandle: true) { }

    /// <inheritdoc />
    public override bool IsInvalid => handle == IntPtr.Zero;

    /// <summary>The raw pointer for a native call; <see cref="ObjectDisposedException"/> once the graph is freed.</summary>
    public mamba_graph* Pointer
    {
        get
        {
            ObjectDisposedException.ThrowIf(IsClosed, this);
            return (mamba_graph*)handle;
        }
    }

    /// <summary>Takes ownership of <paramref name="graph"/>, just returned by <c>mamba_graph_capture_end</c> on
    /// <paramref name="context"/> (freed here if the context is already disposed).</summary>
    public static GraphHandle Adopt(ContextHandle context, mamba_graph* graph)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (graph == null)
        {
            throw new ArgumentException("mamba_graph_capture_end returned no graph", nameof(graph));
        }
        var h = new GraphHandle();
        var added = false;
        try
        {
            context.DangerousAddRef(ref added);
        }
        catch
        {
            NativeMethods.mamba_graph_free(graph);
            throw;
        }
        h._context = context;
        h.SetHandle((IntPtr)graph);
        return h;
    }

    /// <inheritdoc />
    protected override bool ReleaseHandle()
    {
        NativeMethods.mamba_graph_free((mamba_graph*)handle);
        _context?.DangerousRelease();
        return true;
    }
}
