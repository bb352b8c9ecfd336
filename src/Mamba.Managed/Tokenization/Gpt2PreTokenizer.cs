using System.Globalization;

namespace Mamba.Tokenization;

/// <summary>
/// Splits text the way the GPT-2 regular expression of the Hugging Face ByteLevel pre-tokenizer does:
/// <c>'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+</c>.
/// Written as a scanner over code points rather than a .NET <see cref="System.Text.RegularExpressions.Regex"/>
/// because .NET regexes see UTF-16 units: a letter or digit outside the BMP (𝐀, 𠜎, 𝟏) is two surrogates, which
/// <c>\p{L}</c> does not match, so the split (and then the ids) would differ from the reference.
/// </summary>
internal static class Gpt2PreTokenizer
{
    private enum CharClass
    {
        Letter,
        Number,
        Whitespace,
        Other,
    }

    /// <summary>Appends the (start, length) of every piece of <paramref name="text"/>, in order, to <paramref name="pieces"/>.</summary>
    public static void Split(ReadOnlySpan<char> text, List<(int Start, int Length)> pieces)
    {
        var i = 0;
        while (i < text.Length)
        {
            var end = MatchAt(text, i);
            pieces.Add((i, end - i));
            i = end;
        }
    }

    /// <summary>The end of the match that the regex finds at <paramref name="i"/> (every position matches something).</summary>
    private static int MatchAt(ReadOnlySpan<char> text, int i)
    {
        if (text[i] == '\'' && ContractionLength(text[(i + 1)..]) is var n and > 0)
        {
            return i + 1 + n;
        }

        // " ?\p{L}+", " ?\p{N}+" and " ?[^\s\p{L}\p{N}]+": an optional single ASCII space, then a run of one class.
        var runStart = i;
        if (text[i] == ' ' && i + 1 < text.Length && Classify(text, i + 1, out _) != CharClass.Whitespace)
        {
            runStart = i + 1;
        }
        var cls = Classify(text, runStart, out var width);
        if (cls != CharClass.Whitespace)
        {
            var j = runStart + width;
            while (j < text.Length && Classify(text, j, out width) == cls)
            {
                j += width;
            }
            return j;
        }

        // "\s+(?!\S)" then "\s+": a whitespace run, leaving its last character to the next piece when a
        // non-space follows (so that " word" keeps its space), unless the run is a single character.
        var k = i + 1;
        while (k < text.Length && Classify(text, k, out _) == CharClass.Whitespace)
        {
            k++;
        }
        if (k == text.Length || k - i == 1)
        {
            return k;
        }
        return k - 1;
    }

    /// <summary>Length of the contraction suffix ('s, 't, 're, 've, 'm, 'll, 'd; case-sensitive) after an apostrophe, or 0.</summary>
    private static int ContractionLength(ReadOnlySpan<char> rest)
    {
        if (rest.Length >= 2 && (rest.StartsWith("re") || rest.StartsWith("ve") || rest.StartsWith("ll")))
        {
            return 2;
        }
        return rest.Length >= 1 && rest[0] is 's' or 't' or 'm' or 'd' ? 1 : 0;
    }

    private static CharClass Classify(ReadOnlySpan<char> text, int i, out int width)
    {
        int codePoint = text[i];
        width = 1;
        if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
        {
            codePoint = char.ConvertToUtf32(text[i], text[i + 1]);
            width = 2;
        }
        return Classify(codePoint);
    }

    private static CharClass Classify(int codePoint)
    {
        // \s of the reference regex engine: \t \n \v \f \r, NEL and the Unicode separators (Zs, Zl, Zp).
        if (codePoint is >= 0x09 and <= 0x0D or 0x85)
        {
            return CharClass.Whitespace;
        }
        return CharUnicodeInfo.GetUnicodeCategory(codePoint) switch
        {
            UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
                or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter => CharClass.Letter,
            UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber => CharClass.Number,
            UnicodeCategory.SpaceSeparator or UnicodeCategory.LineSeparator or UnicodeCategory.ParagraphSeparator => CharClass.Whitespace,
            _ => CharClass.Other,
        };
    }

    /// <summary>Whether the code point is whitespace in the sense of the reference (Unicode White_Space).</summary>
    public static bool IsWhitespace(int codePoint) => Classify(codePoint) == CharClass.Whitespace;

    /// <summary>Whether the code point counts as part of a word for single-word added tokens (alphanumeric or '_').</summary>
    public static bool IsWordCharacter(int codePoint) => codePoint == '_' || Classify(codePoint) is CharClass.Letter or CharClass.Number;
}
