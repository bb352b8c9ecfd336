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

    /// <summary>A tiny model's 40-token prefill, run once without a profiler (its logits kept) and again on demand.</summary>
    private sealed class Prefill : IDisposable
    {
        private readonly MambaModel _model;
        private readonly InferenceSession _session;
        private readonly int[] _prompt;

        public Prefill(Device device, MambaFamily family, int seed)
        {
            Context = TestSupport.ContextFor(device);
            Config = family == MambaFamily.Mamba1 ? TinyModel.Mamba1Config() : TinyModel.Mamba2Config();
            var tiny = TinyModel.Create(Config, seed);
            _model = MambaModel.Create(Config, tiny.Checkpoint, new MambaModelOptions { Device = device }, Context);
            _session = _model.CreateSession(1);
            var rng = new Random(seed + 2);
            _prompt = Enumerable.Range(0, 40).Select(_ => rng.Next(Config.VocabSize)).ToArray();
            Plain = Run();
        }

        public MambaContext Context { get; }

        public MambaConfig Config { get; }

        /// <summary>The logits of the unprofiled prefill.</summary>
        public float[] Plain { get; }

        /// <summary>Prefills the prompt from a reset state, returns its logits and sets <paramref name="wallMs"/>.</summary>
        public float[] Run(out double wallMs)
        {
            _session.Reset(0);
            var sw = System.Diagnostics.Stopwatch.StartNew();
            _session.Prefill(0, _prompt);
            Context.Synchronize();
            wallMs = sw.Elapsed.TotalMilliseconds;
            var logits = Enumerable.Repeat(float.NaN, Config.VocabSize).ToArray();
            _session.CopyLogits(0, logits);
            return logits;
        }

        public float[] Run() => Run(out _);

        /// <summary>Checks the op names, their order and calls, and that every op took time.</summary>
        public void AssertEveryOp(IReadOnlyList<OpTime> ops)
        {
            var expected = Config.Family == MambaFamily.Mamba1 ? Mamba1Ops : Mamba2Ops;
            Assert.That(ops.Select(o => o.Op), Is.EqualTo(expected), "every op of the layer, in the order it ran");
            foreach (var op in ops)
            {
                Assert.That(op.Calls, Is.EqualTo(CallsPerPrefill(op.Op)), op.Op);
                Assert.That(op.Milliseconds, Is.GreaterThan(0), op.Op);
            }
        }

        public int CallsPerPrefill(string op) => op is "embedding" or "final_norm" or "lm_head" ? 1 : Config.NumLayers;

        public void Dispose()
        {
            _session.Dispose();
            _model.Dispose();
            Context.Dispose();
        }
    }

    [TestCaseSource(nameof(FamiliesOnDevices))]
    public void ProfiledPrefillTimesEveryOpAndLeavesTheLogitsUnchanged(Device device, MambaFamily family)
    {
        using var prefill = new Prefill(device, family, seed: 41);
        var timings = new OpTimings();
        prefill.Context.Profiler = timings;
        var profiled = prefill.Run(out var wallMs);
        prefill.Context.Profiler = null;

        Assert.That(profiled, Is.EqualTo(prefill.Plain), "profiling must not change the results");
        Assert.That(prefill.Plain.All(float.IsFinite), Is.True);
        prefill.AssertEveryOp(timings.Ops);
        // The op times are disjoint parts of the prefill, so they cannot add up to more than its wall time.
        Assert.That(timings.TotalMilliseconds, Is.LessThanOrEqualTo(wallMs));

        // A prefill without a profiler records nothing more.
        prefill.Run();
        Assert.That(timings.Ops.Sum(o => o.Calls), Is.EqualTo(timings.Ops.Sum(o => prefill.CallsPerPrefill(o.Op))));
    }

    [TestCaseSource(nameof(FamiliesOnDevices))]
    public void DeviceEventsTimeEveryOpWithoutChangingTheLogits(Device device, MambaFamily family)
    {
        using var prefill = new Prefill(device, family, seed: 47);
        using var timings = new DeviceOpTimings(prefill.Context);
        prefill.Context.Profiler = timings;
        var profiled = prefill.Run(out var wallMs);
        prefill.Context.Profiler = null;

        Assert.That(profiled, Is.EqualTo(prefill.Plain), "profiling must not change the results");
        prefill.AssertEveryOp(timings.Ops);
        // The spans follow one another on the stream, so they add up to at most the wall time.
        Assert.That(timings.TotalMilliseconds, Is.LessThanOrEqualTo(wallMs));

        // Cleared, the profiler holds nothing; a prefill without it set adds nothing.
        timings.Clear();
        prefill.Run();
        Assert.That(timings.Ops, Is.Empty);
    }

    [Test]
    public void DeviceEventsOfOneContextRefuseTheOpsOfAnother()
    {
        using var first = new MambaContext(Device.Cpu);
        using var second = new MambaContext(Device.Cpu);
        using var timings = new DeviceOpTimings(first);
        second.Profiler = timings;
        var error = Assert.Throws<InvalidOperationException>(() =>
        {
            using (second.Op("in_proj"))
            {
            }
        });
        Assert.That(error!.Message, Does.Contain("op 'in_proj'").And.Contain("another context"));
        first.Profiler = timings;
        using (first.Op("in_proj"))
        {
        }
        Assert.That(timings.Ops.Single().Calls, Is.EqualTo(1));
    }
}
