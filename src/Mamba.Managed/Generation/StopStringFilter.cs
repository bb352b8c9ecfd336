namespace Mamba.Generation;

/// <summary>Streams text while watching for stop strings: text that might be the start of a stop string is held back
/// until it is known not to be one, so a stop string never reaches the output, even split across pieces.</summary>
public sealed class StopStringFilter(IReadOnlyList<string> stopStrings)
{
    private readonly string[] _stops = stopStrings.Where(s => s.Length > 0).ToArray();
    private string _pending = "";

    /// <summary>Whether a stop string has been seen.</summary>
    public bool Stopped { get; private set; }

    /// <summary>Adds a piece of text; returns what can be emitted now.</summary>
    public string Push(string piece)
    {
        if (Stopped)
        {
            return "";
        }
        var text = _pending + piece;
        var cut = -1;
        foreach (var s in _stops)
        {
            var at = text.IndexOf(s, StringComparison.Ordinal);
            if (at >= 0 && (cut < 0 || at < cut))
            {
                cut = at;
            }
        }
        if (cut >= 0)
        {
            Stopped = true;
            _pending = "";
            return text[..cut];
        }
        // Hold back the longest tail that could still grow into a stop string.
        var hold = 0;
        foreach (var s in _stops)
        {
            for (var n = Math.Min(s.Length - 1, text.Length); n > hold; n--)
            {
                if (text.AsSpan(text.Length - n).SequenceEqual(s.AsSpan(0, n)))
                {
                    hold = n;
                    break;
                }
            }
        }
        _pending = text[^hold..];
        return text[..^hold];
    }

    /// <summary>What is still held back, at the end of generation.</summary>
    public string Flush()
    {
        var rest = Stopped ? "" : _pending;
        _pending = "";
        return rest;
    }
}
