using System.Text;

namespace Mamba.Tokenization;

/// <summary>
/// The byte-level BPE tokenizer of Mamba checkpoints (the GPT-NeoX tokenizer), loaded from a Hugging Face
/// <c>tokenizer.json</c>, producing the same ids as the reference <c>tokenizers</c> library: added tokens are
/// split off first (leftmost-longest; special ones before normalization, "normalized" ones after it), the rest is
/// normalized (NFC etc.), split with the GPT-2 pattern, mapped byte by byte to the byte-level alphabet, and merged.
/// </summary>
/// <remarks>
/// Written here rather than on Microsoft.ML.Tokenizers 2.0.1: its BpeTokenizer (ByteLevel, GPT-2 RegexPreTokenizer,
/// special tokens) reproduced 57 of the 62 reference cases; it matched the GPT-NeoX whitespace added tokens
/// ("  ", "    ", ...) shortest-first instead of leftmost-longest (4 spaces became two 2-space tokens), has no
/// notion of added tokens matched after normalization, and a .NET regex splits letters outside the BMP as
/// surrogates. Truncation and padding settings of the file are ignored (a prompt is never cut or padded). Instances
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

    /// <summary>One more than the highest token id (model vocabulary and added tokens).</summary>
    public int VocabSize { get; }

    /// <summary>Beginning-of-sequence id: tokenizer_config's bos_token, else the token the post-processor puts first, else &lt;|endoftext|&gt; when present.</summary>
    public int? BosTokenId { get; }

    /// <summary>End-of-sequence id: tokenizer_config's eos_token, else the token the post-processor puts last, else &lt;|endoftext|&gt; when present.</summary>
    public int? EosTokenId { get; }

    /// <summary>The vocabulary string of <paramref name="id"/> (byte-level form, e.g. "Ġthe"), or null when no token has that id.</summary>
    public string? TokenToString(int id) => (uint)id < (uint)VocabSize ? _tokens[id] : null;

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
            _model.Encode(ToByteLevel(text), ids);
            return;
        }
        var pieces = new List<(int Start, int Length)>();
        Gpt2PreTokenizer.Split(text, pieces);
        foreach (var (start, length) in pieces)
        {
            _model.Encode(ToByteLevel(text.AsSpan(start, length)), ids);
        }
    }

    /// <summary>UTF-8 bytes of the text, one byte-level character each (a lone surrogate encodes as U+FFFD).</summary>
    internal static string ToByteLevel(ReadOnlySpan<char> text)
    {
        var byteCount = Encoding.UTF8.GetByteCount(text);
        Span<byte> bytes = byteCount <= 512 ? stackalloc byte[byteCount] : new byte[byteCount];
        Encoding.UTF8.GetBytes(text, bytes);
        return string.Create(byteCount, bytes.ToArray(), static (chars, b) =>
        {
            for (var i = 0; i < b.Length; i++)
            {
                chars[i] = ByteLevelAlphabet.ByteToChar(b[i]);
            }
        });
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
