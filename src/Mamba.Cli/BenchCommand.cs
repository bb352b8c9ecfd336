using System.CommandLine;
using System.Globalization;
using System.Text;
using Mamba.Models;
using Mamba.Runtime;
using Mamba.Tensors;

namespace Mamba.Cli;

/// <summary><c>mamba bench</c>: end-to-end decode and prefill of random-weight models in the public checkpoints'
/// shapes on the chosen device, as a table, and optionally JSON and Markdown files.</summary>
internal static class BenchCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var device = ModelOptions.DeviceOption();
        var threads = ModelOptions.Threads();
        var shapes = new Option<string>("--shapes") { Description = $"Comma-separated model shapes ({string.Join(", ", ModelShapes.Names)})", DefaultValueFactory = _ => "mamba-130m,mamba2-130m" };
        var dtypes = new Option<string>("--dtypes") { Description = "Comma-separated weight dtypes: f32, f16, bf16", DefaultValueFactory = _ => "f32,bf16" };
        var activations = new Option<string>("--activations")
        {
            Description = "Activation dtype: auto (on CUDA each run's weight dtype, as mamba_ssm computes; on the CPU float32, as llama.cpp does), f32, f16 or bf16",
            DefaultValueFactory = _ => "auto",
        };
        var prefillChunk = new Option<int>("--prefill-chunk")
        {
            Description = "Tokens per prefill piece (MambaModelOptions.PrefillChunkSize; 0: the default)",
            DefaultValueFactory = _ => 0,
        };
        var prefillBatchTokens = new Option<int>("--prefill-batch-tokens")
        {
            Description = "Most tokens of one piece of a batch's prefill over all of its sequences (MambaModelOptions.PrefillBatchTokens; 0: the default)",
            DefaultValueFactory = _ => 0,
        };
        var batches = new Option<string>("--batch") { Description = "Comma-separated batch sizes", DefaultValueFactory = _ => "1" };
        var steps = new Option<int>("--steps") { Description = "Timed decode steps (the median is reported)", DefaultValueFactory = _ => 32 };
        var prefill = new Option<int>("--prefill") { Description = "Prompt length of the prefill measurement (0: skip)", DefaultValueFactory = _ => 512 };
        var json = new Option<string?>("--json") { Description = "Write the results as JSON to this file" };
        var markdown = new Option<string?>("--markdown") { Description = "Write the results as a Markdown table to this file" };
        var plots = new Option<string?>("--plots") { Description = $"Write PNG charts into this directory: {BenchPlots.RooflineFile} (decode weight bandwidth vs the measured bandwidth), {BenchPlots.ThroughputFile} (tokens/s vs batch size) and, with --profile, {BenchPlots.ProfileFile}" };
        var profile = new Option<int>("--profile") { Description = "Also profile one prefill of this many tokens per shape and dtype: time and share of each op (0: skip)", DefaultValueFactory = _ => 0 };
        var profileBatch = new Option<int>("--profile-batch") { Description = "Sequences prefilled together in the --profile prefill, each with a prompt of its own", DefaultValueFactory = _ => 1 };
        var profileTiming = new Option<string>("--profile-timing")
        {
            Description = "How --profile times each op: 'events' (its span on the device between events recorded around it, nothing synchronized between ops) or 'sync' (its wall time with the device synchronized before and after)",
            DefaultValueFactory = _ => "events",
        };
        var fromJson = new Option<string?>("--from-json") { Description = "Do not measure: read the results of an earlier --json run and write the table, --markdown and --plots from them" };
        var command = new Command("bench", "Decode and prefill speed of random-weight models in public checkpoint shapes, against measured memory bandwidth")
        {
            device, threads, shapes, dtypes, activations, batches, steps, prefill, prefillChunk, prefillBatchTokens, json, markdown, plots, profile, profileBatch, profileTiming,
            fromJson,
        };
        command.SetAction(parse =>
        {
            var saved = parse.GetValue(fromJson);
            if (saved is not null)
            {
                // A report is only redrawn: an option that shapes a measurement would be silently ignored.
                Option[] measuring = [device, threads, shapes, dtypes, activations, batches, steps, prefill, prefillChunk, prefillBatchTokens, profile, profileBatch, profileTiming];
                if (measuring.FirstOrDefault(o => parse.GetResult(o) is { Implicit: false }) is { } given)
                {
                    throw new ArgumentException($"--from-json measures nothing: {given.Name} cannot be combined with it");
                }
            }
            var report = saved is not null ? BenchReport.Load(saved) : Measure(parse, stdout, device, threads, shapes, dtypes, activations, batches, steps, prefill, prefillChunk,
                prefillBatchTokens, profile, profileBatch, profileTiming);
            var table = Table(report);
            if (saved is not null)
            {
                stdout.Write(table);
            }
            if (parse.GetValue(markdown) is { } md)
            {
                File.WriteAllText(md, table);
            }
            if (parse.GetValue(json) is { } js)
            {
                File.WriteAllText(js, report.ToJson());
            }
            if (parse.GetValue(plots) is { } dir)
            {
                if (BenchPlots.MissingFontsWarning(BenchPlots.InstalledFontFamilies()) is { } warning)
                {
                    stderr.WriteLine($"mamba: warning: {warning}");
                }
                foreach (var path in BenchPlots.Write(dir, report))
                {
                    stdout.WriteLine($"wrote {path}");
                }
            }
            return 0;
        });
        return command;
    }

    private static BenchReport Measure(ParseResult parse, TextWriter stdout, Option<string?> device, Option<int> threads, Option<string> shapes,
        Option<string> dtypes, Option<string> activations, Option<string> batches, Option<int> steps, Option<int> prefill,
        Option<int> prefillChunk, Option<int> prefillBatchTokens, Option<int> profile, Option<int> profileBatch, Option<string> profileTiming)
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
        var chunk = parse.GetValue(prefillChunk);
        if (chunk < 0)
        {
            throw new ArgumentException("--prefill-chunk must not be negative");
        }
        var batchTokens = parse.GetValue(prefillBatchTokens);
        if (batchTokens < 0)
        {
            throw new ArgumentException("--prefill-batch-tokens must not be negative");
        }
        var profileTokens = parse.GetValue(profile);
        if (profileTokens < 0)
        {
            throw new ArgumentException("--profile must not be negative");
        }
        var profileSequences = parse.GetValue(profileBatch);
        if (profileSequences < 1)
        {
            throw new ArgumentException("--profile-batch must be at least 1");
        }
        var timing = parse.GetValue(profileTiming)?.Trim();
        if (timing is not ("events" or "sync"))
        {
            throw new ArgumentException($"--profile-timing must be 'events' or 'sync', not '{timing}'");
        }
        var shapeList = ModelOptions.Split(parse.GetValue(shapes)!);
        foreach (var s in shapeList)
        {
            _ = ModelShapes.Get(s); // unknown names fail before any work
        }
        var dtypeList = ModelOptions.Split(parse.GetValue(dtypes)!).Select(t => ModelOptions.ParseDType(t)).ToList();
        var fixedActivations = ModelOptions.ParseActivations(parse.GetValue(activations));
        var batchList = ModelOptions.Split(parse.GetValue(batches)!).Select(b => int.TryParse(b, CultureInfo.InvariantCulture, out var n) && n > 0
            ? n : throw new ArgumentException($"--batch: '{b}' is not a positive integer")).ToList();
        var threadCount = parse.GetValue(threads);
        var dev = parse.GetValue(device) is { } d ? Device.Parse(d) : Device.Default;
        using var context = new MambaContext(dev, threadCount);
        var bandwidth = ModelBench.MeasureBandwidth(context, threadCount);
        var kind = dev.Type == DeviceType.Cpu ? "read" : "copy";
        stdout.WriteLine($"device {dev}, memory {kind} bandwidth {bandwidth / 1e9:F1} GB/s");
        var results = new List<ModelBenchResult>();
        var profiles = new List<PrefillProfile>();
        foreach (var shape in shapeList)
        {
            foreach (var dtype in dtypeList)
            {
                using var bench = BenchModel.Create(context, shape, dtype, fixedActivations, chunk, batchTokens, threadCount);
                foreach (var batch in batchList)
                {
                    var r = ModelBench.Run(context, bench, batch, stepCount, prefillTokens, bandwidth);
                    results.Add(r);
                    stdout.WriteLine(Row(r));
                }
                if (profileTokens > 0)
                {
                    var p = ModelBench.Profile(context, bench, profileTokens, profileSequences, deviceEvents: timing == "events");
                    profiles.Add(p);
                    stdout.Write(ProfileTable(p));
                }
            }
        }
        return new BenchReport(dev.ToString(), bandwidth, kind, results, profiles.Count > 0 ? profiles : null);
    }

    private static string Row(ModelBenchResult r) => string.Create(CultureInfo.InvariantCulture,
        $"| {r.Shape} | {r.DType} | {r.Activations ?? nameof(DType.Float32)} | {r.Batch} | {r.WeightBytes / 1e6:F0} | {r.DecodeMs:F3} | {(r.SampledDecodeMs > 0 ? $"{r.SampledDecodeMs:F3}" : "-")} | {r.DecodeTokensPerSecond:F1} | {r.BoundMs:F3} | {r.PercentOfBound:F0}% | {(r.PrefillTokens > 0 ? $"{r.PrefillMs:F1}" : "-")} | {(r.PrefillTokens > 0 ? $"{r.PrefillTokensPerSecond:F0}" : "-")} | {(r.PrefillChunk > 0 ? r.PrefillChunk.ToString(CultureInfo.InvariantCulture) : "-")} |");

    private static string Table(BenchReport report)
    {
        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture, $"Device {report.Device}; memory {report.BandwidthKind} bandwidth {report.BandwidthBytesPerSecond / 1e9:F1} GB/s (measured in the same run).");
        sb.AppendLine();
        sb.AppendLine("| shape | weights | activations | batch | weight MB | decode ms/step | sampled ms/step (top-p 0.9) | decode tok/s | floor ms (weights / bandwidth) | % of floor | prefill ms (batch x prompt) | prefill tok/s | prefill piece |");
        sb.AppendLine("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var r in report.Results)
        {
            sb.AppendLine(Row(r));
        }
        foreach (var p in report.Profiles ?? [])
        {
            sb.AppendLine();
            sb.Append(ProfileTable(p));
        }
        return sb.ToString();
    }

    /// <summary>The ops of one profiled prefill, largest share first.</summary>
    internal static string ProfileTable(PrefillProfile p)
    {
        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture,
            $"Prefill profile: {p.Shape} {p.DType} weights, {p.Activations ?? nameof(DType.Float32)} activations, {(p.Batch > 1 ? $"{p.Batch} x " : "")}{p.Tokens} tokens on {p.Device}: {p.TotalMs:F1} ms, {p.TokensPerSecond:F0} tok/s ({(p.Timing == "events" ? "each op's span on the device between events recorded around it; nothing synchronized between ops" : "each op synchronized, so slower than an unprofiled prefill")}).");
        sb.AppendLine();
        sb.AppendLine("| op | calls | ms | % of prefill |");
        sb.AppendLine("|---|---:|---:|---:|");
        foreach (var o in p.Ops.OrderByDescending(o => o.Milliseconds))
        {
            sb.AppendLine(CultureInfo.InvariantCulture, $"| {o.Op} | {o.Calls} | {o.Milliseconds:F3} | {o.Percent:F1}% |");
        }
        return sb.ToString();
    }
}
