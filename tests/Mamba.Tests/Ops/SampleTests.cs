using Mamba.Ops;
using Mamba.Runtime;
using Mamba.Tensors;
using static Mamba.Tests.Ops.OpTestSupport;

namespace Mamba.Tests.Ops;

[TestFixture]
public class SampleTests
{
    [TestCaseSource(typeof(TestSupport), nameof(TestSupport.Devices))]
    public void GreedyPicksTheArgmaxOfEachRow(Device device)
    {
        using var ctx = TestSupport.ContextFor(device);
        const int batch = 4, vocab = 50;
        var logits = Rand(new Random(4), batch * vocab, -3, 3);
        using var tl = Upload(ctx, logits, batch, vocab);
        using var tokens = Tensor.FromHost<int>(ctx, [-7, -7, -7, -7], [batch]);
        Kernels.Sample(ctx, tl, tokens, SamplingParams.Greedy);
        var got = new int[batch];
        tokens.CopyTo<int>(got);
        var expected = Enumerable.Range(0, batch).Select(r => Array.IndexOf(logits, logits.Skip(r * vocab).Take(vocab).Max(), r * vocab) - r * vocab);
        Assert.That(got, Is.EqualTo(expected));
    }

    [TestCaseSource(typeof(TestSupport), nameof(TestSupport.Devices))]
    public void HistoryAndSeedReachTheSampler(Device device)
    {
        using var ctx = TestSupport.ContextFor(device);
        // Row 0 prefers token 2, then 5; with 2 in its history and a strong penalty it must pick 5.
        float[] logits = [0f, 1f, 4f, 0.5f, 0f, 3f];
        using var tl = Upload(ctx, logits, 1, 6);
        using var history = Tensor.FromHost<int>(ctx, [2, -1], [1, 2]);
        using var tokens = Tensor.FromHost<int>(ctx, [-7], [1]);
        var got = new int[1];
        Kernels.Sample(ctx, tl, tokens, new SamplingParams(Temperature: 1f, TopK: 1, RepetitionPenalty: 100f), 0, history);
        tokens.CopyTo<int>(got);
        Assert.That(got[0], Is.EqualTo(5));
        Kernels.Sample(ctx, tl, tokens, new SamplingParams(Temperature: 1f, TopK: 1), 0, history);
        tokens.CopyTo<int>(got);
        Assert.That(got[0], Is.EqualTo(2), "without a penalty the history changes nothing");

        // Equal seed and step draw equal tokens; the draws depend on them.
        var flat = Rand(new Random(5), 64, -1, 1);
        using var wide = Upload(ctx, flat, 1, 64);
        var draws = new Dictionary<(ulong, ulong), int>();
        foreach (var (seed, step) in new[] { (1UL, 0UL), (1UL, 0UL), (1UL, 1UL), (2UL, 0UL), (3UL, 5UL), (4UL, 9UL) })
        {
            Kernels.Sample(ctx, wide, tokens, new SamplingParams(Temperature: 5f, Seed: seed), step);
            tokens.CopyTo<int>(got);
            if (draws.TryGetValue((seed, step), out var before))
            {
                Assert.That(got[0], Is.EqualTo(before));
            }
            draws[(seed, step)] = got[0];
        }
        Assert.That(draws.Values.Distinct().Count(), Is.GreaterThan(1));
    }

    [Test]
    public void NativeErrorSurfacesTyped()
    {
        using var ctx = new MambaContext(Device.Cpu);
        using var logits = Tensor.Empty(ctx, DType.Float32, 2, 8);
        using var tokens = Tensor.Empty(ctx, DType.Int32, 3);
        AssertInvalidArgument(() => Kernels.Sample(ctx, logits, tokens, SamplingParams.Greedy), "sample", "tokens");
    }
}
