using System.Diagnostics;

namespace Mamba.Runtime;

/// <summary>Receives the time of each op run while it is set as <see cref="MambaContext.Profiler"/>.</summary>
public interface IOpProfiler
{
    /// <summary>Called once per op run with the op's name and its wall time, the device synchronized on both sides
    /// (for every profiler but <see cref="DeviceOpTimings"/>, whose ops record events instead).</summary>
    void Record(string op, double milliseconds);
}

/// <summary>One op's total time and number of runs.</summary>
public readonly record struct OpTime(string Op, double Milliseconds, int Calls);

/// <summary>Wall time per op name, summed over runs, in the order the ops first ran.</summary>
public sealed class OpTimings : IOpProfiler
{
    private readonly List<string> _order = [];
    private readonly Dictionary<string, (double Ms, int Calls)> _times = [];

    /// <inheritdoc />
    public void Record(string op, double milliseconds)
    {
        if (!_times.TryGetValue(op, out var t))
        {
            _order.Add(op);
        }
        _times[op] = (t.Ms + milliseconds, t.Calls + 1);
    }

    /// <summary>Every op seen, in the order it first ran.</summary>
    public IReadOnlyList<OpTime> Ops => _order.Select(op => new OpTime(op, _times[op].Ms, _times[op].Calls)).ToList();

    /// <summary>Sum of all recorded times, milliseconds.</summary>
    public double TotalMilliseconds => _times.Values.Sum(t => t.Ms);

    /// <summary>Forgets every recorded time.</summary>
    public void Clear()
    {
        _order.Clear();
        _times.Clear();
    }
}

/// <summary>
/// Times one op when the context has a profiler. With <see cref="DeviceOpTimings"/> it records an event on the
/// context's stream at each end of the op; with any other profiler it synchronizes the device before and after so that
/// the wall time is the op's own, then reports it. Without a profiler it does nothing and allocates nothing.
/// </summary>
public readonly struct OpScope : IDisposable
{
    private readonly MambaContext? _context;
    private readonly IOpProfiler? _profiler;
    private readonly string? _op;
    private readonly long _start;

    internal OpScope(MambaContext context, string op)
    {
        _profiler = context.Profiler;
        if (_profiler is null)
        {
            return;
        }
        _context = context;
        _op = op;
        if (_profiler is DeviceOpTimings events)
        {
            _start = events.Begin(context, op);
            return;
        }
        context.Synchronize(); // earlier queued work must not count towards this op
        _start = Stopwatch.GetTimestamp();
    }

    /// <summary>Marks the end of the op: records its end event, or waits for it to finish and records its time.</summary>
    public void Dispose()
    {
        if (_profiler is null)
        {
            return;
        }
        if (_profiler is DeviceOpTimings events)
        {
            events.End((int)_start);
            return;
        }
        _context!.Synchronize();
        _profiler.Record(_op!, Stopwatch.GetElapsedTime(_start).TotalMilliseconds);
    }
}
