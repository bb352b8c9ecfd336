using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Mamba.Models;
using Mamba.Runtime;
using Mamba.Tensors;

namespace Mamba.Cli;

/// <summary><c>mamba bench</c>: end-to-end decode and prefill of random-weight models in the public checkpoints'
/// shapes on the chosen device, as a table, and optionally JSON and Markdown files.</summary>
internal static class BenchCommand
{
    public static Command Create(TextWriter stdout)
    {
        var device = ModelOptions.DeviceOption();
        var threads = ModelOptions.Threads();
        var shapes = new Option<string>("--shapes") { Description = $"Comma-separated model shapes ({string.Join(", ", ModelShapes.Names)})", DefaultValueFactory = _ => "mamba-130m,mamba2-130m" };
        var dtypes = new Option<string>("--dtypes") { Description = "Comma-separated weight dtypes: f32, f16, bf16", DefaultValueFactory = _ => "f32,bf16" };
        var batches = new Option<string>("--batch") { Description = "Comma-separated batch sizes", DefaultValueFactory = _ => "1" };
        var steps = new Option<int>("--steps") { Description = "Timed decode steps (the median is reported)", DefaultValueFactory = _ => 32 };
        var prefill = new Option<int>("--prefill") { Description = "Prompt length of the prefill measurement (0: skip)", DefaultValueFactory = _ => 512 };
        var json = new Option<string?>("--json") { Description = "Write the results as JSON to this file" };
        var markdown = new Option<string?>("--markdown") { Description = "Write the results as a Markdown table to this file" };
        var command = new Command("bench", "Decode and prefill speed of random-weight models in public checkpoint shapes, against measured memory bandwidth")
        {
            device, threads, shapes, dtypes, batches, steps, prefill, json, markdown,
        };
        command.SetAction(parse =>
        {
            var stepCount = parse.GetValue(steps);
            if (stepCount < 1)
            {
                throw new ArgumentException("--steps must be at least 1");
            }
            var prefillTokens = parse.GetValue(prefill);
            if (prefillTokens < 0)
            {
                throw new ArgumentException("--prefill must not be negative");
            }
            var shapeList = Split(parse.GetValue(shapes)!);
            foreach (var s in shapeList)
            {
                _ = ModelShapes.Get(s); // unknown names fail before any work
            }
            var dtypeList = Split(parse.GetValue(dtypes)!).Select(ParseDType).ToList();
            var batchList = Split(parse.GetValue(batches)!).Select(b => int.TryParse(b, CultureInfo.InvariantCulture, out var n) && n > 0
                ? n : throw new ArgumentException($"--batch: '{b}' is not a positive integer")).ToList();
            var threadCount = parse.GetValue(threads);
            var dev = parse.GetValue(device) is { } d ? Device.Parse(d) : Device.Default;
            using var context = new MambaContext(dev, threadCount);
            var bandwidth = ModelBench.MeasureBandwidth(context, threadCount);
            var kind = dev.Type == DeviceType.Cpu ? "read" : "copy";
            stdout.WriteLine($"device {dev}, memory {kind} bandwidth {bandwidth / 1e9:F1} GB/s");
            var results = new List<ModelBenchResult>();
            foreach (var shape in shapeList)
            {
                foreach (var dtype in dtypeList)
                {
                    foreach (var batch in batchList)
                    {
                        var r = ModelBench.Run(context, shape, dtype, batch, stepCount, prefillTokens, bandwidth, threadCount);
                        results.Add(r);
                        stdout.WriteLine(Row(r));
                    }
                }
            }
            var table = Table(dev, bandwidth, kind, results);
            if (parse.GetValue(markdown) is { } md)
            {
                File.WriteAllText(md, table);
            }
            if (parse.GetValue(json) is { } js)
            {
                File.WriteAllText(js, JsonSerializer.Serialize(new { device = dev.ToString(), bandwidthBytesPerSecond = bandwidth, bandwidthKind = kind, results },
                    new JsonSerializerOptions { WriteIndented = true }));
            }
            return 0;
        });
        return command;
    }

    private static string[] Split(string text) => text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    private static DType ParseDType(string text) => text.ToLowerInvariant() switch
    {
        "f32" or "float32" or "fp32" => DType.Float32,
        "f16" or "float16" or "fp16" => DType.Float16,
        "bf16" or "bfloat16" => DType.BFloat16,
        _ => throw new ArgumentException($"--dtypes: unknown dtype '{text}' (f32, f16, bf16)"),
    };

    private static string Row(ModelBenchResult r) => string.Create(CultureInfo.InvariantCulture,
        $"| {r.Shape} | {r.DType} | {r.Batch} | {r.WeightBytes / 1e6:F0} | {r.DecodeMs:F3} | {r.DecodeTokensPerSecond:F1} | {r.BoundMs:F3} | {r.PercentOfBound:F0}% | {(r.PrefillTokens > 0 ? $"{r.PrefillTokensPerSecond:F0}" : "-")} |");

    private static string Table(Device device, double bandwidth, string kind, IEnumerable<ModelBenchResult> results)
    {
        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture, $"Device {device}; memory {kind} bandwidth {bandwidth / 1e9:F1} GB/s (measured in the same run).");
        sb.AppendLine();
        sb.AppendLine("| shape | weights | batch | weight MB | decode ms/step | decode tok/s | floor ms (weights / bandwidth) | % of floor | prefill tok/s |");
        sb.AppendLine("|---|---|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var r in results)
        {
            sb.AppendLine(Row(r));
        }
        return sb.ToString();
    }
}
