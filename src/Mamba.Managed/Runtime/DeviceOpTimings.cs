using Mamba.Native;
using Mamba.Native.Interop;

namespace Mamba.Runtime;

/// <summary>
/// Device time per op name: each op run through <see cref="MambaContext.Op"/> records an event on the context's stream
/// as it starts and another as it ends, and nothing synchronizes between ops, so the profiled work keeps its
/// host and device overlapped (only the event records are added). An op's time is the span between its two events on the device: from the end of the work queued before
/// it to the end of its own (on the CPU, where ops run synchronously, the host time of the call). Reading
/// <see cref="Ops"/> or <see cref="TotalMilliseconds"/> waits for the recorded work and resolves the events.
/// </summary>
public sealed unsafe class DeviceOpTimings : IOpProfiler, IDisposable
{
    private readonly MambaContext _context;
    private readonly OpTimings _resolved = new();
    private readonly List<EventHandle> _free = [];
    private readonly List<(string Op, EventHandle Start, EventHandle? End)> _pending = [];
    private bool _disposed;

    /// <summary>Times ops run on <paramref name="context"/>; set it as that context's <see cref="MambaContext.Profiler"/>.</summary>
    public DeviceOpTimings(MambaContext context) => _context = context;

    /// <summary>Every op seen, in the order it first ran, with its total device time and runs.</summary>
    public IReadOnlyList<OpTime> Ops
    {
        get
        {
            Resolve();
            return _resolved.Ops;
        }
    }

    /// <summary>Sum of all op times, milliseconds.</summary>
    public double TotalMilliseconds
    {
        get
        {
            Resolve();
            return _resolved.TotalMilliseconds;
        }
    }

    /// <inheritdoc />
    /// <remarks>Adds a time measured elsewhere to <paramref name="op"/>.</remarks>
    public void Record(string op, double milliseconds) => _resolved.Record(op, milliseconds);

    /// <summary>Forgets every recorded time (pending ones too).</summary>
    public void Clear()
    {
        foreach (var (_, start, end) in _pending)
        {
            _free.Add(start);
            if (end is not null)
            {
                _free.Add(end);
            }
        }
        _pending.Clear();
        _resolved.Clear();
    }

    /// <summary>Records the start event of an op run on <paramref name="context"/>; returns the index <see cref="End"/> takes.</summary>
    internal int Begin(MambaContext context, string op)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!ReferenceEquals(context, _context))
        {
            throw new InvalidOperationException($"op '{op}': this DeviceOpTimings records events on the stream of another context ({_context.Device}); create one for each context it profiles");
        }
        var start = RecordedEvent();
        _pending.Add((op, start, null));
        return _pending.Count - 1;
    }

    /// <summary>Records the end event of the op that <see cref="Begin"/> returned <paramref name="index"/> for.</summary>
    internal void End(int index)
    {
        var (op, start, _) = _pending[index];
        _pending[index] = (op, start, RecordedEvent());
    }

    private EventHandle RecordedEvent()
    {
        EventHandle e;
        if (_free.Count > 0)
        {
            e = _free[^1];
            _free.RemoveAt(_free.Count - 1);
        }
        else
        {
            e = EventHandle.Create(_context.Handle);
        }
        MambaException.Check(NativeMethods.mamba_event_record(e.Pointer));
        return e;
    }

    // Waits for the last recorded event and adds every finished op's span to the totals, in the order the ops began.
    private void Resolve()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_pending.Count == 0)
        {
            return;
        }
        if (_pending.Any(p => p.End is null))
        {
            throw new InvalidOperationException("an op is still running: read the timings once every profiled op has returned");
        }
        _context.Synchronize();
        foreach (var (op, start, end) in _pending)
        {
            float ms;
            MambaException.Check(NativeMethods.mamba_event_elapsed_ms(start.Pointer, end!.Pointer, &ms));
            _resolved.Record(op, ms);
            _free.Add(start);
            _free.Add(end);
        }
        _pending.Clear();
    }

    /// <summary>Frees the events.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        foreach (var (_, start, end) in _pending)
        {
            start.Dispose();
            end?.Dispose();
        }
        _pending.Clear();
        foreach (var e in _free)
        {
            e.Dispose();
        }
        _free.Clear();
    }
}
