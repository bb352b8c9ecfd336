using System.CommandLine;
using Mamba.Generation;

namespace Mamba.Cli;

/// <summary><c>mamba generate</c>: streams a continuation of a prompt to stdout; timings go to stderr.</summary>
internal static class GenerateCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var model = ModelOptions.Model();
        var device = ModelOptions.DeviceOption();
        var threads = ModelOptions.Threads();
        var weights = ModelOptions.Weights();
        var activations = ModelOptions.Activations();
        var prompt = new Option<string?>("--prompt", "-p") { Description = "Prompt text" };
        var tokens = new Option<string?>("--tokens") { Description = "Prompt as token ids, e.g. 1,2,3 (instead of --prompt)" };
        var printIds = new Option<bool>("--print-token-ids") { Description = "Also print the prompt and generated token ids" };
        var maxTokens = new Option<int>("--max-tokens", "-n") { Description = "Most tokens to generate", DefaultValueFactory = _ => 128 };
        var temperature = new Option<float>("--temperature", "-t") { Description = "Sampling temperature; 0 (or less) is greedy", DefaultValueFactory = _ => 0f };
        var topK = new Option<int>("--top-k") { Description = "Keep the k most likely tokens (0: all)", DefaultValueFactory = _ => 0 };
        var topP = new Option<float>("--top-p") { Description = "Nucleus sampling threshold (1: off)", DefaultValueFactory = _ => 1f };
        var minP = new Option<float>("--min-p") { Description = "Drop tokens below min-p times the top probability (0: off)", DefaultValueFactory = _ => 0f };
        var penalty = new Option<float>("--repetition-penalty") { Description = "Penalty for repeated tokens (1: off)", DefaultValueFactory = _ => 1f };
        var seed = new Option<ulong?>("--seed") { Description = "Sampler seed (default: random)" };
        var stop = new Option<string[]>("--stop") { Description = "Stop string (repeatable)", AllowMultipleArgumentsPerToken = false };
        var stopTokens = new Option<string?>("--stop-tokens") { Description = "Token ids that end generation, e.g. 0,5" };
        var ignoreEos = new Option<bool>("--ignore-eos") { Description = "Do not stop at the end-of-sequence token" };

        var command = new Command("generate", "Generate text from a prompt, streaming it to stdout")
        {
            model, device, threads, weights, activations, prompt, tokens, printIds, maxTokens, temperature, topK, topP, minP, penalty, seed, stop, stopTokens, ignoreEos,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            var promptText = parse.GetValue(prompt);
            var tokenText = parse.GetValue(tokens);
            if ((promptText is null) == (tokenText is null))
            {
                throw new ArgumentException("give exactly one of --prompt and --tokens");
            }
            using var m = ModelOptions.Load(stderr, parse.GetValue(model), parse.GetValue(device), parse.GetValue(threads), parse.GetValue(weights),
                parse.GetValue(activations));
            GenerationStats? stats = null;
            var options = new GenerationOptions
            {
                MaxNewTokens = parse.GetValue(maxTokens),
                Temperature = parse.GetValue(temperature),
                TopK = parse.GetValue(topK),
                TopP = parse.GetValue(topP),
                MinP = parse.GetValue(minP),
                RepetitionPenalty = parse.GetValue(penalty),
                Seed = parse.GetValue(seed),
                StopStrings = parse.GetValue(stop) ?? [],
                StopTokens = parse.GetValue(stopTokens) is { } st ? ModelOptions.ParseTokens(st) : [],
                StopAtEndOfSequence = !parse.GetValue(ignoreEos),
                OnStats = s => stats = s,
            };
            int[] promptIds;
            if (tokenText is not null)
            {
                promptIds = ModelOptions.ParseTokens(tokenText);
            }
            else if (m.Tokenizer is null)
            {
                throw new ArgumentException("this model has no tokenizer; give the prompt as --tokens");
            }
            else
            {
                promptIds = [.. m.Tokenizer.Encode(promptText!)];
                if (promptIds.Length == 0)
                {
                    promptIds = [m.Config.BosTokenId ?? m.Tokenizer.BosTokenId ?? 0];
                }
            }
            var printTokenIds = parse.GetValue(printIds);
            if (printTokenIds)
            {
                stderr.WriteLine($"prompt ids: {string.Join(",", promptIds)}");
            }

            var generated = new List<int>();
            if (m.Tokenizer is null)
            {
                // Without a tokenizer the ids themselves are the output.
                await foreach (var id in m.GenerateTokensAsync(promptIds, options, cancellationToken))
                {
                    generated.Add(id);
                    stdout.Write(generated.Count == 1 ? $"{id}" : $",{id}");
                    stdout.Flush();
                }
            }
            else
            {
                var decoder = m.Tokenizer.CreateStreamDecoder(skipSpecialTokens: true);
                var filter = new StopStringFilter(options.StopStrings);
                await foreach (var id in m.GenerateTokensAsync(promptIds, options, cancellationToken))
                {
                    generated.Add(id);
                    if (id >= m.Tokenizer.VocabSize)
                    {
                        continue; // a padding id of the embedding has no text
                    }
                    stdout.Write(filter.Push(decoder.Push(id)));
                    stdout.Flush();
                    if (filter.Stopped)
                    {
                        break;
                    }
                }
                stdout.Write(filter.Push(decoder.Flush()) + filter.Flush());
            }
            stdout.WriteLine();
            stdout.Flush();
            if (printTokenIds)
            {
                stderr.WriteLine($"generated ids: {string.Join(",", generated)}");
            }
            if (stats is not null)
            {
                stderr.WriteLine(stats.ToString());
            }
            return 0;
        });
        return command;
    }
}
