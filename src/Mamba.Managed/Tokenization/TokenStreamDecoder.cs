using System.Text;

namespace Mamba.Tokenization;

/// <summary>
/// Turns token ids arriving one at a time into text without ever splitting a character: bytes of an incomplete
/// UTF-8 sequence (a character whose bytes span several tokens) are held back until the rest arrives. Bytes that
/// can no longer form a character become U+FFFD as soon as that is certain, and an incomplete tail at
/// <see cref="Flush"/>. The concatenation of every <see cref="Push"/> and the final <see cref="Flush"/> equals
/// <see cref="MambaTokenizer.Decode"/> of the same ids. Not thread-safe (one per stream).
/// </summary>
public sealed class TokenStreamDecoder
{
    private readonly MambaTokenizer _tokenizer;
    private readonly bool _skipSpecialTokens;
    // The framework's stateful UTF-8 decoder carries partial sequences between calls and substitutes invalid
    // input exactly as the one-shot decoding in Decode does.
    private readonly Decoder _utf8 = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: false).GetDecoder();
    private char[] _chars = new char[64];

    /// <summary>Creates a decoder for ids of <paramref name="tokenizer"/>.</summary>
    public TokenStreamDecoder(MambaTokenizer tokenizer, bool skipSpecialTokens = false)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        _tokenizer = tokenizer;
        _skipSpecialTokens = skipSpecialTokens;
    }

    /// <summary>Adds one id; returns the text that is now complete (possibly empty).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The id is not a token of the tokenizer.</exception>
    public string Push(int id)
    {
        var bytes = _tokenizer.GetTokenBytes(id, _skipSpecialTokens);
        return bytes is null ? string.Empty : Convert(bytes, flush: false);
    }

    /// <summary>Ends the stream: returns what is still held (an incomplete sequence as U+FFFD) and resets for reuse.</summary>
    public string Flush() => Convert([], flush: true);

    private string Convert(byte[] bytes, bool flush)
    {
        var needed = _utf8.GetCharCount(bytes, 0, bytes.Length, flush);
        if (_chars.Length < needed)
        {
            _chars = new char[Math.Max(needed, _chars.Length * 2)];
        }
        var count = _utf8.GetChars(bytes, 0, bytes.Length, _chars, 0, flush);
        return new string(_chars, 0, count);
    }
}
