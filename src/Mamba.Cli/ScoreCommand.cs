using System.CommandLine;
using System.Globalization;
using Mamba.Loading;

namespace Mamba.Cli;

/// <summary><c>mamba score</c>: perplexity and mean log-probability of a text, optionally writing every logit.</summary>
internal static class ScoreCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var model = ModelOptions.Model();
        var device = ModelOptions.DeviceOption();
        var threads = ModelOptions.Threads();
        var weights = ModelOptions.Weights();
        var activations = ModelOptions.Activations();
        var text = new Option<string?>("--text") { Description = "Text to score" };
        var file = new Option<string?>("--file") { Description = "UTF-8 file to score" };
        var tokens = new Option<string?>("--tokens") { Description = "Token ids to score, e.g. 1,2,3" };
        var logitsOut = new Option<string?>("--logits-out") { Description = "Write float32 logits (tensor 'logits', shape (1, len, vocab)) to this .safetensors file" };
        var command = new Command("score", "Score a text: perplexity and mean log-probability per token")
        {
            model, device, threads, weights, activations, text, file, tokens, logitsOut,
        };
        command.SetAction((parse, cancellationToken) =>
        {
            var given = new[] { parse.GetValue(text), parse.GetValue(file), parse.GetValue(tokens) }.Count(v => v is not null);
            if (given != 1)
            {
                throw new ArgumentException("give exactly one of --text, --file and --tokens");
            }
            using var m = ModelOptions.Load(stderr, parse.GetValue(model), parse.GetValue(device), parse.GetValue(threads), parse.GetValue(weights),
                parse.GetValue(activations));
            int[] ids;
            if (parse.GetValue(tokens) is { } tokenText)
            {
                ids = ModelOptions.ParseTokens(tokenText);
            }
            else
            {
                var input = parse.GetValue(text) ?? File.ReadAllText(parse.GetValue(file)!);
                var tokenizer = m.Tokenizer ?? throw new ArgumentException("this model has no tokenizer; give the input as --tokens");
                ids = [.. tokenizer.Encode(input)];
            }
            var outPath = parse.GetValue(logitsOut);
            var result = m.Score(ids, keepLogits: outPath is not null, cancellationToken);
            var inv = CultureInfo.InvariantCulture;
            stdout.WriteLine(string.Create(inv, $"tokens: {ids.Length} ({result.TokenCount} scored)"));
            stdout.WriteLine(string.Create(inv, $"mean log-prob: {result.MeanLogProb:F6}"));
            stdout.WriteLine(string.Create(inv, $"perplexity: {result.Perplexity:F4}"));
            if (outPath is not null)
            {
                new SafetensorsWriter().Add("logits", result.Logits!, [1, ids.Length, m.Config.VocabSize]).Save(outPath);
                stdout.WriteLine($"logits: {outPath}");
            }
            return Task.FromResult(0);
        });
        return command;
    }
}
