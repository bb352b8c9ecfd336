using Mamba.Tensors;

namespace Mamba.Models;

/// <summary>How well a model predicts a text: the log-probability of each token given the ones before it.</summary>
/// <param name="TokenCount">Tokens scored (all but the first, which has no context).</param>
/// <param name="MeanLogProb">Mean natural-log probability per scored token.</param>
/// <param name="Logits">With <c>keepLogits</c>, the float32 logits of every position, row-major (len, vocab).</param>
public sealed record ScoreResult(int TokenCount, double MeanLogProb, float[]? Logits)
{
    /// <summary>exp(-mean log-probability).</summary>
    public double Perplexity => Math.Exp(-MeanLogProb);
}

public sealed partial class MambaModel
{
    /// <summary>Scores <paramref name="tokens"/> (at least two) in one prefill, piece by piece.</summary>
    public ScoreResult Score(IReadOnlyList<int> tokens, bool keepLogits = false, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        if (tokens.Count < 2)
        {
            throw new ArgumentException($"scoring needs at least 2 tokens; got {tokens.Count}", nameof(tokens));
        }
        EnterExclusive();
        try
        {
            var session = SessionFor(1);
            var vocab = Config.VocabSize;
            var ids = tokens as int[] ?? [.. tokens];
            var all = keepLogits ? new float[(long)ids.Length * vocab] : null;
            double sum = 0;
            float[]? chunk = null;
            session.Prefill(0, ids, (start, logits) =>
            {
                var rows = (int)logits.Shape[0];
                chunk ??= new float[logits.ElementCount];
                var span = chunk.AsSpan(0, rows * vocab);
                logits.CopyTo(span);
                if (all is not null)
                {
                    span.CopyTo(all.AsSpan(start * vocab, rows * vocab));
                }
                for (var r = 0; r < rows; r++)
                {
                    var position = start + r;
                    if (position + 1 < ids.Length)
                    {
                        sum += LogSoftmaxAt(span.Slice(r * vocab, vocab), ids[position + 1]);
                    }
                }
            }, cancellationToken);
            return new ScoreResult(ids.Length - 1, sum / (ids.Length - 1), all);
        }
        finally
        {
            ExitExclusive();
        }
    }

    private static double LogSoftmaxAt(ReadOnlySpan<float> row, int index)
    {
        double max = float.NegativeInfinity;
        foreach (var v in row)
        {
            max = Math.Max(max, v);
        }
        double sum = 0;
        foreach (var v in row)
        {
            sum += Math.Exp(v - max);
        }
        return row[index] - max - Math.Log(sum);
    }
}
