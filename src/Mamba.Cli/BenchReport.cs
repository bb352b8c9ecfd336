using System.Text.Json;
using System.Text.Json.Serialization;

namespace Mamba.Cli;

/// <summary>One op's share of a profiled prefill.</summary>
internal sealed record OpShare(string Op, double Milliseconds, int Calls, double Percent);

/// <summary>Where the time of one prefill goes, op by op. <paramref name="Timing"/> "events": each op's span on the device
/// between events recorded around it, nothing synchronized between ops; "sync" (or null, in reports written before it
/// was recorded): each op's wall time with the device synchronized around it. "other" is the remainder of the wall
/// time. <paramref name="Activations"/> is null in reports written before it was recorded, whose activations were
/// always float32. <paramref name="Batch"/> sequences of <paramref name="Tokens"/> tokens each were prefilled together
/// (1 in reports written before it was recorded).</summary>
internal sealed record PrefillProfile(string Shape, string DType, string Device, int Tokens, double TotalMs, double TokensPerSecond, List<OpShare> Ops,
    string? Activations = null, int Batch = 1, string? Timing = null);

/// <summary>Everything a bench run measured, as written to and read from <c>--json</c>.</summary>
internal sealed record BenchReport(
    [property: JsonPropertyName("device")] string Device,
    [property: JsonPropertyName("bandwidthBytesPerSecond")] double BandwidthBytesPerSecond,
    [property: JsonPropertyName("bandwidthKind")] string BandwidthKind,
    [property: JsonPropertyName("results")] List<ModelBenchResult> Results,
    [property: JsonPropertyName("profiles")] List<PrefillProfile>? Profiles = null)
{
    private static readonly JsonSerializerOptions Options = new() { WriteIndented = true, PropertyNameCaseInsensitive = true };

    public string ToJson() => JsonSerializer.Serialize(this, Options);

    /// <summary>Reads a report written by <c>mamba bench --json</c>; a missing or malformed file is an <see cref="ArgumentException"/>.</summary>
    public static BenchReport Load(string path)
    {
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new ArgumentException($"--from-json: cannot read '{path}': {e.Message}", e);
        }
        BenchReport? report;
        try
        {
            report = JsonSerializer.Deserialize<BenchReport>(text, Options);
        }
        catch (JsonException e)
        {
            throw new ArgumentException($"--from-json: '{path}' is not a bench report: {e.Message}", e);
        }
        if (report is null || report.Results is null || report.Device is null || !(report.BandwidthBytesPerSecond > 0))
        {
            throw new ArgumentException($"--from-json: '{path}' is not a bench report (needs device, bandwidthBytesPerSecond and results)");
        }
        // Every row is drawn and divided by: one without its names or with a zero time would print and plot garbage.
        for (var i = 0; i < report.Results.Count; i++)
        {
            if (report.Results[i] is not { Shape: not null, DType: not null, Batch: > 0, WeightBytes: > 0, DecodeMs: > 0, DecodeTokensPerSecond: > 0, PrefillTokens: >= 0 } r
                || (r.PrefillTokens > 0 && !(r.PrefillTokensPerSecond > 0)))
            {
                throw new ArgumentException($"--from-json: '{path}': results[{i}] is not a bench result (needs Shape, DType, a positive Batch, WeightBytes, DecodeMs and DecodeTokensPerSecond)");
            }
        }
        for (var i = 0; i < (report.Profiles?.Count ?? 0); i++)
        {
            if (report.Profiles![i] is not { Shape: not null, DType: not null, Device: not null, Tokens: > 0, Batch: > 0, TotalMs: > 0, Ops: not null } p
                || p.Ops.Any(o => o?.Op is null))
            {
                throw new ArgumentException($"--from-json: '{path}': profiles[{i}] is not a prefill profile (needs Shape, DType, Device, positive Tokens, Batch (1 when absent) and TotalMs, and named Ops)");
            }
        }
        return report with { BandwidthKind = report.BandwidthKind ?? "copy" };
    }
}
