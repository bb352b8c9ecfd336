using Mamba.Models;
using Mamba.Runtime;

namespace Mamba.Tests.Models;

internal static class ModelTestSupport
{
    public static IEnumerable<TestCaseData> Families()
    {
        yield return new TestCaseData(MambaFamily.Mamba1).SetArgDisplayNames("mamba1");
        yield return new TestCaseData(MambaFamily.Mamba2).SetArgDisplayNames("mamba2");
    }

    /// <summary>Both families on the CPU and on CUDA (skipped, visibly, without a GPU).</summary>
    public static IEnumerable<TestCaseData> FamiliesOnDevices()
    {
        foreach (var family in new[] { MambaFamily.Mamba1, MambaFamily.Mamba2 })
        {
            var name = family == MambaFamily.Mamba1 ? "mamba1" : "mamba2";
            yield return new TestCaseData(family, Device.Cpu).SetArgDisplayNames(name, "cpu");
            yield return new TestCaseData(family, Device.Cuda(0)).SetArgDisplayNames(name, "cuda").SetCategory(TestSupport.Gpu);
        }
    }

    /// <summary>Builds on <paramref name="device"/>, skipping the test when it is CUDA and none is present.</summary>
    public static MambaModel BuildOn(Device device, TinyModel tiny, MambaModelOptions? options = null)
    {
        if (device.Type == DeviceType.Cuda)
        {
            TestSupport.RequireCuda();
        }
        return MambaModel.Create(tiny.Config, tiny.Checkpoint, (options ?? new MambaModelOptions()) with { Device = device });
    }

    public static MambaConfig ConfigFor(MambaFamily family, bool tied = true) =>
        family == MambaFamily.Mamba1 ? TinyModel.Mamba1Config(tied) : TinyModel.Mamba2Config(tied);

    public static MambaModel Build(TinyModel tiny, MambaModelOptions? options = null) =>
        MambaModel.Create(tiny.Config, tiny.Checkpoint, (options ?? new MambaModelOptions()) with { Device = Device.Cpu });

    /// <summary>Logits of every position from a prefill of the whole sequence.</summary>
    public static float[][] PrefillLogits(InferenceSession session, int sequence, int[] tokens)
    {
        var vocab = (int)session.Logits.Shape[1];
        var result = new float[tokens.Length][];
        session.Prefill(sequence, tokens, (start, logits) =>
        {
            var flat = logits.ToFloatArray();
            for (var r = 0; r < logits.Shape[0]; r++)
            {
                result[start + r] = flat.AsSpan(r * vocab, vocab).ToArray();
            }
        });
        return result;
    }

    /// <summary>Greedy decode of every sequence after its prompt for <paramref name="steps"/> steps: the drawn tokens and
    /// each sequence's logits per step; <paramref name="afterDecode"/> (with the step index) runs after each decode.</summary>
    public static (int[][] Tokens, float[][][] Logits) GreedyDecode(InferenceSession session, int[][] prompts, int steps,
        Action<int>? afterDecode = null)
    {
        var batch = prompts.Length;
        var tokens = new int[steps][];
        var logits = new float[steps][][];
        var next = new int[batch];
        for (var s = 0; s < batch; s++)
        {
            session.Prefill(s, prompts[s]);
        }
        session.Sample(new Mamba.Ops.SamplingParams(), 0, next);
        for (var step = 0; step < steps; step++)
        {
            session.Decode(next);
            afterDecode?.Invoke(step);
            logits[step] = Enumerable.Range(0, batch).Select(s => LogitsOf(session, s)).ToArray();
            session.Sample(new Mamba.Ops.SamplingParams(), (ulong)step + 1, next);
            tokens[step] = (int[])next.Clone();
        }
        return (tokens, logits);
    }

    /// <summary>Decodes <paramref name="continuations"/> (<paramref name="steps"/> tokens of each sequence) in
    /// <paramref name="session"/>, after <paramref name="before"/> (each sequence's logits already there, or none), and
    /// checks every sequence's logits against a session that prefills that sequence alone: entry k of the logits is
    /// compared at position (prompt length - 1 + k) with <paramref name="before"/>, (prompt length + k) without it.</summary>
    public static void AssertDecodeEqualsOneByOne(MambaModel model, InferenceSession session, int[][] prompts, int[][] continuations, int steps,
        float[][]? before = null)
    {
        var logits = new List<float[][]>();
        if (before is not null)
        {
            logits.Add(before);
        }
        for (var step = 0; step < steps; step++)
        {
            session.Decode(continuations.Select(c => c[step]).ToArray());
            logits.Add(Enumerable.Range(0, prompts.Length).Select(s => LogitsOf(session, s)).ToArray());
        }
        var first = before is null ? 0 : -1;
        for (var s = 0; s < prompts.Length; s++)
        {
            using var single = model.CreateSession();
            var expected = PrefillLogits(single, 0, [.. prompts[s], .. continuations[s].Take(steps)]);
            for (var k = 0; k < logits.Count; k++)
            {
                Assert.That(RelativeError(logits[k][s], expected[prompts[s].Length + first + k]), Is.LessThan(1e-4),
                    k + first < 0 ? $"sequence {s}, last prompt token" : $"sequence {s}, decode step {k + first}");
            }
        }
    }

    public static float[] LogitsOf(InferenceSession session, int sequence)
    {
        var row = new float[session.Logits.Shape[1]];
        session.CopyLogits(sequence, row);
        return row;
    }

    /// <summary>max |a - b| relative to the largest |b|.</summary>
    public static double RelativeError(IReadOnlyList<float> actual, IReadOnlyList<double> expected)
    {
        Assert.That(actual, Has.Count.EqualTo(expected.Count));
        var scale = expected.Max(Math.Abs);
        var worst = 0.0;
        for (var i = 0; i < actual.Count; i++)
        {
            var e = Math.Abs(actual[i] - expected[i]);
            if (double.IsNaN(e))
            {
                return double.PositiveInfinity;
            }
            worst = Math.Max(worst, e);
        }
        return worst / scale;
    }

    public static double RelativeError(IReadOnlyList<float> actual, IReadOnlyList<float> expected) =>
        RelativeError(actual, expected.Select(v => (double)v).ToArray());
}
