namespace Mamba.Tokenization;

/// <summary>An entry of <c>added_tokens</c>: text matched verbatim before pre-tokenization and given a fixed id.</summary>
internal sealed record AddedToken(int Id, string Content, bool Special, bool Normalized, bool SingleWord, bool LeftStrip, bool RightStrip);

/// <summary>
/// Finds added tokens in text the way the reference does: leftmost-longest, non-overlapping matches (so "    "
/// wins over "  " at the same position), skipping single-word tokens glued to a word, and widening lstrip/rstrip
/// tokens over neighbouring whitespace.
/// </summary>
internal sealed class AddedTokenMatcher
{
    private sealed class Node
    {
        public Dictionary<char, Node>? Children;
        public AddedToken? Token;
    }

    private readonly Node _root = new();

    public AddedTokenMatcher(IEnumerable<(string Pattern, AddedToken Token)> patterns)
    {
        foreach (var (pattern, token) in patterns)
        {
            if (pattern.Length == 0)
            {
                continue;
            }
            var node = _root;
            foreach (var c in pattern)
            {
                node.Children ??= [];
                if (!node.Children.TryGetValue(c, out var child))
                {
                    child = new Node();
                    node.Children[c] = child;
                }
                node = child;
            }
            // The first registration wins, as in the reference where a duplicate content keeps its first id.
            node.Token ??= token;
        }
    }

    public bool IsEmpty => _root.Children is null;

    /// <summary>Splits <paramref name="text"/> into (start, length, token) segments; token is null for the text between matches.</summary>
    public List<(int Start, int Length, AddedToken? Token)> Split(string text)
    {
        var segments = new List<(int, int, AddedToken?)>();
        var segmentStart = 0;
        var searchFrom = 0;
        while (searchFrom < text.Length)
        {
            if (!TryMatchLeftmostLongest(text, searchFrom, out var start, out var length, out var token))
            {
                break;
            }
            searchFrom = start + length;
            if (token.SingleWord)
            {
                var glued = (start > 0 && IsWordCharBefore(text, start)) || (start + length < text.Length && IsWordCharAt(text, start + length));
                if (glued)
                {
                    continue;
                }
            }
            var end = start + length;
            if (token.LeftStrip)
            {
                // Absorb whitespace on the left, but never what an earlier match already took.
                var s = start;
                while (s > segmentStart && Gpt2PreTokenizer.IsWhitespace(text[s - 1]))
                {
                    s--;
                }
                start = s;
            }
            if (token.RightStrip)
            {
                while (end < text.Length && Gpt2PreTokenizer.IsWhitespace(text[end]))
                {
                    end++;
                }
            }
            if (start > segmentStart)
            {
                segments.Add((segmentStart, start - segmentStart, null));
            }
            segments.Add((start, end - start, token));
            segmentStart = end;
            searchFrom = Math.Max(searchFrom, end);
        }
        if (segmentStart < text.Length)
        {
            segments.Add((segmentStart, text.Length - segmentStart, null));
        }
        return segments;
    }

    private bool TryMatchLeftmostLongest(string text, int from, out int start, out int length, out AddedToken token)
    {
        for (var i = from; i < text.Length; i++)
        {
            var node = _root;
            AddedToken? best = null;
            var bestLength = 0;
            for (var j = i; j < text.Length && node.Children is not null && node.Children.TryGetValue(text[j], out var child); j++)
            {
                node = child;
                if (node.Token is not null)
                {
                    best = node.Token;
                    bestLength = j - i + 1;
                }
            }
            if (best is not null)
            {
                start = i;
                length = bestLength;
                token = best;
                return true;
            }
        }
        start = length = 0;
        token = null!;
        return false;
    }

    private static bool IsWordCharBefore(string text, int index)
    {
        var c = text[index - 1];
        var codePoint = char.IsLowSurrogate(c) && index >= 2 && char.IsHighSurrogate(text[index - 2]) ? char.ConvertToUtf32(text[index - 2], c) : c;
        return Gpt2PreTokenizer.IsWordCharacter(codePoint);
    }

    private static bool IsWordCharAt(string text, int index)
    {
        var c = text[index];
        var codePoint = char.IsHighSurrogate(c) && index + 1 < text.Length && char.IsLowSurrogate(text[index + 1]) ? char.ConvertToUtf32(c, text[index + 1]) : c;
        return Gpt2PreTokenizer.IsWordCharacter(codePoint);
    }
}
