using Mamba.Loading;
using Mamba.Loading.Hub;
using Mamba.Tokenization;

namespace Mamba.Models;

public sealed partial class MambaModel
{
    /// <summary>The tokenizer shipped with the model, when it has one (state-spaces checkpoints have none).</summary>
    public MambaTokenizer? Tokenizer { get; private set; }

    /// <summary>Where the model was loaded from, when it was loaded from files.</summary>
    public ModelFiles? Files { get; private set; }

    /// <summary>Top-level fields of the loaded config.json that this library neither reads nor knows as bookkeeping
    /// (empty for a model made in memory). They are ignored, as transformers keeps extra config attributes; a field it
    /// cannot honour (another activation, attention layers, ...) fails the load instead. Worth showing to the user: a
    /// misspelt field lands here.</summary>
    public IReadOnlyList<string> IgnoredConfigFields { get; private set; } = [];

    /// <summary>Loads a model from a local directory, a config.json or .safetensors path, or a hub id
    /// (<c>owner/name[@revision]</c>, downloaded into the Hugging Face cache), with its tokenizer when present.</summary>
    public static MambaModel Load(string model, MambaModelOptions? options = null, HubClient? hub = null) =>
        LoadAsync(model, options, hub).GetAwaiter().GetResult();

    /// <summary>Asynchronous <see cref="Load"/> (the download, if any, is asynchronous).</summary>
    public static async Task<MambaModel> LoadAsync(string model, MambaModelOptions? options = null, HubClient? hub = null,
        CancellationToken cancellationToken = default)
    {
        using var loaded = await LoadedModel.LoadAsync(model, hub, null, cancellationToken).ConfigureAwait(false);
        var tokenizer = loaded.Files.TokenizerPath is { } path ? MambaTokenizer.FromFile(path, loaded.Files.TokenizerConfigPath) : null;
        var config = loaded.Config;
        // The tokenizer's end-of-text token ends generation when the config names none.
        if (config.EosTokenId is null && tokenizer?.EosTokenId is int eos)
        {
            config = config with { EosTokenId = eos };
        }
        var result = Create(config, loaded.Weights.Checkpoint, options);
        result.Tokenizer = tokenizer;
        result.Files = loaded.Files;
        result.IgnoredConfigFields = loaded.ConfigInfo.IgnoredFields;
        return result;
    }

    /// <summary>Uses <paramref name="tokenizer"/> for the text APIs.</summary>
    public void SetTokenizer(MambaTokenizer? tokenizer) => Tokenizer = tokenizer;

    private MambaTokenizer RequireTokenizer() => Tokenizer ?? throw new InvalidOperationException(
        "this model has no tokenizer (state-spaces checkpoints ship none): pass token ids, or set one with SetTokenizer");
}
