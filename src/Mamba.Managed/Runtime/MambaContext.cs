using Mamba.Native;
using Mamba.Native.Interop;

namespace Mamba.Runtime;

/// <summary>
/// A device with its stream, library handles and scratch memory. Tensors are allocated on a context and ops
/// run on it. A context may be used by one thread at a time.
/// </summary>
public sealed unsafe class MambaContext : IDisposable
{
    /// <summary>Creates a context on <paramref name="device"/> (<see cref="Device.Default"/> when null).</summary>
    /// <param name="device">The device to run on.</param>
    /// <param name="cpuThreads">CPU worker threads; 0 uses every core.</param>
    public MambaContext(Device? device = null, int cpuThreads = 0)
    {
        Device = device ?? Device.Default;
        // libmamba reads MAMBA_CUDA_L2_PREFETCH when it creates the context; the same reading here tells decode
        // steps whether to make their prefetch calls (the process environment both see).
        L2Prefetch = L2PrefetchPolicyFor(Device, Environment.GetEnvironmentVariable("MAMBA_CUDA_L2_PREFETCH"));
        Handle = ContextHandle.Create(Device.Native, Device.Index, cpuThreads);
    }

    /// <summary>When this context's decode steps prefetch their next weights into L2, from MAMBA_CUDA_L2_PREFETCH as it
    /// was when the context was created.</summary>
    internal L2PrefetchPolicy L2Prefetch { get; }

    /// <summary>The policy of a context on <paramref name="device"/> created with MAMBA_CUDA_L2_PREFETCH set to
    /// <paramref name="variable"/>: never on the CPU or with "off", from the batch size that gains when unset (libmamba's
    /// default mode), always when a mode is named.</summary>
    internal static L2PrefetchPolicy L2PrefetchPolicyFor(Device device, string? variable)
    {
        var value = variable?.Trim();
        if (device.Type != DeviceType.Cuda || value == "off")
        {
            return L2PrefetchPolicy.Never;
        }
        return string.IsNullOrEmpty(value) ? L2PrefetchPolicy.LargeBatches : L2PrefetchPolicy.Always;
    }

    /// <summary>The device this context runs on.</summary>
    public Device Device { get; }

    /// <summary>The native handle, for calls through <see cref="NativeMethods"/>.</summary>
    public ContextHandle Handle { get; }

    internal mamba_context* Pointer => Handle.Pointer;

    /// <summary>Blocks until all work queued on this context has finished.</summary>
    public void Synchronize() => MambaException.Check(NativeMethods.mamba_context_synchronize(Pointer));

    /// <summary>When set, ops run through <see cref="Op"/> are timed for it: a <see cref="DeviceOpTimings"/> records events
    /// around each op on the stream (device time; nothing synchronizes between ops); any other profiler has each op
    /// synchronize the device around itself and receives its wall time (this serializes host and device). Null, the
    /// default, costs nothing.</summary>
    public IOpProfiler? Profiler { get; set; }

    /// <summary>Scope that times the op <paramref name="name"/> for <see cref="Profiler"/>; a no-op without one.</summary>
    public OpScope Op(string name) => new(this, name);

    /// <summary>Releases the context once every tensor and event that uses it is released too.</summary>
    public void Dispose() => Handle.Dispose();
}
