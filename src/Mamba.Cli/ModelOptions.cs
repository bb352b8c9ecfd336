using System.CommandLine;
using System.Globalization;
using Mamba.Models;
using Mamba.Runtime;
using Mamba.Tensors;

namespace Mamba.Cli;

/// <summary>Options shared by the commands that run a model: which model, on which device, and token lists.</summary>
internal static class ModelOptions
{
    /// <summary>The model shipped with Mamba.NET, used when --model is not given.</summary>
    public const string DefaultModelName = "mamba2-pystdlib";

    public static Option<string?> Model() => new("--model", "-m")
    {
        Description = $"Model directory, config.json/.safetensors path or Hugging Face id (owner/name[@revision]); default: the shipped {DefaultModelName}",
    };

    public static Option<string?> DeviceOption() => new("--device")
    {
        Description = "cpu, cuda or cuda:N (default: CUDA when present, else CPU; MAMBA_DEVICE overrides)",
    };

    public static Option<int> Threads() => new("--threads")
    {
        Description = "CPU threads (0: every core)",
        DefaultValueFactory = _ => 0,
    };

    public static Option<string?> Weights() => new("--weights")
    {
        Description = "Convert matrix and norm weights on load: f32, f16 or bf16 (default: as stored)",
    };

    public static Option<string?> Activations() => new("--activations")
    {
        Description = "Type of the activations between ops: auto (default: the weights' 16-bit type on CUDA, f32 on the CPU), f32, f16 or bf16",
    };

    /// <summary>Loads the model named on the command line, or the shipped default; <paramref name="weights"/> and
    /// <paramref name="activations"/> are the --weights / --activations values (null: as stored / by device and weights).
    /// Config fields the library ignores are named on <paramref name="stderr"/>.</summary>
    public static MambaModel Load(TextWriter stderr, string? model, string? device, int threads, string? weights = null, string? activations = null)
    {
        var options = new MambaModelOptions
        {
            Device = device is null ? null : Device.Parse(device),
            CpuThreads = threads,
            WeightDType = weights is null ? null : ParseDType(weights, "--weights"),
            ActivationDType = ParseActivations(activations),
        };
        var path = model ?? FindDefaultModel()
            ?? throw new ArgumentException($"no --model given and the default model ({DefaultModelName}) was not found under models/");
        var loaded = MambaModel.Load(path, options);
        if (IgnoredFieldsWarning(loaded) is { } warning)
        {
            stderr.WriteLine($"mamba: warning: {warning}");
        }
        return loaded;
    }

    /// <summary>The warning for config fields the model ignores, or null when there are none.</summary>
    internal static string? IgnoredFieldsWarning(MambaModel model) => model.IgnoredConfigFields.Count == 0 ? null :
        $"{model.Files?.ConfigPath ?? "config.json"}: ignoring field{(model.IgnoredConfigFields.Count == 1 ? "" : "s")} this library does not read: " +
        string.Join(", ", model.IgnoredConfigFields);

    /// <summary>models/mamba2-pystdlib next to the application, or in the current directory or the one of the
    /// application or any of their parents (a source checkout).</summary>
    public static string? FindDefaultModel()
    {
        foreach (var start in new[] { AppContext.BaseDirectory, Directory.GetCurrentDirectory() })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, "models", DefaultModelName);
                if (File.Exists(Path.Combine(candidate, "config.json")))
                {
                    return candidate;
                }
            }
        }
        return null;
    }

    /// <summary>The items of a comma-separated option value, trimmed, empty ones dropped.</summary>
    internal static string[] Split(string text) => text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    /// <summary>An --activations value: null (absent or "auto": the model picks by device and weights) or a dtype.</summary>
    internal static DType? ParseActivations(string? text) =>
        text is null || text.Trim().Equals("auto", StringComparison.OrdinalIgnoreCase) ? null : ParseDType(text.Trim(), "--activations", "auto, f32, f16, bf16");

    /// <summary>A dtype named on the command line; <paramref name="option"/> names the option in the error and
    /// <paramref name="accepted"/> lists what it takes.</summary>
    internal static DType ParseDType(string text, string option = "--dtypes", string accepted = "f32, f16, bf16") => text.ToLowerInvariant() switch
    {
        "f32" or "float32" or "fp32" => DType.Float32,
        "f16" or "float16" or "fp16" => DType.Float16,
        "bf16" or "bfloat16" => DType.BFloat16,
        _ => throw new ArgumentException($"{option}: unknown dtype '{text}' ({accepted})"),
    };

    /// <summary>Parses "1,2,3" (commas and/or spaces).</summary>
    public static int[] ParseTokens(string text)
    {
        var parts = text.Split([',', ' ', '\t', '\n'], StringSplitOptions.RemoveEmptyEntries);
        var ids = new int[parts.Length];
        for (var i = 0; i < parts.Length; i++)
        {
            if (!int.TryParse(parts[i], NumberStyles.Integer, CultureInfo.InvariantCulture, out ids[i]) || ids[i] < 0)
            {
                throw new FormatException($"--tokens: '{parts[i]}' is not a token id (expected non-negative integers separated by commas)");
            }
        }
        if (ids.Length == 0)
        {
            throw new FormatException("--tokens: no token ids given");
        }
        return ids;
    }
}
