using System.Collections.Concurrent;

namespace Mamba.Tokenization;

/// <summary>
/// The BPE model of a byte-level tokenizer: turns one pre-tokenized piece (already mapped to byte-level
/// characters) into vocabulary ids by applying merges lowest rank first, leftmost first among equal ranks, the
/// same order (and the same handling of stale queue entries) as the reference implementation.
/// </summary>
internal sealed class BytePairModel
{
    private const int CacheCapacity = 10_000;
    private const int MaxCachedPieceLength = 256;

    private readonly Dictionary<string, int> _vocab;
    private readonly Dictionary<long, (int Rank, int NewId)> _merges;
    private readonly ConcurrentDictionary<string, int[]> _cache = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, int[]>.AlternateLookup<ReadOnlySpan<char>> _cacheBySpan;
    // Id of each single byte-level character (pieces hold nothing else), -1 when the vocabulary lacks it.
    private readonly int[] _charIds;
    private readonly int? _unknownId;
    private readonly bool _fuseUnknown;
    private readonly bool _ignoreMerges;

    public BytePairModel(Dictionary<string, int> vocab, Dictionary<long, (int Rank, int NewId)> merges, int? unknownId, bool fuseUnknown, bool ignoreMerges)
    {
        _vocab = vocab;
        _merges = merges;
        _unknownId = unknownId;
        _fuseUnknown = fuseUnknown;
        _ignoreMerges = ignoreMerges;
        _cacheBySpan = _cache.GetAlternateLookup<ReadOnlySpan<char>>();
        _charIds = new int[ByteLevelAlphabet.MaxChar + 1];
        for (var c = 0; c < _charIds.Length; c++)
        {
            _charIds[c] = vocab.TryGetValue(((char)c).ToString(), out var id) ? id : -1;
        }
    }

    public static long PairKey(int left, int right) => ((long)left << 32) | (uint)right;

    /// <summary>Appends the ids of <paramref name="piece"/> (byte-level characters only) to <paramref name="ids"/>.</summary>
    public void Encode(ReadOnlySpan<char> piece, List<int> ids)
    {
        if (piece.Length == 1 && _charIds[piece[0]] >= 0)
        {
            ids.Add(_charIds[piece[0]]);
            return;
        }
        if (_cacheBySpan.TryGetValue(piece, out var cached))
        {
            ids.AddRange(cached);
            return;
        }
        var key = piece.ToString();
        if (_ignoreMerges && _vocab.TryGetValue(key, out var whole))
        {
            ids.Add(whole);
            return;
        }
        var result = Merge(piece);
        if (piece.Length <= MaxCachedPieceLength && _cache.Count < CacheCapacity)
        {
            _cache.TryAdd(key, result);
        }
        ids.AddRange(result);
    }

    private int[] Merge(ReadOnlySpan<char> piece)
    {
        // Initial symbols: one per character. Characters missing from the vocabulary become the unknown token
        // (consecutive ones fused when asked) or, without one, are dropped - as the reference does.
        var symbols = new List<int>(piece.Length);
        var lastWasUnknown = false;
        foreach (var c in piece)
        {
            var id = c < _charIds.Length ? _charIds[c] : -1;
            if (id >= 0)
            {
                symbols.Add(id);
                lastWasUnknown = false;
            }
            else if (_unknownId is int unk)
            {
                if (!(_fuseUnknown && lastWasUnknown))
                {
                    symbols.Add(unk);
                }
                lastWasUnknown = true;
            }
        }

        var n = symbols.Count;
        var tokens = symbols.ToArray();
        var prev = new int[n];
        var next = new int[n];
        var alive = new bool[n];
        for (var i = 0; i < n; i++)
        {
            prev[i] = i - 1;
            next[i] = i + 1 < n ? i + 1 : -1;
            alive[i] = true;
        }

        var queue = new PriorityQueue<(int Pos, int NewId), (int Rank, int Pos)>(Math.Max(n, 1));
        for (var i = 0; i + 1 < n; i++)
        {
            if (_merges.TryGetValue(PairKey(tokens[i], tokens[i + 1]), out var m))
            {
                queue.Enqueue((i, m.NewId), (m.Rank, i));
            }
        }

        while (queue.TryDequeue(out var top, out _))
        {
            var pos = top.Pos;
            if (!alive[pos] || next[pos] < 0)
            {
                continue;
            }
            var right = next[pos];
            // Entries go stale when a neighbour merged first; the pair now at pos must still produce this token.
            if (!_merges.TryGetValue(PairKey(tokens[pos], tokens[right]), out var current) || current.NewId != top.NewId)
            {
                continue;
            }
            tokens[pos] = top.NewId;
            alive[right] = false;
            next[pos] = next[right];
            if (next[right] >= 0)
            {
                prev[next[right]] = pos;
            }
            if (prev[pos] >= 0 && _merges.TryGetValue(PairKey(tokens[prev[pos]], tokens[pos]), out var withPrev))
            {
                queue.Enqueue((prev[pos], withPrev.NewId), (withPrev.Rank, prev[pos]));
            }
            if (next[pos] >= 0 && _merges.TryGetValue(PairKey(tokens[pos], tokens[next[pos]]), out var withNext))
            {
                queue.Enqueue((pos, withNext.NewId), (withNext.Rank, pos));
            }
        }

        var result = new List<int>(n);
        for (var i = n > 0 ? 0 : -1; i >= 0; i = next[i])
        {
            result.Add(tokens[i]);
        }
        return result.ToArray();
    }
}
