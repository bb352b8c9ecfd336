using System.Text;

namespace Mamba.Tokenization;

/// <summary>
/// The byte-level BPE tokenizer of Mamba checkpoints (the GPT-NeoX tokenizer), loaded from a Hugging Face
/// <c>tokenizer.json</c>, producing the same ids as the reference <c>tokenizers</c> library: added tokens are
/// split off first (leftmost-longest; special ones before normalization, "normalized" ones after it), the rest is
/// normalized (NFC etc.), split with the GPT-2 pattern, mapped byte by byte to the byte-level alphabet, and merged.
/// </summary>
/// <remarks>
/// Written here rather than on Microsoft.ML.Tokenizers 2.0.1, after testing it on the reference data: its
/// BpeTokenizer (ByteLevel, GPT-2 RegexPreTokenizer, added tokens as special tokens) got all 47 cases of the
/// shipped model's tokenizer but only 58 of the 63 GPT-NeoX-style ones. It matched the NeoX whitespace added
/// tokens ("  ", "    ", ...) shortest-first instead of leftmost-longest (4 spaces became two 2-space tokens),
/// it has no added tokens matched after normalization, and its .NET regex splits "a𠜎b" into three pieces where
/// the reference keeps one (surrogates are not \p{L}), which changes ids whenever a merge spans them.
/// Truncation and padding settings of the file are ignored (a prompt is never cut or padded). Instances
/// are immutable and safe to use from several threads.
/// </remarks>
public sealed class MambaTokenizer
{
    private readonly BytePairModel _model;
    private readonly AddedTokenMatcher _rawTokens;
    private readonly AddedTokenMatcher _normalizedTokens;
    private readonly NormalizationForm[] _normalizers;
    private readonly bool _addPrefixSpace;
    private readonly bool _useRegex;
    private readonly int[] _prefixIds;
    private readonly int[] _suffixIds;
    private readonly string?[] _tokens;
    private readonly byte[]?[] _tokenBytes;
    private readonly bool[] _special;
    private readonly Dictionary<string, int> _ids;

    private MambaTokenizer(TokenizerSpec spec)
    {
        _model = new BytePairModel(spec.Vocab, spec.Merges, spec.UnknownId, spec.FuseUnknown, spec.IgnoreMerges);
        _normalizers = spec.Normalizers;
        _addPrefixSpace = spec.AddPrefixSpace;
        _useRegex = spec.UseRegex;
        _prefixIds = spec.PrefixIds;
        _suffixIds = spec.SuffixIds;
        BosTokenId = spec.BosTokenId;
        EosTokenId = spec.EosTokenId;

        VocabSize = Math.Max(spec.Vocab.Values.Max(), spec.AddedTokens.Count > 0 ? spec.AddedTokens.Max(t => t.Id) : -1) + 1;
        _tokens = new string?[VocabSize];
        _special = new bool[VocabSize];
        foreach (var (token, id) in spec.Vocab)
        {
            _tokens[id] = token;
        }
        // Added tokens take precedence over a model entry with the same id, as in the reference.
        foreach (var t in spec.AddedTokens)
        {
            _tokens[t.Id] = t.Content;
            _special[t.Id] = t.Special;
        }
        _ids = new Dictionary<string, int>(spec.Vocab, StringComparer.Ordinal);
        foreach (var t in spec.AddedTokens.AsEnumerable().Reverse())
        {
            _ids[t.Content] = t.Id; // the first added token with a content wins
        }
        _tokenBytes = new byte[]?[VocabSize];
        for (var id = 0; id < VocabSize; id++)
        {
            _tokenBytes[id] = _tokens[id] is string s ? TokenBytes(s) : null;
        }

        _rawTokens = new AddedTokenMatcher(spec.AddedTokens.Where(t => !t.Normalized).Select(t => (t.Content, t)));
        _normalizedTokens = new AddedTokenMatcher(spec.AddedTokens.Where(t => t.Normalized).Select(t => (Normalize(t.Content), t)));
    }

    /// <summary>
    /// Loads <paramref name="tokenizerJsonPath"/> (a Hugging Face tokenizer.json with a byte-level BPE model) and,
    /// when given, <paramref name="tokenizerConfigPath"/> (tokenizer_config.json: bos_token, eos_token,
    /// add_bos_token, add_eos_token; explicit add_*_token flags replace the file's post-processor).
    /// </summary>
    /// <exception cref="TokenizerFormatException">The file is malformed; the message names the file and the field.</exception>
    /// <exception cref="UnsupportedTokenizerException">The file asks for a model, pre-tokenizer, normalizer, decoder or post-processor not implemented here.</exception>
    public static MambaTokenizer FromFile(string tokenizerJsonPath, string? tokenizerConfigPath = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(tokenizerJsonPath);
        return new MambaTokenizer(TokenizerFileReader.Read(tokenizerJsonPath, tokenizerConfigPath));
    }

    /// <summary>
    /// Loads <c>tokenizer.json</c> from a checkpoint directory, with <c>tokenizer_config.json</c> when it is there.
    /// </summary>
    /// <exception cref="FileNotFoundException">The directory has no tokenizer.json.</exception>
    public static MambaTokenizer FromDirectory(string directory)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        var json = Path.Combine(directory, "tokenizer.json");
        if (!File.Exists(json))
        {
            throw new FileNotFoundException($"no tokenizer.json in {directory}", json);
        }
        var config = Path.Combine(directory, "tokenizer_config.json");
        return FromFile(json, File.Exists(config) ? config : null);
    }

    /// <summary>One more than the highest token id (model vocabulary and added tokens).</summary>
    public int VocabSize { get; }

    /// <summary>Beginning-of-sequence id: tokenizer_config's bos_token, else the token the post-processor puts first, else &lt;|endoftext|&gt; when present.</summary>
    public int? BosTokenId { get; }

    /// <summary>End-of-sequence id: tokenizer_config's eos_token, else the token the post-processor puts last, else &lt;|endoftext|&gt; when present.</summary>
    public int? EosTokenId { get; }

    /// <summary>The vocabulary string of <paramref name="id"/> (byte-level form, e.g. "Ġthe"), or null when no token has that id.</summary>
    public string? TokenToString(int id) => (uint)id < (uint)VocabSize ? _tokens[id] : null;

    /// <summary>The id of a token given in its vocabulary form (added tokens first), or null when there is none.</summary>
    public int? TokenToId(string token)
    {
        ArgumentNullException.ThrowIfNull(token);
        return _ids.TryGetValue(token, out var id) ? id : null;
    }

    /// <summary>Whether <paramref name="id"/> is an added token flagged special (skipped by <c>skipSpecialTokens</c>).</summary>
    public bool IsSpecialToken(int id) => (uint)id < (uint)VocabSize && _special[id];

    /// <summary>
    /// Token ids of <paramref name="text"/>. Added and special tokens written in the text are recognized.
    /// <paramref name="addSpecialTokens"/> applies the post-processor (e.g. a leading BOS). A lone surrogate
    /// (not a character, so never seen by the reference) is encoded as U+FFFD.
    /// </summary>
    public IReadOnlyList<int> Encode(string text, bool addSpecialTokens = false)
    {
        ArgumentNullException.ThrowIfNull(text);
        text = ReplaceLoneSurrogates(text);
        var ids = new List<int>(text.Length / 3 + 4);
        if (addSpecialTokens)
        {
            ids.AddRange(_prefixIds);
        }
        foreach (var (start, length, token) in _rawTokens.Split(text))
        {
            if (token is not null)
            {
                ids.Add(token.Id);
                continue;
            }
            var normalized = Normalize(text.Substring(start, length));
            foreach (var (nStart, nLength, nToken) in _normalizedTokens.Split(normalized))
            {
                if (nToken is not null)
                {
                    ids.Add(nToken.Id);
                }
                else
                {
                    EncodeOrdinary(normalized.Substring(nStart, nLength), ids);
                }
            }
        }
        if (addSpecialTokens)
        {
            ids.AddRange(_suffixIds);
        }
        return ids;
    }

    /// <summary>
    /// Text of <paramref name="ids"/>: the bytes of every token, decoded as UTF-8 together (so a character may span
    /// tokens); invalid or incomplete sequences become U+FFFD.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">An id is not a token of this tokenizer.</exception>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = false)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var bytes = new List<byte>();
        foreach (var id in ids)
        {
            if (GetTokenBytes(id, skipSpecialTokens) is byte[] b)
            {
                bytes.AddRange(b);
            }
        }
        return Encoding.UTF8.GetString(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(bytes));
    }

    /// <summary>A decoder for ids that arrive one at a time (generation); see <see cref="TokenStreamDecoder"/>.</summary>
    public TokenStreamDecoder CreateStreamDecoder(bool skipSpecialTokens = false) => new(this, skipSpecialTokens);

    /// <summary>The raw bytes <paramref name="id"/> stands for, or null when it is a special token being skipped.</summary>
    internal byte[]? GetTokenBytes(int id, bool skipSpecialTokens)
    {
        if ((uint)id >= (uint)VocabSize || _tokenBytes[id] is not byte[] bytes)
        {
            throw new ArgumentOutOfRangeException(nameof(id), id, $"token id {id} is not in the vocabulary (size {VocabSize})");
        }
        return skipSpecialTokens && _special[id] ? null : bytes;
    }

    /// <summary>Encodes text that contains no added token: pre-tokenize, map to byte-level characters, merge.</summary>
    private void EncodeOrdinary(string text, List<int> ids)
    {
        if (text.Length == 0)
        {
            return;
        }
        if (_addPrefixSpace && text[0] != ' ')
        {
            text = " " + text;
        }
        if (!_useRegex)
        {
            EncodePiece(text, ids);
            return;
        }
        var pieces = new List<(int Start, int Length)>();
        Gpt2PreTokenizer.Split(text, pieces);
        foreach (var (start, length) in pieces)
        {
            EncodePiece(text.AsSpan(start, length), ids);
        }
    }

    private void EncodePiece(ReadOnlySpan<char> piece, List<int> ids)
    {
        var byteCount = Encoding.UTF8.GetByteCount(piece);
        if (byteCount > 1024)
        {
            _model.Encode(ToByteLevel(piece), ids);
            return;
        }
        Span<byte> bytes = stackalloc byte[byteCount];
        Span<char> mapped = stackalloc char[byteCount];
        Encoding.UTF8.GetBytes(piece, bytes);
        for (var i = 0; i < byteCount; i++)
        {
            mapped[i] = ByteLevelAlphabet.ByteToChar(bytes[i]);
        }
        _model.Encode(mapped, ids);
    }

    /// <summary>UTF-8 bytes of the text, one byte-level character each (a lone surrogate encodes as U+FFFD).</summary>
    internal static string ToByteLevel(ReadOnlySpan<char> text)
    {
        var bytes = Encoding.UTF8.GetBytes(text.ToArray());
        var chars = new char[bytes.Length];
        for (var i = 0; i < bytes.Length; i++)
        {
            chars[i] = ByteLevelAlphabet.ByteToChar(bytes[i]);
        }
        return new string(chars);
    }

    /// <summary>
    /// The bytes a token stands for: byte-level characters map back to their bytes; a token with any other
    /// character (an added token such as "  " or "&lt;|endoftext|&gt;" typed verbatim) stands for its own UTF-8.
    /// </summary>
    private static byte[] TokenBytes(string token)
    {
        var bytes = new byte[token.Length];
        for (var i = 0; i < token.Length; i++)
        {
            var b = ByteLevelAlphabet.CharToByte(token[i]);
            if (b < 0)
            {
                return Encoding.UTF8.GetBytes(token);
            }
            bytes[i] = (byte)b;
        }
        return bytes;
    }

    /// <summary>
    /// A .NET string may hold a lone surrogate, which is not a character: it would be encoded as U+FFFD anyway,
    /// but the normalizer throws on it, so it becomes U+FFFD up front.
    /// </summary>
    private static string ReplaceLoneSurrogates(string text)
    {
        char[]? fixedText = null;
        for (var i = 0; i < text.Length; i++)
        {
            if (!char.IsSurrogate(text[i]))
            {
                continue;
            }
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                i++;
                continue;
            }
            fixedText ??= text.ToCharArray();
            fixedText[i] = '\uFFFD';
        }
        return fixedText is null ? text : new string(fixedText);
    }

    private string Normalize(string text)
    {
        foreach (var form in _normalizers)
        {
            text = text.Normalize(form);
        }
        return text;
    }
}
