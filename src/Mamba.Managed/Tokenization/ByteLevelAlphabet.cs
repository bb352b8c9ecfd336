namespace Mamba.Tokenization;

/// <summary>
/// The GPT-2 byte-to-character table of byte-level BPE: every byte becomes one printable character, so that
/// vocabulary entries are plain strings. Printable Latin-1 bytes map to themselves; the other 68 bytes (controls,
/// space, DEL, NBSP, soft hyphen) map to U+0100 onward in byte order. Space therefore becomes 'Ġ' (U+0120).
/// </summary>
internal static class ByteLevelAlphabet
{
    private static readonly char[] ByteToCharTable = BuildByteToChar();
    private static readonly short[] CharToByteTable = BuildCharToByte();

    /// <summary>The highest character the table produces.</summary>
    public const char MaxChar = (char)0x143;

    public static char ByteToChar(byte b) => ByteToCharTable[b];

    /// <summary>The byte a table character stands for, or -1 for any other character.</summary>
    public static int CharToByte(char c) => c <= MaxChar ? CharToByteTable[c] : -1;

    private static bool MapsToItself(int b) => b is >= 0x21 and <= 0x7E or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;

    private static char[] BuildByteToChar()
    {
        var table = new char[256];
        var next = 256;
        for (var b = 0; b < 256; b++)
        {
            table[b] = MapsToItself(b) ? (char)b : (char)next++;
        }
        return table;
    }

    private static short[] BuildCharToByte()
    {
        var table = new short[MaxChar + 1];
        Array.Fill(table, (short)-1);
        for (var b = 0; b < 256; b++)
        {
            table[ByteToCharTable[b]] = (short)b;
        }
        return table;
    }
}
