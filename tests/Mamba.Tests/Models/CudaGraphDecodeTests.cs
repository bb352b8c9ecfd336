using Mamba.Models;
using Mamba.Native;
using Mamba.Ops;
using Mamba.Runtime;
using Mamba.Tensors;
using static Mamba.Tests.Models.ModelTestSupport;

namespace Mamba.Tests.Models;

/// <summary>Decode replayed from a captured CUDA graph gives the tokens and logits of decode run kernel by kernel,
/// batched or one sequence at a time; on the CPU graphs are unsupported and decode runs directly.</summary>
[TestFixture]
public class CudaGraphDecodeTests
{
    private const int Steps = 12;

    private static IEnumerable<TestCaseData> FamiliesOnCuda()
    {
        yield return new TestCaseData(MambaFamily.Mamba1).SetArgDisplayNames("mamba1", "cuda").SetCategory(TestSupport.Gpu);
        yield return new TestCaseData(MambaFamily.Mamba2).SetArgDisplayNames("mamba2", "cuda").SetCategory(TestSupport.Gpu);
    }

    /// <summary>Greedy decode (<see cref="ModelTestSupport.GreedyDecode"/>), checking after each step whether the session
    /// replayed its graph: from the second step on when <paramref name="expectGraph"/>, never otherwise.</summary>
    private static (int[][] Tokens, float[][][] Logits) GreedyDecode(InferenceSession session, int[][] prompts, bool expectGraph) =>
        ModelTestSupport.GreedyDecode(session, prompts, Steps, step =>
            Assert.That(session.DecodesWithGraph, Is.EqualTo(expectGraph && step >= 1), $"graph in use at step {step} ({session.GraphCaptureFailure})"));

    private static double MaxAbsDifference(float[] a, float[] b)
    {
        Assert.That(a, Has.Length.EqualTo(b.Length));
        var worst = 0.0;
        for (var i = 0; i < a.Length; i++)
        {
            var d = Math.Abs((double)a[i] - b[i]);
            worst = double.IsNaN(d) ? double.PositiveInfinity : Math.Max(worst, d);
        }
        return worst;
    }

    [TestCaseSource(nameof(FamiliesOnCuda))]
    public void GraphDecodeEqualsDirectDecode(MambaFamily family)
    {
        var tiny = TinyModel.Create(ConfigFor(family), seed: 41);
        using var direct = BuildOn(Device.Cuda(0), tiny, new MambaModelOptions { UseCudaGraphs = false });
        using var graphed = BuildOn(Device.Cuda(0), tiny, new MambaModelOptions { UseCudaGraphs = true });
        var rng = new Random(12);
        var prompts = new[] { 9, 3 }.Select(n => TinyModel.RandomTokens(rng, n, tiny.Config.VocabSize)).ToArray();
        using var a = direct.CreateSession(prompts.Length);
        using var b = graphed.CreateSession(prompts.Length);
        var expected = GreedyDecode(a, prompts, expectGraph: false);
        var actual = GreedyDecode(b, prompts, expectGraph: true);
        for (var step = 0; step < Steps; step++)
        {
            Assert.That(actual.Tokens[step], Is.EqualTo(expected.Tokens[step]), $"tokens of step {step}");
            for (var s = 0; s < prompts.Length; s++)
            {
                Assert.That(MaxAbsDifference(actual.Logits[step][s], expected.Logits[step][s]), Is.LessThanOrEqualTo(1e-5),
                    $"logits of sequence {s}, step {step}");
            }
        }
    }

    [TestCaseSource(nameof(FamiliesOnCuda))]
    public void GraphDecodeBatchedEqualsOneByOne(MambaFamily family)
    {
        var tiny = TinyModel.Create(ConfigFor(family), seed: 42);
        using var model = BuildOn(Device.Cuda(0), tiny);
        var rng = new Random(13);
        var prompts = new[] { 4, 11, 1 }.Select(n => TinyModel.RandomTokens(rng, n, tiny.Config.VocabSize)).ToArray();
        using var batch = model.CreateSession(prompts.Length);
        var batched = GreedyDecode(batch, prompts, expectGraph: true);
        for (var s = 0; s < prompts.Length; s++)
        {
            using var single = model.CreateSession();
            var alone = GreedyDecode(single, [prompts[s]], expectGraph: true);
            for (var step = 0; step < Steps; step++)
            {
                Assert.That(batched.Tokens[step][s], Is.EqualTo(alone.Tokens[step][0]), $"token of sequence {s}, step {step}");
                Assert.That(RelativeError(batched.Logits[step][s], alone.Logits[step][0].Select(v => (double)v).ToArray()), Is.LessThan(1e-4),
                    $"logits of sequence {s}, step {step}");
            }
        }
    }

    [Test]
    public void CpuDecodeRunsDirectlyAndGraphsAreUnsupported()
    {
        var tiny = TinyModel.Create(ConfigFor(MambaFamily.Mamba1), seed: 43);
        using var model = Build(tiny, new MambaModelOptions { UseCudaGraphs = true });
        using var session = model.CreateSession();
        session.Prefill(0, [1, 2]);
        session.Decode([3]);
        session.Decode([4]);
        Assert.That(session.DecodesWithGraph, Is.False);
        Assert.That(MambaGraph.IsSupported(model.Context), Is.False);
        var ex = Assert.Throws<MambaUnsupportedException>(() => MambaGraph.Capture(model.Context, () => { }));
        Assert.That(ex!.Message, Does.Contain("graph capture needs a CUDA context"));
    }

    [Test]
    public void CaptureOnCudaRecordsWithoutRunningAndReplays()
    {
        TestSupport.RequireCuda();
        using var ctx = new MambaContext(Device.Cuda(0));
        using var x = Tensor.Empty(ctx, DType.Float32, 2, 8);
        using var y = Tensor.Empty(ctx, DType.Float32, 2, 8);
        var input = Enumerable.Range(0, 16).Select(i => (float)i - 5).ToArray();
        x.CopyFrom<float>(input);
        y.CopyFrom<float>(Enumerable.Repeat(float.NaN, 16).ToArray());
        using var graph = MambaGraph.Capture(ctx, () => Kernels.Softmax(ctx, x, y));
        Assert.That(y.ToFloatArray().All(float.IsNaN), Is.True, "capture must not run the kernels");
        graph.Launch();
        var once = y.ToFloatArray();
        Assert.That(once.Take(8).Sum(), Is.EqualTo(1f).Within(1e-5));
        x.CopyFrom<float>(input.Select(v => -v).ToArray());
        graph.Launch();
        Assert.That(y.ToFloatArray()[0], Is.GreaterThan(once[0]), "a replay reads the tensors' current contents");
        graph.Dispose();
        Assert.Throws<ObjectDisposedException>(graph.Launch, "a freed graph is never passed to the library");
    }
}
