using Mamba.Models;
using Mamba.Runtime;

namespace Mamba.Tests.Models;

[TestFixture]
public class OpProfilerTests
{
    private static readonly string[] Mamba1Ops = ["embedding", "rmsnorm", "in_proj", "conv1d", "x_proj", "dt_proj", "selective_scan", "out_proj", "final_norm", "lm_head"];
    private static readonly string[] Mamba2Ops = ["embedding", "rmsnorm", "in_proj", "conv1d", "ssd", "gated_rmsnorm", "out_proj", "final_norm", "lm_head"];

    private static IEnumerable<TestCaseData> FamiliesOnDevices()
    {
        foreach (var d in TestSupport.Devices())
        {
            var device = (Device)d.Arguments[0]!;
            foreach (var family in new[] { MambaFamily.Mamba1, MambaFamily.Mamba2 })
            {
                var c = new TestCaseData(device, family).SetArgDisplayNames(d.TestName ?? device.ToString(), family.ToString());
                if (device.Type == DeviceType.Cuda)
                {
                    c.SetCategory(TestSupport.Gpu);
                }
                yield return c;
            }
        }
    }

    [TestCaseSource(nameof(FamiliesOnDevices))]
    public void ProfiledPrefillTimesEveryOpAndLeavesTheLogitsUnchanged(Device device, MambaFamily family)
    {
        using var context = TestSupport.ContextFor(device);
        var config = family == MambaFamily.Mamba1 ? TinyModel.Mamba1Config() : TinyModel.Mamba2Config();
        var tiny = TinyModel.Create(config, seed: 41);
        using var model = MambaModel.Create(config, tiny.Checkpoint, new MambaModelOptions { Device = device }, context);
        using var session = model.CreateSession(1);
        var rng = new Random(43);
        var prompt = Enumerable.Range(0, 40).Select(_ => rng.Next(config.VocabSize)).ToArray();

        var plain = Enumerable.Repeat(float.NaN, config.VocabSize).ToArray();
        session.Prefill(0, prompt);
        session.CopyLogits(0, plain);

        session.Reset(0);
        var timings = new OpTimings();
        context.Profiler = timings;
        var sw = System.Diagnostics.Stopwatch.StartNew();
        session.Prefill(0, prompt);
        var wallMs = sw.Elapsed.TotalMilliseconds;
        context.Profiler = null;
        var profiled = Enumerable.Repeat(float.NaN, config.VocabSize).ToArray();
        session.CopyLogits(0, profiled);

        Assert.That(profiled, Is.EqualTo(plain), "profiling must not change the results");
        Assert.That(plain.All(float.IsFinite), Is.True);
        var expected = family == MambaFamily.Mamba1 ? Mamba1Ops : Mamba2Ops;
        Assert.That(timings.Ops.Select(o => o.Op), Is.EqualTo(expected), "every op of the layer, in the order it ran");
        foreach (var op in timings.Ops)
        {
            var perModel = op.Op is "embedding" or "final_norm" or "lm_head" ? 1 : config.NumLayers;
            Assert.That(op.Calls, Is.EqualTo(perModel), op.Op);
            Assert.That(op.Milliseconds, Is.GreaterThan(0), op.Op);
        }
        // The op times are disjoint parts of the prefill, so they cannot add up to more than its wall time.
        Assert.That(timings.TotalMilliseconds, Is.LessThanOrEqualTo(wallMs));

        // A session without a profiler records nothing more.
        session.Reset(0);
        session.Prefill(0, prompt);
        Assert.That(timings.Ops.Sum(o => o.Calls), Is.EqualTo(expected.Sum(op => op is "embedding" or "final_norm" or "lm_head" ? 1 : config.NumLayers)));
    }
}
