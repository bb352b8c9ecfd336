using System.Globalization;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace Mamba.Benchmarks;

/// <summary>Tokens per second of a model benchmark: the tokens one invocation processes (its "Batch" parameter for a
/// decode step, "Batch" times "Tokens" for a prefill of a batch of prompts) over the mean time of an invocation.</summary>
public sealed class TokenThroughputColumn : IColumn
{
    public string Id => nameof(TokenThroughputColumn);
    public string ColumnName => "Tokens/s";
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => 0;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => "Tokens processed per second (tokens per invocation / mean time)";

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        var meanNs = summary[benchmarkCase]?.ResultStatistics?.Mean;
        var tokens = TokensPerInvocation(benchmarkCase);
        return meanNs is > 0 && tokens > 0 ? (tokens * 1e9 / meanNs.Value).ToString("N1", CultureInfo.InvariantCulture) : "-";
    }

    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;

    public bool IsAvailable(Summary summary) => true;

    private static long TokensPerInvocation(BenchmarkCase benchmarkCase)
    {
        long tokens = 1;
        var found = false;
        foreach (var p in benchmarkCase.Parameters.Items)
        {
            if (p.Name is "Batch" or "Tokens" && p.Value is int n)
            {
                tokens *= n;
                found = true;
            }
        }
        return found ? tokens : 0;
    }
}

/// <summary>The default configuration plus <see cref="TokenThroughputColumn"/>.</summary>
public sealed class TokenThroughputConfig : ManualConfig
{
    public TokenThroughputConfig() => AddColumn(new TokenThroughputColumn());
}
