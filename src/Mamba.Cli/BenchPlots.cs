using System.Globalization;
using ScottPlot;

namespace Mamba.Cli;

/// <summary>
/// PNG charts of a bench run: decode weight bandwidth against the bandwidth measured in the same run (a
/// roofline for the memory-bound decode step), and tokens/s against batch size. Rendered with ScottPlot on
/// SkiaSharp's self-contained Linux native asset, so a machine with only the .NET runtime can draw them.
/// </summary>
internal static class BenchPlots
{
    public const string RooflineFile = "roofline.png";
    public const string ThroughputFile = "throughput.png";
    public const string ProfileFile = "prefill-profile.png";

    private const int Width = 1200;
    private const int Height = 750;

    /// <summary>Writes <see cref="RooflineFile"/> and <see cref="ThroughputFile"/> (and the prefill profile when
    /// there is one) into <paramref name="directory"/>, creating it; returns the paths written.</summary>
    public static IReadOnlyList<string> Write(string directory, BenchReport report)
    {
        try
        {
            Directory.CreateDirectory(directory);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException or ArgumentException)
        {
            throw new ArgumentException($"--plots: cannot create directory '{directory}': {e.Message}", e);
        }
        try
        {
            var written = new List<string>
            {
                Save(Roofline(report), Path.Combine(directory, RooflineFile)),
                Save(Throughput(report), Path.Combine(directory, ThroughputFile)),
            };
            if (report.Profiles is { Count: > 0 } profiles)
            {
                written.Add(Save(Profile(profiles), Path.Combine(directory, ProfileFile)));
            }
            return written;
        }
        catch (Exception e) when (e is DllNotFoundException or TypeInitializationException or EntryPointNotFoundException)
        {
            // libSkiaSharp missing, or not one for this platform: a clear line instead of a stack trace.
            throw new InvalidOperationException($"--plots: cannot draw charts, SkiaSharp's native library did not load: {e.GetBaseException().Message.Split('\n')[0].Trim()}", e);
        }
    }

    /// <summary>The warning to print before drawing, or null: with no font family installed (a bare server or
    /// container), SkiaSharp draws the charts without any text (no title, axis labels or legend).</summary>
    public static string? MissingFontsWarning(int fontFamilies) => fontFamilies > 0
        ? null
        : "--plots: no fonts found (SkiaSharp sees no font family), so the charts will have no text; write --json here and draw the charts on a machine with fonts with `mamba bench --from-json FILE --plots DIR`";

    /// <summary>The font families SkiaSharp can draw text with on this machine.</summary>
    public static int InstalledFontFamilies()
    {
        try
        {
            return SkiaSharp.SKFontManager.Default.FontFamilyCount;
        }
        catch (Exception e) when (e is DllNotFoundException or TypeInitializationException or EntryPointNotFoundException)
        {
            return 0;  // the native library did not load: Write reports that itself
        }
    }

    private static string Save(Plot plot, string path)
    {
        try
        {
            plot.SavePng(path, Width, Height);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ArgumentException($"--plots: cannot write '{path}': {e.Message}", e);
        }
        return path;
    }

    private static IEnumerable<IGrouping<string, ModelBenchResult>> Series(BenchReport report) =>
        report.Results.GroupBy(r => r.Activations is { } a && a != r.DType ? $"{r.Shape} {r.DType}/{a}" : $"{r.Shape} {r.DType}");

    /// <summary>Decode reads every weight once per step, so weight bytes / step time is the bandwidth a step
    /// achieves; the measured copy/read bandwidth is its ceiling.</summary>
    private static Plot Roofline(BenchReport report)
    {
        var plot = new Plot();
        var palette = new ScottPlot.Palettes.Category10();
        var i = 0;
        double maxBatch = 1;
        foreach (var series in Series(report))
        {
            var rows = series.OrderBy(r => r.Batch).ToArray();
            var xs = rows.Select(r => (double)r.Batch).ToArray();
            var ys = rows.Select(r => r.WeightBytes / (r.DecodeMs / 1e3) / 1e9).ToArray();
            var scatter = plot.Add.Scatter(xs, ys, palette.GetColor(i++));
            scatter.LegendText = $"{series.Key} decode";
            scatter.MarkerSize = 9;
            scatter.LineWidth = 2;
            maxBatch = Math.Max(maxBatch, xs.Max());
        }
        var ceiling = report.BandwidthBytesPerSecond / 1e9;
        var line = plot.Add.HorizontalLine(ceiling, 2, Colors.Black, LinePattern.Dashed);
        line.LegendText = string.Create(CultureInfo.InvariantCulture, $"measured {report.BandwidthKind} bandwidth {ceiling:F0} GB/s");
        plot.Title($"Decode: weight bytes per second vs measured bandwidth ({report.Device})");
        plot.XLabel("batch size");
        plot.YLabel("achieved weight bandwidth (GB/s)");
        plot.Axes.SetLimits(0, maxBatch * 1.1 + 0.5, 0, ceiling * 1.15);
        plot.ShowLegend(Alignment.LowerRight);
        return plot;
    }

    private static Plot Throughput(BenchReport report)
    {
        var plot = new Plot();
        var palette = new ScottPlot.Palettes.Category10();
        var i = 0;
        foreach (var series in Series(report))
        {
            var color = palette.GetColor(i++);
            var rows = series.OrderBy(r => r.Batch).ToArray();
            var decode = plot.Add.Scatter(rows.Select(r => (double)r.Batch).ToArray(), rows.Select(r => r.DecodeTokensPerSecond).ToArray(), color);
            decode.LegendText = $"{series.Key} decode";
            decode.MarkerSize = 9;
            decode.LineWidth = 2;
            var prefills = rows.Where(r => r.PrefillTokens > 0).ToArray();
            if (prefills.Length > 0)
            {
                // Prefill runs every sequence of the batch, each with a prompt of PrefillTokens, together.
                var prefill = plot.Add.Scatter(prefills.Select(r => (double)r.Batch).ToArray(), prefills.Select(r => r.PrefillTokensPerSecond).ToArray(), color);
                prefill.LegendText = $"{series.Key} prefill {prefills[0].PrefillTokens} tokens";
                prefill.LinePattern = LinePattern.Dashed;
                prefill.MarkerShape = MarkerShape.OpenSquare;
                prefill.MarkerSize = 9;
            }
        }
        plot.Title($"Tokens/s vs batch size ({report.Device})");
        plot.XLabel("batch size");
        plot.YLabel("tokens/s");
        plot.Axes.AutoScale();
        plot.Axes.SetLimitsY(0, plot.Axes.GetLimits().Top * 1.1);
        plot.ShowLegend(Alignment.UpperLeft);
        return plot;
    }

    /// <summary>One horizontal bar per op of each profiled prefill: its share of the prefill time.</summary>
    private static Plot Profile(IReadOnlyList<PrefillProfile> profiles)
    {
        var plot = new Plot();
        var palette = new ScottPlot.Palettes.Category10();
        var ops = profiles.SelectMany(p => p.Ops.Select(o => o.Op)).Distinct().ToArray();
        var groupWidth = profiles.Count + 1;
        var bars = new List<Bar>();
        for (var p = 0; p < profiles.Count; p++)
        {
            var color = palette.GetColor(p);
            foreach (var op in profiles[p].Ops)
            {
                var position = Array.IndexOf(ops, op.Op) * groupWidth + p;
                bars.Add(new Bar { Position = position, Value = op.Percent, FillColor = color, Orientation = Orientation.Horizontal });
            }
            plot.Legend.ManualItems.Add(new LegendItem { LabelText = $"{profiles[p].Shape} {profiles[p].DType} prefill {(profiles[p].Batch > 1 ? $"{profiles[p].Batch} x " : "")}{profiles[p].Tokens} tokens{(profiles[p].Timing == "events" ? ", device events" : "")}", FillColor = color });
        }
        plot.Add.Bars(bars);
        var ticks = ops.Select((op, k) => new Tick(k * groupWidth + (profiles.Count - 1) / 2.0, op)).ToArray();
        plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericManual(ticks);
        plot.Title("Share of prefill time per op");
        plot.XLabel("% of prefill");
        plot.Axes.AutoScale();
        plot.Axes.SetLimitsX(0, 100);
        plot.ShowLegend(Alignment.LowerRight);
        return plot;
    }
}
