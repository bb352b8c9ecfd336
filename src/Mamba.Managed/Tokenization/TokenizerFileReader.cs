using System.Text;
using System.Text.Json;

namespace Mamba.Tokenization;

/// <summary>Everything the tokenizer needs from tokenizer.json (and optionally tokenizer_config.json), validated.</summary>
internal sealed class TokenizerSpec
{
    public required Dictionary<string, int> Vocab { get; init; }
    public required Dictionary<long, (int Rank, int NewId)> Merges { get; init; }
    public required List<AddedToken> AddedTokens { get; init; }
    public required NormalizationForm[] Normalizers { get; init; }
    public required bool AddPrefixSpace { get; init; }
    public required bool UseRegex { get; init; }
    public required int? UnknownId { get; init; }
    public required bool FuseUnknown { get; init; }
    public required bool IgnoreMerges { get; init; }
    public required int[] PrefixIds { get; init; }
    public required int[] SuffixIds { get; init; }
    public required int? BosTokenId { get; init; }
    public required int? EosTokenId { get; init; }
}

/// <summary>
/// Reads the Hugging Face tokenizer.json layout for byte-level BPE. Whatever would make the result differ from the
/// reference library is refused with a <see cref="TokenizerFormatException"/> naming the file and the field,
/// rather than approximated.
/// </summary>
internal static class TokenizerFileReader
{
    /// <summary>The conventional GPT-NeoX / GPT-2 document separator, used as BOS and EOS when nothing says otherwise.</summary>
    private const string EndOfText = "<|endoftext|>";

    /// <summary>Ids index dense tables, so an absurd id (a corrupt file) is refused rather than allocated.</summary>
    private const int MaxTokenId = (1 << 24) - 1;

    public static TokenizerSpec Read(string path, string? configPath)
    {
        using var doc = ParseJson(path);
        var root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object)
        {
            throw new TokenizerFormatException(path, "the top level is not a JSON object");
        }

        var model = Required(path, root, "model", JsonValueKind.Object);
        var modelType = OptionalString(path, model, "type");
        if (modelType is null && !model.TryGetProperty("merges", out _))
        {
            throw new TokenizerFormatException(path, "model has neither a \"type\" nor BPE \"merges\"");
        }
        if (modelType is not null and not "BPE")
        {
            throw new UnsupportedTokenizerException(path, $"model type '{modelType}' is not supported (only byte-level BPE is)");
        }
        var vocab = ReadVocab(path, model);
        var merges = ReadMerges(path, model, vocab);
        RefuseSetting(path, model, "dropout", "BPE dropout");
        RefuseSetting(path, model, "continuing_subword_prefix", "a continuing-subword prefix");
        RefuseSetting(path, model, "end_of_word_suffix", "an end-of-word suffix");
        if (OptionalBool(path, model, "byte_fallback") == true)
        {
            throw new UnsupportedTokenizerException(path, "model.byte_fallback is not supported (byte-level BPE needs no fallback)");
        }
        int? unknownId = null;
        if (OptionalString(path, model, "unk_token") is string unk)
        {
            unknownId = vocab.TryGetValue(unk, out var id) ? id : throw new TokenizerFormatException(path, $"model.unk_token {Quote(unk)} is not in the vocabulary");
        }

        var added = ReadAddedTokens(path, root);
        var normalizers = ReadNormalizer(path, root);
        var (addPrefixSpace, useRegex) = ReadPreTokenizer(path, root);
        CheckDecoder(path, root);
        var (prefix, suffix) = ReadPostProcessor(path, root);

        int? Lookup(string token) =>
            added.FirstOrDefault(t => t.Content == token)?.Id ?? (vocab.TryGetValue(token, out var id) ? id : null);

        // Defaults: the tokens the post-processor adds, else the conventional <|endoftext|> when present.
        var fallback = Lookup(EndOfText);
        int? bos = prefix.Length > 0 ? prefix[0] : fallback;
        int? eos = suffix.Length > 0 ? suffix[^1] : fallback;
        if (configPath is not null)
        {
            var config = ReadConfig(configPath, Lookup);
            bos = config.Bos ?? bos;
            eos = config.Eos ?? eos;
            // Like the transformers fast tokenizers, explicit add_bos_token / add_eos_token replace the template.
            if (config.AddBos is not null || config.AddEos is not null)
            {
                prefix = config.AddBos == true ? [bos ?? throw new TokenizerFormatException(configPath, "add_bos_token is true but no bos_token is known")] : [];
                suffix = config.AddEos == true ? [eos ?? throw new TokenizerFormatException(configPath, "add_eos_token is true but no eos_token is known")] : [];
            }
        }

        return new TokenizerSpec
        {
            Vocab = vocab,
            Merges = merges,
            AddedTokens = added,
            Normalizers = normalizers,
            AddPrefixSpace = addPrefixSpace,
            UseRegex = useRegex,
            UnknownId = unknownId,
            FuseUnknown = OptionalBool(path, model, "fuse_unk") ?? false,
            IgnoreMerges = OptionalBool(path, model, "ignore_merges") ?? false,
            PrefixIds = prefix,
            SuffixIds = suffix,
            BosTokenId = bos,
            EosTokenId = eos,
        };
    }

    private static JsonDocument ParseJson(string path)
    {
        var text = File.ReadAllText(path, Encoding.UTF8); // a missing file throws FileNotFoundException naming it
        try
        {
            return JsonDocument.Parse(text, new JsonDocumentOptions { AllowTrailingCommas = false, MaxDepth = 256 });
        }
        catch (JsonException e)
        {
            throw new TokenizerFormatException(path, "not valid JSON: " + e.Message, e);
        }
    }

    private static Dictionary<string, int> ReadVocab(string path, JsonElement model)
    {
        var vocabElement = Required(path, model, "vocab", JsonValueKind.Object);
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        var owners = new Dictionary<int, string>();
        foreach (var entry in vocabElement.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetInt32(out var id) || id is < 0 or > MaxTokenId)
            {
                throw new TokenizerFormatException(path, $"model.vocab entry {Quote(entry.Name)} has id {entry.Value.GetRawText()}, expected an integer from 0 to {MaxTokenId}");
            }
            if (owners.TryGetValue(id, out var other))
            {
                throw new TokenizerFormatException(path, $"model.vocab gives id {id} to both {Quote(other)} and {Quote(entry.Name)}");
            }
            owners[id] = entry.Name;
            vocab[entry.Name] = id;
        }
        if (vocab.Count == 0)
        {
            throw new TokenizerFormatException(path, "model.vocab is empty");
        }
        return vocab;
    }

    /// <summary>Merges come as "left right" strings (older files) or as [left, right] pairs (newer files).</summary>
    private static Dictionary<long, (int, int)> ReadMerges(string path, JsonElement model, Dictionary<string, int> vocab)
    {
        var mergesElement = Required(path, model, "merges", JsonValueKind.Array);
        var merges = new Dictionary<long, (int, int)>();
        var rank = 0;
        foreach (var merge in mergesElement.EnumerateArray())
        {
            string left, right;
            if (merge.ValueKind == JsonValueKind.String)
            {
                var parts = merge.GetString()!.Split(' ');
                if (parts.Length != 2)
                {
                    throw new TokenizerFormatException(path, $"model.merges[{rank}] {Quote(merge.GetString()!)} is not two tokens separated by one space");
                }
                (left, right) = (parts[0], parts[1]);
            }
            else if (merge.ValueKind == JsonValueKind.Array && merge.GetArrayLength() == 2
                     && merge[0].ValueKind == JsonValueKind.String && merge[1].ValueKind == JsonValueKind.String)
            {
                (left, right) = (merge[0].GetString()!, merge[1].GetString()!);
            }
            else
            {
                throw new TokenizerFormatException(path, $"model.merges[{rank}] is {merge.GetRawText()}, expected \"a b\" or [\"a\", \"b\"]");
            }
            var leftId = VocabId(path, vocab, left, rank);
            var rightId = VocabId(path, vocab, right, rank);
            var newId = VocabId(path, vocab, left + right, rank);
            // A repeated pair keeps its last rank, as in the reference.
            merges[BytePairModel.PairKey(leftId, rightId)] = (rank, newId);
            rank++;
        }
        return merges;
    }

    private static int VocabId(string path, Dictionary<string, int> vocab, string token, int rank) =>
        vocab.TryGetValue(token, out var id) ? id : throw new TokenizerFormatException(path, $"model.merges[{rank}] uses {Quote(token)}, which is not in model.vocab");

    private static List<AddedToken> ReadAddedTokens(string path, JsonElement root)
    {
        var list = new List<AddedToken>();
        if (!root.TryGetProperty("added_tokens", out var array) || array.ValueKind == JsonValueKind.Null)
        {
            return list;
        }
        if (array.ValueKind != JsonValueKind.Array)
        {
            throw new TokenizerFormatException(path, "added_tokens is not an array");
        }
        var i = 0;
        foreach (var t in array.EnumerateArray())
        {
            var where = $"added_tokens[{i++}]";
            if (t.ValueKind != JsonValueKind.Object)
            {
                throw new TokenizerFormatException(path, $"{where} is not an object");
            }
            var content = OptionalString(path, t, "content") ?? throw new TokenizerFormatException(path, $"{where} has no \"content\"");
            if (content.Length == 0)
            {
                throw new TokenizerFormatException(path, $"{where} has an empty content");
            }
            if (!t.TryGetProperty("id", out var idElement) || idElement.ValueKind != JsonValueKind.Number || !idElement.TryGetInt32(out var id) || id is < 0 or > MaxTokenId)
            {
                throw new TokenizerFormatException(path, $"{where} ({Quote(content)}) has no \"id\" from 0 to {MaxTokenId}");
            }
            var special = OptionalBool(path, t, "special") ?? false;
            list.Add(new AddedToken(id, content, special,
                Normalized: OptionalBool(path, t, "normalized") ?? !special,
                SingleWord: OptionalBool(path, t, "single_word") ?? false,
                LeftStrip: OptionalBool(path, t, "lstrip") ?? false,
                RightStrip: OptionalBool(path, t, "rstrip") ?? false));
        }
        return list;
    }

    private static NormalizationForm[] ReadNormalizer(string path, JsonElement root)
    {
        if (!root.TryGetProperty("normalizer", out var n) || n.ValueKind == JsonValueKind.Null)
        {
            return [];
        }
        var forms = new List<NormalizationForm>();
        AddNormalizer(path, n, forms);
        return forms.ToArray();
    }

    private static void AddNormalizer(string path, JsonElement n, List<NormalizationForm> forms)
    {
        var type = TypeOf(path, n, "normalizer");
        switch (type)
        {
            case "NFC": forms.Add(NormalizationForm.FormC); break;
            case "NFD": forms.Add(NormalizationForm.FormD); break;
            case "NFKC": forms.Add(NormalizationForm.FormKC); break;
            case "NFKD": forms.Add(NormalizationForm.FormKD); break;
            case "Sequence":
                foreach (var inner in Required(path, n, "normalizers", JsonValueKind.Array).EnumerateArray())
                {
                    AddNormalizer(path, inner, forms);
                }
                break;
            default:
                throw new UnsupportedTokenizerException(path, $"normalizer type '{type}' is not supported (null, NFC, NFD, NFKC, NFKD or a Sequence of them are)");
        }
    }

    private static (bool AddPrefixSpace, bool UseRegex) ReadPreTokenizer(string path, JsonElement root)
    {
        if (!root.TryGetProperty("pre_tokenizer", out var p) || p.ValueKind == JsonValueKind.Null)
        {
            throw new UnsupportedTokenizerException(path, "pre_tokenizer is null; only the ByteLevel pre-tokenizer is supported");
        }
        var type = TypeOf(path, p, "pre_tokenizer");
        if (type != "ByteLevel")
        {
            throw new UnsupportedTokenizerException(path, $"pre_tokenizer type '{type}' is not supported (only ByteLevel is)");
        }
        return (OptionalBool(path, p, "add_prefix_space") ?? true, OptionalBool(path, p, "use_regex") ?? true);
    }

    private static void CheckDecoder(string path, JsonElement root)
    {
        // A missing decoder still decodes as bytes: with a byte-level pre-tokenizer that is the only inverse.
        if (root.TryGetProperty("decoder", out var d) && d.ValueKind != JsonValueKind.Null)
        {
            var type = TypeOf(path, d, "decoder");
            if (type != "ByteLevel")
            {
                throw new UnsupportedTokenizerException(path, $"decoder type '{type}' is not supported (only ByteLevel is)");
            }
        }
    }

    private static (int[] Prefix, int[] Suffix) ReadPostProcessor(string path, JsonElement root)
    {
        if (!root.TryGetProperty("post_processor", out var p) || p.ValueKind == JsonValueKind.Null)
        {
            return ([], []);
        }
        return PostProcessor(path, p);
    }

    private static (int[] Prefix, int[] Suffix) PostProcessor(string path, JsonElement p)
    {
        var type = TypeOf(path, p, "post_processor");
        switch (type)
        {
            case "ByteLevel":
                return ([], []); // only trims offsets, which this tokenizer does not report
            case "TemplateProcessing":
                return Template(path, p);
            case "BertProcessing":
            case "RobertaProcessing":
                return ([IdOfPair(path, p, "cls")], [IdOfPair(path, p, "sep")]);
            case "Sequence":
                var prefix = new List<int>();
                var suffix = new List<int>();
                foreach (var inner in Required(path, p, "processors", JsonValueKind.Array).EnumerateArray())
                {
                    // Each processor wraps the output of the previous one.
                    var (pre, suf) = PostProcessor(path, inner);
                    prefix.InsertRange(0, pre);
                    suffix.AddRange(suf);
                }
                return (prefix.ToArray(), suffix.ToArray());
            default:
                throw new UnsupportedTokenizerException(path, $"post_processor type '{type}' is not supported");
        }
    }

    private static (int[] Prefix, int[] Suffix) Template(string path, JsonElement p)
    {
        var specials = Required(path, p, "special_tokens", JsonValueKind.Object);
        var prefix = new List<int>();
        var suffix = new List<int>();
        var seenSequence = false;
        foreach (var item in Required(path, p, "single", JsonValueKind.Array).EnumerateArray())
        {
            if (item.ValueKind == JsonValueKind.Object && item.TryGetProperty("Sequence", out var seq))
            {
                if (seenSequence || OptionalString(path, seq, "id") != "A")
                {
                    throw new TokenizerFormatException(path, "post_processor.single must contain the sequence $A exactly once");
                }
                seenSequence = true;
            }
            else if (item.ValueKind == JsonValueKind.Object && item.TryGetProperty("SpecialToken", out var special))
            {
                var name = OptionalString(path, special, "id") ?? throw new TokenizerFormatException(path, "post_processor.single has a SpecialToken without an id");
                if (!specials.TryGetProperty(name, out var entry) || !entry.TryGetProperty("ids", out var ids) || ids.ValueKind != JsonValueKind.Array)
                {
                    throw new TokenizerFormatException(path, $"post_processor.special_tokens has no ids for {Quote(name)}");
                }
                foreach (var id in ids.EnumerateArray())
                {
                    (seenSequence ? suffix : prefix).Add(id.TryGetInt32(out var v) && v >= 0 ? v : throw new TokenizerFormatException(path, $"post_processor.special_tokens[{Quote(name)}] has a bad id {id.GetRawText()}"));
                }
            }
            else
            {
                throw new TokenizerFormatException(path, $"post_processor.single has an unknown item {item.GetRawText()}");
            }
        }
        if (!seenSequence)
        {
            throw new TokenizerFormatException(path, "post_processor.single does not contain the sequence $A");
        }
        return (prefix.ToArray(), suffix.ToArray());
    }

    private static int IdOfPair(string path, JsonElement p, string name)
    {
        var pair = Required(path, p, name, JsonValueKind.Array);
        return pair.GetArrayLength() == 2 && pair[1].TryGetInt32(out var id) && id >= 0
            ? id
            : throw new TokenizerFormatException(path, $"post_processor.{name} is {pair.GetRawText()}, expected [token, id]");
    }

    private sealed record ConfigValues(int? Bos, int? Eos, bool? AddBos, bool? AddEos);

    private static ConfigValues ReadConfig(string path, Func<string, int?> lookup)
    {
        using var doc = ParseJson(path);
        var root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object)
        {
            throw new TokenizerFormatException(path, "the top level is not a JSON object");
        }
        int? TokenId(string name)
        {
            if (!root.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null)
            {
                return null;
            }
            // Either "<|endoftext|>" or an AddedToken object {"content": "<|endoftext|>", ...}.
            var content = v.ValueKind switch
            {
                JsonValueKind.String => v.GetString(),
                JsonValueKind.Object => OptionalString(path, v, "content"),
                _ => null,
            } ?? throw new TokenizerFormatException(path, $"{name} is {v.GetRawText()}, expected a token string");
            return lookup(content) ?? throw new TokenizerFormatException(path, $"{name} {Quote(content)} is not a token of the tokenizer");
        }
        return new ConfigValues(TokenId("bos_token"), TokenId("eos_token"), OptionalBool(path, root, "add_bos_token"), OptionalBool(path, root, "add_eos_token"));
    }

    private static void RefuseSetting(string path, JsonElement obj, string name, string what)
    {
        if (obj.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null
            && !(v.ValueKind == JsonValueKind.String && v.GetString()!.Length == 0)
            && !(v.ValueKind == JsonValueKind.Number && v.GetDouble() == 0))
        {
            throw new UnsupportedTokenizerException(path, $"model.{name} = {v.GetRawText()}: {what} is not supported");
        }
    }

    private static string TypeOf(string path, JsonElement obj, string where)
    {
        if (obj.ValueKind != JsonValueKind.Object)
        {
            throw new TokenizerFormatException(path, $"{where} is {obj.GetRawText()}, expected an object");
        }
        return OptionalString(path, obj, "type") ?? throw new TokenizerFormatException(path, $"{where} has no \"type\"");
    }

    private static JsonElement Required(string path, JsonElement obj, string name, JsonValueKind kind)
    {
        if (!obj.TryGetProperty(name, out var v))
        {
            throw new TokenizerFormatException(path, $"missing \"{name}\"");
        }
        if (v.ValueKind != kind)
        {
            throw new TokenizerFormatException(path, $"\"{name}\" is a {v.ValueKind}, expected {kind}");
        }
        return v;
    }

    private static string? OptionalString(string path, JsonElement obj, string name)
    {
        if (!obj.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null)
        {
            return null;
        }
        return v.ValueKind == JsonValueKind.String ? v.GetString() : throw new TokenizerFormatException(path, $"\"{name}\" is {v.GetRawText()}, expected a string");
    }

    private static bool? OptionalBool(string path, JsonElement obj, string name)
    {
        if (!obj.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null)
        {
            return null;
        }
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new TokenizerFormatException(path, $"\"{name}\" is {v.GetRawText()}, expected true or false"),
        };
    }

    private static string Quote(string token) => JsonSerializer.Serialize(token, QuoteOptions);

    private static readonly JsonSerializerOptions QuoteOptions = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
}
