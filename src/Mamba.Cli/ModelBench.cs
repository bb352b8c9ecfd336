using System.Diagnostics;
using System.Numerics;
using Mamba.Loading;
using Mamba.Models;
using Mamba.Ops;
using Mamba.Runtime;
using Mamba.Tensors;

namespace Mamba.Cli;

/// <summary>One end-to-end measurement: a model shape with random weights of one dtype at one batch size.</summary>
internal sealed record ModelBenchResult(
    string Shape, string DType, int Batch, string Device, long WeightBytes,
    double DecodeMs, double DecodeTokensPerSecond, double BoundMs, double PercentOfBound,
    int PrefillTokens, double PrefillMs, double PrefillTokensPerSecond, string? Activations = null, int PrefillChunk = 0,
    double SampledDecodeMs = 0);

/// <summary>
/// Times decode steps and prefill of random-weight models in the public checkpoints' shapes, next to the
/// memory bandwidth measured in the same run: a decode step must read every weight once, so
/// weight bytes / bandwidth is its floor, and the percentage says how close a step comes to it.
/// </summary>
internal static class ModelBench
{
    /// <summary>Read bandwidth of host memory (CPU) or copy bandwidth of device memory (CUDA, bytes read + written), bytes/s.</summary>
    public static double MeasureBandwidth(MambaContext context, int threads)
    {
        return context.Device.Type == DeviceType.Cpu ? HostReadBandwidth(threads) : DeviceCopyBandwidth(context);
    }

    /// <summary>Decode (and, with <paramref name="prefillTokens"/> > 0, prefill) of <paramref name="bench"/>'s model at one batch size.</summary>
    public static ModelBenchResult Run(MambaContext context, BenchModel bench, int batch, int steps, int prefillTokens, double bandwidth)
    {
        var config = bench.Config;
        var model = bench.Model;
        var weightBytes = bench.WeightBytes;
        using var session = model.CreateSession(batch);
        var prompt = Prompt(config, Math.Max(16, prefillTokens));
        for (var b = 0; b < batch; b++)
        {
            session.Prefill(b, prompt.AsSpan(0, 16));
        }
        var next = Enumerable.Range(0, batch).Select(b => 11 + b).ToArray();
        for (var i = 0; i < 3; i++)
        {
            session.Decode(next);
        }
        context.Synchronize();
        var decode = Median(steps, () =>
        {
            session.Decode(next);
            context.Synchronize();
        });
        // A generation step as GenerationLoop runs it with sampling on: the decode, a top-p draw on the device and
        // the drawn ids copied back to the host (which waits for both).
        var sampled = new int[batch];
        ulong step = 0;
        var sampledDecode = Median(steps, () =>
        {
            session.Decode(next);
            session.Sample(SampledStep, step++, sampled);
        });

        // Prefill: every sequence of the batch a prompt of prefillTokens tokens (each its own), prefilled together as
        // GenerationLoop does; once untimed (it sizes the batched buffers and the libraries' workspaces), then the
        // median of three, each from empty states (the resets untimed).
        double prefillMs = 0;
        if (prefillTokens > 0)
        {
            var sequences = Enumerable.Range(0, batch).ToArray();
            var prompts = sequences.Select(b => (ReadOnlyMemory<int>)Prompt(config, prefillTokens, b)).ToArray();
            var times = new double[4];
            for (var i = 0; i < times.Length; i++)
            {
                session.Reset();
                context.Synchronize();
                var sw = Stopwatch.StartNew();
                session.Prefill(sequences, prompts);
                context.Synchronize();
                times[i] = sw.Elapsed.TotalMilliseconds;
            }
            Array.Sort(times, 1, times.Length - 1);
            prefillMs = times[2];
        }
        var boundMs = weightBytes / bandwidth * 1e3;
        return new ModelBenchResult(bench.Shape, bench.DType.ToString(), batch, context.Device.ToString(), weightBytes,
            decode, batch / (decode / 1e3), boundMs, 100 * boundMs / decode,
            prefillTokens, prefillMs, prefillTokens > 0 ? (double)batch * prefillTokens / (prefillMs / 1e3) : 0, model.ActivationDType.ToString(),
            model.PrefillChunkSize, sampledDecode);
    }

    /// <summary>The sampling of the sampled-step column: temperature 0.8 and top-p 0.9, a common chat setting.</summary>
    public static SamplingParams SampledStep { get; } = new(Temperature: 0.8f, TopP: 0.9f, Seed: 1);

    /// <summary>Prefill of <paramref name="tokens"/> tokens for each of <paramref name="batch"/> sequences together, with every op
    /// timed on its own (see <see cref="MambaContext.Profiler"/>), after one warm-up prefill: by events on the device's
    /// stream (<see cref="DeviceOpTimings"/>) or, without <paramref name="deviceEvents"/>, by wall time with the device
    /// synchronized around each op (<see cref="OpTimings"/>).</summary>
    public static PrefillProfile Profile(MambaContext context, BenchModel bench, int tokens, int batch = 1, bool deviceEvents = true)
    {
        var model = bench.Model;
        using var session = model.CreateSession(batch);
        var sequences = Enumerable.Range(0, batch).ToArray();
        var prompts = sequences.Select(b => (ReadOnlyMemory<int>)Prompt(bench.Config, tokens, b)).ToArray();
        using var events = deviceEvents ? new DeviceOpTimings(context) : null;
        // The warm-up records events too, so that the measured prefill reuses them instead of creating each one.
        context.Profiler = events;
        try
        {
            session.Prefill(sequences, prompts);
            context.Synchronize();
        }
        finally
        {
            context.Profiler = null;
        }
        events?.Clear();
        session.Reset();
        var synchronized = deviceEvents ? null : new OpTimings();
        context.Profiler = (IOpProfiler?)events ?? synchronized;
        double totalMs;
        try
        {
            var sw = Stopwatch.StartNew();
            session.Prefill(sequences, prompts);
            context.Synchronize();
            totalMs = sw.Elapsed.TotalMilliseconds;
        }
        finally
        {
            context.Profiler = null;
        }
        var times = events?.Ops ?? synchronized!.Ops;
        var ops = times.Select(o => new OpShare(o.Op, o.Milliseconds, o.Calls, 100 * o.Milliseconds / totalMs)).ToList();
        var other = Math.Max(0, totalMs - times.Sum(o => o.Milliseconds));
        ops.Add(new OpShare("other", other, 0, 100 * other / totalMs));
        return new PrefillProfile(bench.Shape, bench.DType.ToString(), context.Device.ToString(), tokens, totalMs, (double)batch * tokens / (totalMs / 1e3), ops,
            model.ActivationDType.ToString(), batch, deviceEvents ? "events" : "sync");
    }

    /// <summary>The model options of a run; <paramref name="prefillChunk"/> 0 keeps the default piece size.</summary>
    internal static MambaModelOptions Options(MambaContext context, DType? activations, int prefillChunk, int threads)
    {
        var options = new MambaModelOptions { Device = context.Device, CpuThreads = threads, ActivationDType = activations };
        return prefillChunk > 0 ? options with { PrefillChunkSize = prefillChunk } : options;
    }

    /// <summary>A fixed prompt spread over the vocabulary (ids 3 and up, past the usual special tokens).</summary>
    // Token ids spread over the vocabulary; `variant` shifts them so that the sequences of a batch differ.
    private static int[] Prompt(MambaConfig config, int length, int variant = 0) =>
        Enumerable.Range(0, length).Select(i => 3 + (int)(((long)i * 7919 + variant * 104729L) % (config.VocabSize - 3))).ToArray();

    private static double Median(int count, Action action)
    {
        var times = new double[count];
        for (var i = 0; i < count; i++)
        {
            var sw = Stopwatch.StartNew();
            action();
            times[i] = sw.Elapsed.TotalMilliseconds;
        }
        Array.Sort(times);
        return times[count / 2];
    }

    private static double HostReadBandwidth(int threads)
    {
        // 1 GiB, far beyond any cache, summed by every thread over its own slice with SIMD loads.
        var data = new float[256L << 20];
        new Random(3).NextBytes(System.Runtime.InteropServices.MemoryMarshal.AsBytes(data.AsSpan(0, 1 << 20)));
        for (var i = 1 << 18; i < data.Length; i += 1 << 18)
        {
            data.AsSpan(0, 1 << 18).CopyTo(data.AsSpan(i, Math.Min(1 << 18, data.Length - i)));
        }
        var workers = threads > 0 ? threads : Environment.ProcessorCount;
        var sink = 0f;
        var ms = Median(5, () =>
        {
            var partial = new float[workers];
            Parallel.For(0, workers, new ParallelOptions { MaxDegreeOfParallelism = workers }, w =>
            {
                var span = data.AsSpan();
                long start = span.Length * (long)w / workers, end = span.Length * (long)(w + 1) / workers;
                var acc = Vector<float>.Zero;
                var i = (int)start;
                for (; i + Vector<float>.Count <= end; i += Vector<float>.Count)
                {
                    acc += new Vector<float>(span.Slice(i, Vector<float>.Count));
                }
                partial[w] = Vector.Sum(acc);
            });
            sink += partial.Sum();
        });
        GC.KeepAlive(sink);
        return data.LongLength * sizeof(float) / (ms / 1e3);
    }

    private static double DeviceCopyBandwidth(MambaContext context)
    {
        const long elements = 256L << 20; // 1 GiB of float32 each way
        using var a = Tensor.Empty(context, DType.Float32, elements);
        using var b = Tensor.Empty(context, DType.Float32, elements);
        a.CopyTo(b);
        context.Synchronize();
        var ms = Median(10, () =>
        {
            a.CopyTo(b);
            context.Synchronize();
        });
        return 2.0 * elements * sizeof(float) / (ms / 1e3);
    }
}

/// <summary>
/// A random-weight model of one shape and weight dtype, made once for every batch size and the profile of a
/// <c>mamba bench</c> run (drawing and loading a 2.8b shape's weights takes longer than measuring it).
/// </summary>
internal sealed class BenchModel : IDisposable
{
    private readonly RandomCheckpoint _checkpoint;

    private BenchModel(string shape, DType dtype, MambaConfig config, RandomCheckpoint checkpoint, MambaModel model, long weightBytes)
    {
        Shape = shape;
        DType = dtype;
        Config = config;
        _checkpoint = checkpoint;
        Model = model;
        WeightBytes = weightBytes;
    }

    public string Shape { get; }

    public DType DType { get; }

    public MambaConfig Config { get; }

    public MambaModel Model { get; }

    /// <summary>Bytes a decode step must read: every weight once; an untied embedding table is only gathered
    /// from (one row per token).</summary>
    public long WeightBytes { get; }

    public static BenchModel Create(MambaContext context, string shape, DType dtype, DType? activations, int prefillChunk, int prefillBatchTokens,
        int threads)
    {
        var config = ModelShapes.Get(shape);
        var checkpoint = RandomCheckpoint.Create(config, dtype, seed: 1);
        try
        {
            var layout = CheckpointLayout.For(config, TensorNaming.HuggingFace);
            var weightBytes = checkpoint.TotalBytes -
                (config.TieWordEmbeddings ? 0 : checkpoint.Tensors[layout.NameOf(TensorKeys.Embedding)].Bytes.Length);
            var model = MambaModel.Create(config, checkpoint, ModelBench.Options(context, activations, prefillChunk, threads) with
            {
                PrefillBatchTokens = prefillBatchTokens > 0 ? prefillBatchTokens : null,
            }, context);
            return new BenchModel(shape, dtype, config, checkpoint, model, weightBytes);
        }
        catch
        {
            checkpoint.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        Model.Dispose();
        _checkpoint.Dispose();
    }
}
