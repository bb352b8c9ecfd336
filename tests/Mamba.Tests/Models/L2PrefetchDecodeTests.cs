using Mamba.Models;
using Mamba.Ops;
using Mamba.Runtime;
using static Mamba.Tests.Models.ModelTestSupport;

namespace Mamba.Tests.Models;

/// <summary>Greedy decode with the L2 prefetch switched on (MAMBA_CUDA_L2_PREFETCH, read when the model's context is
/// created) gives the tokens and logits of decode with it off, bit for bit: the prefetch only moves data into the cache.
/// Both families, replayed from a graph and run directly; the default (the variable unset) prefetches only at batch 8
/// and more on the 2.7b/2.8b layers.</summary>
[TestFixture]
[NonParallelizable] // changes the process environment
public class L2PrefetchDecodeTests
{
    private const int Steps = 10;

    private static IEnumerable<TestCaseData> Cases()
    {
        foreach (var family in new[] { MambaFamily.Mamba1, MambaFamily.Mamba2 })
        {
            foreach (var graphs in new[] { true, false })
            {
                foreach (var mode in new[] { "prefetch", "load", "bulk" })
                {
                    yield return new TestCaseData(family, graphs, mode)
                        .SetArgDisplayNames(family == MambaFamily.Mamba1 ? "mamba1" : "mamba2", graphs ? "graph" : "direct", mode, "cuda")
                        .SetCategory(TestSupport.Gpu);
                }
            }
        }
    }

    private static MambaModel BuildWithMode(TinyModel tiny, bool graphs, string? mode)
    {
        TestSupport.RequireCuda();
        using var env = NativeEnvironment.Set("MAMBA_CUDA_L2_PREFETCH", mode);
        return BuildOn(Device.Cuda(0), tiny, new MambaModelOptions { UseCudaGraphs = graphs });
    }

    [TestCaseSource(nameof(Cases))]
    public void GreedyDecodeWithPrefetchEqualsWithout(MambaFamily family, bool graphs, string mode)
    {
        var tiny = TinyModel.Create(ConfigFor(family), seed: 57);
        using var off = BuildWithMode(tiny, graphs, "off");
        using var on = BuildWithMode(tiny, graphs, mode);
        var rng = new Random(17);
        var prompts = new[] { 7, 2 }.Select(n => TinyModel.RandomTokens(rng, n, tiny.Config.VocabSize)).ToArray();
        // The "on" model's decode steps really make the calls (on a context created with the switch on); the "off" one's none.
        Assert.That(on.Context.L2Prefetch, Is.EqualTo(L2PrefetchPolicy.Always));
        Assert.That(off.Context.L2Prefetch, Is.EqualTo(L2PrefetchPolicy.Never));
        Assert.That(Mamba.Modules.DecodePrefetch.Create(on.Context, on.LmHead, null, prompts.Length) is not null, Is.True, "prefetch calls with the switch on");
        Assert.That(Mamba.Modules.DecodePrefetch.Create(off.Context, off.LmHead, null, prompts.Length) is null, Is.True, "no prefetch calls with it off");
        using var a = off.CreateSession(prompts.Length);
        using var b = on.CreateSession(prompts.Length);
        var expected = GreedyDecode(a, prompts, Steps);
        var actual = GreedyDecode(b, prompts, Steps);
        Assert.That(b.DecodesWithGraph, Is.EqualTo(graphs), $"graph use ({b.GraphCaptureFailure})");
        for (var step = 0; step < Steps; step++)
        {
            Assert.That(actual.Tokens[step], Is.EqualTo(expected.Tokens[step]), $"tokens of step {step}");
            for (var s = 0; s < prompts.Length; s++)
            {
                Assert.That(actual.Logits[step][s], Is.EqualTo(expected.Logits[step][s]), $"logits of sequence {s}, step {step}");
                Assert.That(actual.Logits[step][s].All(float.IsFinite), Is.True, $"finite logits of sequence {s}, step {step}");
            }
        }
    }

    /// <summary>A CUDA context created with the variable unset is on the default policy, and a tiny model's decode steps
    /// make no prefetch calls under it, even at <see cref="Mamba.Modules.DecodePrefetch.DefaultMinBatch"/> rows: its
    /// weights are far below <see cref="Mamba.Modules.DecodePrefetch.DefaultMinWeightBytes"/>. (That a prefetch changes no
    /// result is the named-mode cases above; the default mode is bulk.)</summary>
    [TestCase(MambaFamily.Mamba1, Category = TestSupport.Gpu)]
    [TestCase(MambaFamily.Mamba2, Category = TestSupport.Gpu)]
    public void DefaultPolicyLeavesSmallLayersAlone(MambaFamily family)
    {
        var tiny = TinyModel.Create(ConfigFor(family), seed: 59);
        using var byDefault = BuildWithMode(tiny, graphs: true, null);
        Assert.That(byDefault.Context.L2Prefetch, Is.EqualTo(L2PrefetchPolicy.LargeBatches));
        var min = Mamba.Modules.DecodePrefetch.DefaultMinBatch;
        foreach (var batch in new long[] { 1, min, 16 })
        {
            Assert.That(Mamba.Modules.DecodePrefetch.Create(byDefault.Context, byDefault.LmHead, byDefault.LmHead, batch) is null, Is.True,
                $"a small weight at batch {batch}: no calls");
        }
    }

    /// <summary>The default policy prefetches from the batch size and the weight size that gained (both bounds
    /// included); a named mode always; never when off.</summary>
    [Test]
    public void DefaultPrefetchNeedsALargeBatchAndALargeLayer()
    {
        var minBatch = Mamba.Modules.DecodePrefetch.DefaultMinBatch;
        var minBytes = Mamba.Modules.DecodePrefetch.DefaultMinWeightBytes;
        const long outProj28b = 2560L * 5120 * 2;  // mamba-2.8b's out_proj in bf16
        Assert.That(Mamba.Modules.DecodePrefetch.Wanted(L2PrefetchPolicy.LargeBatches, minBatch, outProj28b), Is.True);
        Assert.That(Mamba.Modules.DecodePrefetch.Wanted(L2PrefetchPolicy.LargeBatches, 16, minBytes), Is.True);
        Assert.That(Mamba.Modules.DecodePrefetch.Wanted(L2PrefetchPolicy.LargeBatches, minBatch - 1, outProj28b), Is.False);
        Assert.That(Mamba.Modules.DecodePrefetch.Wanted(L2PrefetchPolicy.LargeBatches, 1, outProj28b), Is.False);
        Assert.That(Mamba.Modules.DecodePrefetch.Wanted(L2PrefetchPolicy.LargeBatches, 16, minBytes - 1), Is.False);
        Assert.That(Mamba.Modules.DecodePrefetch.Wanted(L2PrefetchPolicy.LargeBatches, 16, 768L * 1536 * 2), Is.False, "mamba-130m's out_proj");
        Assert.That(Mamba.Modules.DecodePrefetch.Wanted(L2PrefetchPolicy.Always, 1, 1), Is.True);
        Assert.That(Mamba.Modules.DecodePrefetch.Wanted(L2PrefetchPolicy.Never, 16, outProj28b), Is.False);
    }

    /// <summary>The policy follows the variable as it was when the context was created: never on the CPU or with "off",
    /// from the threshold when unset or blank, always with a named mode.</summary>
    [Test]
    public void PolicyFollowsTheVariable()
    {
        var cuda = Device.Cuda(0);
        Assert.That(MambaContext.L2PrefetchPolicyFor(cuda, null), Is.EqualTo(L2PrefetchPolicy.LargeBatches));
        Assert.That(MambaContext.L2PrefetchPolicyFor(cuda, " "), Is.EqualTo(L2PrefetchPolicy.LargeBatches));
        Assert.That(MambaContext.L2PrefetchPolicyFor(cuda, "off"), Is.EqualTo(L2PrefetchPolicy.Never));
        Assert.That(MambaContext.L2PrefetchPolicyFor(cuda, "bulk"), Is.EqualTo(L2PrefetchPolicy.Always));
        Assert.That(MambaContext.L2PrefetchPolicyFor(cuda, "prefetch"), Is.EqualTo(L2PrefetchPolicy.Always));
        Assert.That(MambaContext.L2PrefetchPolicyFor(Device.Cpu, null), Is.EqualTo(L2PrefetchPolicy.Never));
        Assert.That(MambaContext.L2PrefetchPolicyFor(Device.Cpu, "bulk"), Is.EqualTo(L2PrefetchPolicy.Never));
    }

    /// <summary>On the CPU the switch changes nothing: with it (and a malformed next-layer budget) set while the model is
    /// built and while it decodes, the decode steps make no prefetch call and read no budget, and the results equal
    /// those without it.</summary>
    [Test]
    public void CpuDecodeIgnoresTheSwitch()
    {
        var tiny = TinyModel.Create(ConfigFor(MambaFamily.Mamba2), seed: 58);
        var prompts = new[] { new[] { 1, 2, 3 } };
        (int[][] Tokens, float[][][] Logits) expected;
        using (var off = Build(tiny))
        using (var b = off.CreateSession())
        {
            expected = GreedyDecode(b, prompts, Steps);
        }
        using (NativeEnvironment.Set("MAMBA_CUDA_L2_PREFETCH", "prefetch"))
        using (NativeEnvironment.Set(Mamba.Modules.DecodePrefetch.NextMegabytesVariable, "not a number"))
        using (var on = Build(tiny))
        using (var a = on.CreateSession())
        {
            Assert.That(on.Context.L2Prefetch, Is.EqualTo(L2PrefetchPolicy.Never));
            Assert.That(Mamba.Modules.DecodePrefetch.Create(on.Context, on.LmHead, on.LmHead, 16) is null, Is.True, "no prefetch calls on the CPU");
            var actual = GreedyDecode(a, prompts, Steps);
            Assert.That(actual.Tokens, Is.EqualTo(expected.Tokens));
            Assert.That(actual.Logits, Is.EqualTo(expected.Logits));
        }
    }
}
