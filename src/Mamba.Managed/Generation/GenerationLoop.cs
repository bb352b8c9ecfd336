using System.Diagnostics;
using Mamba.Models;
using Mamba.Ops;

namespace Mamba.Generation;

/// <summary>
/// Drives one generation over a batch of prompts: the prompts are prefilled together, then every step samples one
/// token per live sequence and feeds the batch back in a single decode. Sequences end on their own (stop token,
/// length, or <see cref="Finish"/>) while the others go on.
/// </summary>
internal sealed class GenerationLoop
{
    private readonly InferenceSession _session;
    private readonly IReadOnlyList<IReadOnlyList<int>> _prompts;
    private readonly GenerationOptions _options;
    private readonly SamplingParams _sampling;
    private readonly HashSet<int> _stopTokens;
    private readonly List<int>[] _generated;
    private readonly FinishReason[] _finish;
    private readonly int[] _sampled;
    private readonly int[] _fed;
    private readonly Stopwatch _prefillClock = new();
    private readonly Stopwatch _decodeClock = new();
    private int _step;
    private bool _needsDecode;

    public GenerationLoop(MambaModel model, IReadOnlyList<IReadOnlyList<int>> prompts, GenerationOptions options)
    {
        options.Validate();
        if (prompts.Count == 0)
        {
            throw new ArgumentException("at least one prompt is needed", nameof(prompts));
        }
        for (var i = 0; i < prompts.Count; i++)
        {
            if (prompts[i].Count == 0)
            {
                throw new ArgumentException($"prompt {i} is empty; a prompt needs at least one token", nameof(prompts));
            }
        }
        _prompts = prompts;
        _options = options;
        _sampling = options.ToSampling(options.Seed ?? (ulong)Random.Shared.NextInt64());
        _stopTokens = [.. options.StopTokens];
        if (options.StopAtEndOfSequence && model.Config.EosTokenId is int eos)
        {
            _stopTokens.Add(eos);
        }
        var batch = prompts.Count;
        _session = model.SessionFor(batch);
        _generated = Enumerable.Range(0, batch).Select(_ => new List<int>()).ToArray();
        _finish = new FinishReason[batch];
        _sampled = new int[batch];
        _fed = new int[batch];
        if (options.RepetitionPenalty != 1f)
        {
            _session.SetHistoryCapacity(prompts.Max(p => p.Count) + Math.Max(options.MaxNewTokens, 1));
        }
    }

    public int BatchSize => _prompts.Count;

    public IReadOnlyList<int> Generated(int sequence) => _generated[sequence];

    public FinishReason FinishReasonOf(int sequence) => _finish[sequence];

    public bool IsDone => _finish.All(f => f != FinishReason.None);

    public GenerationStats Stats => new(_prompts.Sum(p => p.Count), _generated.Sum(g => g.Count), _prefillClock.Elapsed, _decodeClock.Elapsed);

    public void Prefill(CancellationToken cancellationToken)
    {
        _prefillClock.Start();
        try
        {
            var prompts = _prompts.Select(p => (ReadOnlyMemory<int>)(p as int[] ?? [.. p])).ToArray();
            _session.Prefill(Enumerable.Range(0, BatchSize).ToArray(), prompts, cancellationToken);
            for (var b = 0; b < BatchSize; b++)
            {
                var prompt = prompts[b].Span;
                _session.AppendHistory(b, prompt);
                _fed[b] = prompt[^1];
                if (_options.MaxNewTokens == 0)
                {
                    _finish[b] = FinishReason.Length;
                }
            }
        }
        finally
        {
            _prefillClock.Stop();
        }
    }

    /// <summary>Draws the next token of every live sequence into <paramref name="emitted"/> (-1 for none).</summary>
    public void Step(Span<int> emitted, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        emitted.Fill(-1);
        if (IsDone)
        {
            return;
        }
        _decodeClock.Start();
        try
        {
            if (_needsDecode)
            {
                _session.Decode(_fed);
            }
            _session.Sample(_sampling, (ulong)_step, _sampled);
        }
        finally
        {
            _decodeClock.Stop();
        }
        _step++;
        for (var b = 0; b < BatchSize; b++)
        {
            if (_finish[b] != FinishReason.None)
            {
                continue;
            }
            var token = _sampled[b];
            if (_stopTokens.Contains(token))
            {
                _finish[b] = FinishReason.StopToken;
                continue;
            }
            emitted[b] = token;
            _generated[b].Add(token);
            _session.AppendHistory(b, [token]);
            _fed[b] = token;
            if (_generated[b].Count >= _options.MaxNewTokens)
            {
                _finish[b] = FinishReason.Length;
            }
        }
        _needsDecode = true;
    }

    /// <summary>Ends a sequence from outside (a stop string was seen).</summary>
    public void Finish(int sequence, FinishReason reason)
    {
        if (_finish[sequence] == FinishReason.None)
        {
            _finish[sequence] = reason;
        }
    }

    public void ReportStats() => _options.OnStats?.Invoke(Stats);
}
