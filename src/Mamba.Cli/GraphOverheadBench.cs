using System.CommandLine;
using System.Globalization;
using Mamba.Loading;
using Mamba.Models;
using Mamba.Runtime;
using Mamba.Tensors;

namespace Mamba.Cli;

/// <summary><c>mamba bench-overhead</c>: what the managed layer adds to a CUDA-graph decode step. For random-weight
/// models in public checkpoint shapes it times greedy decode steps through <see cref="InferenceSession"/> and the
/// same native calls made directly (graph launch, sample, copy of the ids), and prints the ratio (target: under 3%).</summary>
internal static class GraphOverheadBench
{
    public static Command Create(TextWriter stdout)
    {
        var device = ModelOptions.DeviceOption();
        var shapes = new Option<string>("--shapes") { Description = $"Comma-separated model shapes ({string.Join(", ", ModelShapes.Names)})", DefaultValueFactory = _ => "mamba-130m,mamba2-130m" };
        var dtype = new Option<string>("--dtype") { Description = "Weight dtype: f32, f16 or bf16", DefaultValueFactory = _ => "f32" };
        var batch = new Option<int>("--batch") { Description = "Batch size", DefaultValueFactory = _ => 1 };
        var steps = new Option<int>("--steps") { Description = "Steps per timed round (the best of 5 rounds is reported)", DefaultValueFactory = _ => 200 };
        var command = new Command("bench-overhead", "Time the managed decode step against the same native calls (CUDA graphs; the managed share should be under 3%)")
        {
            device, shapes, dtype, batch, steps,
        };
        command.SetAction(parse =>
        {
            var dev = parse.GetValue(device) is { } d ? Device.Parse(d) : Device.Default;
            var weights = ModelOptions.ParseDType(parse.GetValue(dtype)!, "--dtype");
            var shapeList = ModelOptions.Split(parse.GetValue(shapes)!);
            foreach (var s in shapeList)
            {
                _ = ModelShapes.Get(s); // unknown names fail before any work
            }
            var batchSize = parse.GetValue(batch);
            var stepCount = parse.GetValue(steps);
            if (batchSize < 1 || stepCount < 1)
            {
                throw new ArgumentException("--batch and --steps must be at least 1");
            }
            using var context = new MambaContext(dev);
            if (!MambaGraph.IsSupported(context))
            {
                throw new ArgumentException($"bench-overhead measures CUDA-graph decode; device {dev} cannot capture graphs");
            }
            stdout.WriteLine("| shape | weights | batch | managed µs/step | native µs/step | managed overhead |");
            stdout.WriteLine("|---|---|---:|---:|---:|---:|");
            foreach (var shape in shapeList)
            {
                var config = ModelShapes.Get(shape);
                using var checkpoint = RandomCheckpoint.Create(config, weights, seed: 1);
                using var model = MambaModel.Create(config, checkpoint, new MambaModelOptions { Device = dev }, context);
                using var session = model.CreateSession(batchSize);
                for (var b = 0; b < batchSize; b++)
                {
                    session.Prefill(b, [11 + b, 12 + b, 13 + b]);
                }
                var (managed, native) = DecodeOverhead.Measure(session, stepCount);
                stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"| {shape} | {weights} | {batchSize} | {managed:F1} | {native:F1} | {100 * (managed / native - 1):F2}% |"));
            }
            return 0;
        });
        return command;
    }
}
