using System.Runtime.CompilerServices;
using Mamba.Generation;

namespace Mamba.Models;

public sealed partial class MambaModel
{
    private int _busy;

    /// <summary>Generates tokens after <paramref name="prompt"/> (token ids), yielding each as it is drawn.
    /// Cancellation stops before the next step.</summary>
    public async IAsyncEnumerable<int> GenerateTokensAsync(IReadOnlyList<int> prompt, GenerationOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        options ??= new GenerationOptions();
        EnterExclusive();
        GenerationLoop? loop = null;
        try
        {
            loop = new GenerationLoop(this, [prompt], options);
            await Task.Yield();
            loop.Prefill(cancellationToken);
            var emitted = new int[1];
            while (!loop.IsDone)
            {
                loop.Step(emitted, cancellationToken);
                if (emitted[0] >= 0)
                {
                    yield return emitted[0];
                }
            }
        }
        finally
        {
            loop?.ReportStats();
            ExitExclusive();
        }
    }

    /// <summary>Generates for several prompts at once: each prompt is prefilled on its own (no padding), then all
    /// are decoded together; sequences stop independently.</summary>
    public GeneratedSequence[] Generate(IReadOnlyList<IReadOnlyList<int>> prompts, GenerationOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        options ??= new GenerationOptions();
        EnterExclusive();
        GenerationLoop? loop = null;
        try
        {
            loop = new GenerationLoop(this, prompts, options);
            loop.Prefill(cancellationToken);
            var emitted = new int[prompts.Count];
            while (!loop.IsDone)
            {
                loop.Step(emitted, cancellationToken);
            }
            return Enumerable.Range(0, prompts.Count).Select(b => new GeneratedSequence(loop.Generated(b).ToArray(), loop.FinishReasonOf(b))).ToArray();
        }
        finally
        {
            loop?.ReportStats();
            ExitExclusive();
        }
    }

    private void EnterExclusive()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (Interlocked.CompareExchange(ref _busy, 1, 0) != 0)
        {
            throw new InvalidOperationException("this model is already generating; run one generation at a time per model");
        }
    }

    private void ExitExclusive() => Volatile.Write(ref _busy, 0);
}
