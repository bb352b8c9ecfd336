using System.Runtime.CompilerServices;
using Mamba.Generation;

namespace Mamba.Models;

public sealed partial class MambaModel
{
    /// <summary>Generates text after <paramref name="prompt"/>, yielding pieces as they become complete characters
    /// (the tokenizer's streaming decoder). Stop strings end generation and never appear in the output.</summary>
    public IAsyncEnumerable<string> GenerateAsync(string prompt, GenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        var ids = RequireTokenizer().Encode(prompt);
        if (ids.Count == 0)
        {
            // An empty prompt starts from the beginning-of-text token.
            var bos = Config.BosTokenId ?? Tokenizer!.BosTokenId ?? Config.EosTokenId
                ?? throw new ArgumentException("the prompt is empty and the model names no beginning-of-text token", nameof(prompt));
            ids = [bos];
        }
        return GenerateAsync(ids, options, cancellationToken);
    }

    /// <summary>Generates text after a prompt given as token ids.</summary>
    public async IAsyncEnumerable<string> GenerateAsync(IReadOnlyList<int> promptTokens, GenerationOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(promptTokens);
        options ??= new GenerationOptions();
        var tokenizer = RequireTokenizer();
        var decoder = tokenizer.CreateStreamDecoder(skipSpecialTokens: true);
        var filter = new StopStringFilter(options.StopStrings);
        EnterExclusive();
        GenerationLoop? loop = null;
        try
        {
            loop = new GenerationLoop(this, [promptTokens], options);
            await Task.Yield();
            loop.Prefill(cancellationToken);
            var emitted = new int[1];
            while (!loop.IsDone)
            {
                loop.Step(emitted, cancellationToken);
                // Padded vocabularies have ids the tokenizer does not know: they have no text.
                if (emitted[0] < 0 || emitted[0] >= tokenizer.VocabSize)
                {
                    continue;
                }
                var text = filter.Push(decoder.Push(emitted[0]));
                if (filter.Stopped)
                {
                    loop.Finish(0, FinishReason.StopString);
                }
                if (text.Length > 0)
                {
                    yield return text;
                }
            }
            var tail = filter.Push(decoder.Flush()) + filter.Flush();
            if (tail.Length > 0)
            {
                yield return tail;
            }
        }
        finally
        {
            loop?.ReportStats();
            ExitExclusive();
        }
    }
}
