using System.Diagnostics;
using Mamba.Native;
using Mamba.Native.Interop;
using Mamba.Ops;

namespace Mamba.Models;

/// <summary>Per-step time of a graph-replayed greedy decode step through <see cref="InferenceSession"/> next to the
/// same native calls made directly (graph launch, sample, copy of the ids to the host): the difference is what the
/// managed layer adds to a step.</summary>
internal static unsafe class DecodeOverhead
{
    /// <summary>Microseconds per step, best of several alternating rounds of <paramref name="steps"/> steps each.</summary>
    public static (double ManagedMicroseconds, double NativeMicroseconds) Measure(InferenceSession session, int steps, int rounds = 5)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(steps, 1);
        var ctx = session.Model.Context;
        var next = new int[session.BatchSize];
        var greedy = SamplingParams.Greedy;
        // Three steps: the direct one that sizes the workspace, the one that captures the graph, one replay.
        for (var i = 0; i < 3; i++)
        {
            session.Decode(next);
            session.Sample(greedy, (ulong)i, next);
        }
        var graph = session.DecodeGraph ?? throw new InvalidOperationException(session.GraphCaptureFailure is { } why
            ? $"the decode step could not be captured as a CUDA graph: {why}"
            : "the session does not decode with a CUDA graph (graphs need CUDA and UseCudaGraphs)");
        var ids = session.DecodeIds;
        var logits = session.Logits;
        var host = new int[session.BatchSize];
        double bestManaged = double.MaxValue, bestNative = double.MaxValue;
        ulong step = 3;
        for (var r = 0; r < rounds; r++)
        {
            var sw = Stopwatch.StartNew();
            for (var i = 0; i < steps; i++)
            {
                session.Decode(next);
                session.Sample(greedy, step++, next);
            }
            bestManaged = Math.Min(bestManaged, sw.Elapsed.TotalMicroseconds / steps);

            var args = new mamba_sample_args
            {
                logits = logits.DL,
                history = null,
                tokens = ids.DL,
                @params = greedy.ToNative(), // the parameters Sample passes
            };
            var ctxPtr = ctx.Handle.Pointer;
            fixed (int* dst = host)
            {
                sw.Restart();
                for (var i = 0; i < steps; i++)
                {
                    MambaException.Check(NativeMethods.mamba_graph_launch(ctxPtr, graph.Pointer));
                    args.step = step++;
                    MambaException.Check(NativeMethods.mamba_sample(ctxPtr, &args));
                    MambaException.Check(NativeMethods.mamba_memcpy(ctxPtr, dst, (byte*)ids.DL->data + ids.DL->byte_offset, (nuint)(host.Length * sizeof(int)),
                        mamba_memcpy_kind.MAMBA_MEMCPY_DEVICE_TO_HOST));
                }
                bestNative = Math.Min(bestNative, sw.Elapsed.TotalMicroseconds / steps);
            }
            host.CopyTo(next);
        }
        GC.KeepAlive(logits);
        GC.KeepAlive(ids);
        return (bestManaged, bestNative);
    }
}
