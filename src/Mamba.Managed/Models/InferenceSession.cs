using Mamba.Modules;
using Mamba.Native;
using Mamba.Ops;
using Mamba.Runtime;
using Mamba.Tensors;

namespace Mamba.Models;

/// <summary>
/// Inference state for a fixed number of sequences: per-layer convolution and SSM states plus every activation
/// buffer, allocated once here (those of prefilling several sequences at once on their first use). Sequences are
/// prefilled on their own or several together (no padding), in pieces of at most
/// <see cref="MambaModelOptions.PrefillChunkSize"/> tokens each; then all sequences advance together one token per
/// <see cref="Decode"/>, which allocates nothing. Use from one thread at a time.
/// </summary>
public sealed class InferenceSession : IDisposable
{
    private readonly MambaModel _model;
    private readonly MambaContext _ctx;
    private readonly int _chunk;
    private readonly long _hidden, _vocab;
    private readonly MixerState[] _states;
    private readonly Buffers _prefill;
    private readonly Buffers _decode;
    private readonly Action[] _decodeSteps;
    private readonly Tensor[] _logitRows;
    // What _decode.Ids holds on the device (valid once written): the sampler draws straight into that buffer, so
    // feeding the drawn tokens back to Decode uploads nothing and the step reads its input from the device.
    private readonly int[] _deviceIds;
    private bool _deviceIdsValid;
    private readonly int[] _lengths;
    private Tensor? _chunkLogits;
    // Made the first time several sequences prefill together: their buffers (when the budget exceeds one piece) and a
    // state to gather sequences that are not consecutive rows into.
    private Buffers? _batchPrefill;
    private MixerState? _staging;
    private Tensor? _history;
    private int[] _hostHistory = [];
    private int _historyCapacity;
    private bool _disposed;
    // Decode as a CUDA graph: captured after one direct step (which sizes the workspace), then replayed. It reads
    // its token ids from _decode.Ids and writes Logits, both fixed device buffers.
    private bool _useGraph;
    private bool _decodeWarm;
    private MambaGraph? _decodeGraph;

    internal InferenceSession(MambaModel model, int batchSize)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        _model = model;
        _ctx = model.Context;
        BatchSize = batchSize;
        _chunk = model.PrefillChunkSize;
        _hidden = model.Config.HiddenSize;
        _vocab = model.Config.VocabSize;
        _lengths = new int[batchSize];
        var act = model.ActivationDType;
        _states = new MixerState[model.Layers.Count];
        try
        {
            for (var i = 0; i < _states.Length; i++)
            {
                _states[i] = model.Layers[i].Mixer.CreateState(_ctx, batchSize, act);
            }
            _prefill = new Buffers(model, _chunk, Math.Min(batchSize, _chunk), decode: false);
            _decode = new Buffers(model, batchSize, batchSize, decode: true);
            Logits = Tensor.Empty(_ctx, DType.Float32, batchSize, _vocab);
            _deviceIds = new int[batchSize];
            _logitRows = Enumerable.Range(0, batchSize).Select(b => Logits.Slice(0, b, 1)).ToArray();
            _decodeSteps = BuildDecode();
            _useGraph = model.Options.UseCudaGraphs && MambaGraph.IsSupported(_ctx);
        }
        catch
        {
            Dispose();
            throw;
        }
        Reset();
    }

    /// <summary>Number of sequences.</summary>
    public int BatchSize { get; }

    /// <summary>Tokens consumed so far by each sequence.</summary>
    public IReadOnlyList<int> Lengths => _lengths;

    /// <summary>(batch, vocab) float32: the next-token logits of every sequence after its last prefill or decode.</summary>
    public Tensor Logits { get; }

    /// <summary>The model this session runs.</summary>
    public MambaModel Model => _model;

    /// <summary>Empties every sequence (zero states).</summary>
    public void Reset()
    {
        for (var b = 0; b < BatchSize; b++)
        {
            Reset(b);
        }
    }

    /// <summary>Empties one sequence.</summary>
    public void Reset(int sequence)
    {
        CheckSequence(sequence);
        foreach (var s in _states)
        {
            TensorFill.Bytes(s.Conv.Slice(0, sequence, 1), 0);
            TensorFill.Bytes(s.Ssm.Slice(0, sequence, 1), 0);
        }
        _lengths[sequence] = 0;
    }

    /// <summary>Feeds <paramref name="tokens"/> to sequence <paramref name="sequence"/>, continuing from its state, and leaves
    /// the logits of its last token in row <paramref name="sequence"/> of <see cref="Logits"/>. With
    /// <paramref name="onLogits"/>, the logits of every position are handed over piece by piece, as (rows, vocab) float32
    /// with the position of the first row.</summary>
    public void Prefill(int sequence, ReadOnlySpan<int> tokens, Action<int, Tensor>? onLogits = null, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        CheckSequence(sequence);
        if (tokens.IsEmpty)
        {
            throw new ArgumentException("a prompt needs at least one token", nameof(tokens));
        }
        CheckTokens(tokens);
        var p = _prefill;
        for (var start = 0; start < tokens.Length; start += _chunk)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var len = Math.Min(_chunk, tokens.Length - start);
            p.Ids.Slice(0, 0, len).CopyFrom(tokens.Slice(start, len));
            RunLayers(p, [sequence], len);
            var normed = p.Normed.View([len, _hidden]);
            if (onLogits is not null)
            {
                _chunkLogits ??= Tensor.Empty(_ctx, DType.Float32, _chunk, _vocab);
                var logits = _chunkLogits.View([len, _vocab]);
                using (_ctx.Op("lm_head"))
                {
                    Kernels.Linear(_ctx, normed, _model.LmHead, logits);
                }
                onLogits(start, logits);
            }
            if (start + len == tokens.Length)
            {
                using (_ctx.Op("lm_head"))
                {
                    Kernels.Linear(_ctx, p.Normed.View([1, _hidden], null, (len - 1) * _hidden), _model.LmHead, _logitRows[sequence]);
                }
            }
        }
        _lengths[sequence] += tokens.Length;
    }

    /// <summary>Feeds each prompt to its sequence, as <see cref="Prefill(int, ReadOnlySpan{int}, Action{int, Tensor}?, CancellationToken)"/>
    /// does one by one, but runs the sequences together: a piece takes the same number of tokens from each sequence
    /// that still has some (at most <see cref="MambaModelOptions.PrefillChunkSize"/>, and at most
    /// <see cref="MambaModelOptions.PrefillBatchTokens"/> over all of them), so that the projections run on all of their
    /// rows at once and the scan or SSD on a batch. Prompts of different lengths are fine: a sequence drops out of the
    /// pieces when its prompt ends. Each sequence ends with the logits of its last token in its row of
    /// <see cref="Logits"/>; <see cref="Lengths"/> grows piece by piece. The sequences must differ from each other.</summary>
    public void Prefill(IReadOnlyList<int> sequences, IReadOnlyList<ReadOnlyMemory<int>> prompts, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(sequences);
        ArgumentNullException.ThrowIfNull(prompts);
        if (sequences.Count != prompts.Count)
        {
            throw new ArgumentException($"{sequences.Count} sequences but {prompts.Count} prompts: each sequence needs its prompt", nameof(prompts));
        }
        if (sequences.Count == 0)
        {
            throw new ArgumentException("at least one sequence is needed", nameof(sequences));
        }
        var given = new bool[BatchSize];
        for (var i = 0; i < sequences.Count; i++)
        {
            CheckSequence(sequences[i]);
            if (given[sequences[i]])
            {
                throw new ArgumentException($"sequence {sequences[i]} is given twice", nameof(sequences));
            }
            given[sequences[i]] = true;
            if (prompts[i].IsEmpty)
            {
                throw new ArgumentException($"the prompt of sequence {sequences[i]} is empty; a prompt needs at least one token", nameof(prompts));
            }
            CheckTokens(prompts[i].Span);
        }
        var budget = BatchPrefillRows;
        var p = BatchPrefillBuffers();
        var fed = new int[sequences.Count];
        var active = Enumerable.Range(0, sequences.Count).ToList();
        var hostIds = new int[budget];
        while (active.Count > 0)
        {
            cancellationToken.ThrowIfCancellationRequested();
            // The first sequences still going, as many as the budget has a row for; the rest join as these end.
            var group = active.Count <= budget ? active.ToArray() : active.GetRange(0, budget).ToArray();
            var len = Math.Min(_chunk, budget / group.Length);
            foreach (var e in group)
            {
                len = Math.Min(len, prompts[e].Length - fed[e]);
            }
            var ids = new int[group.Length];
            for (var j = 0; j < group.Length; j++)
            {
                ids[j] = sequences[group[j]];
                prompts[group[j]].Span.Slice(fed[group[j]], len).CopyTo(hostIds.AsSpan(j * len, len));
            }
            p.Ids.Slice(0, 0, group.Length * len).CopyFrom<int>(hostIds.AsSpan(0, group.Length * len));
            RunLayers(p, ids, len);
            var ending = new List<int>();
            for (var j = 0; j < group.Length; j++)
            {
                var e = group[j];
                fed[e] += len;
                _lengths[ids[j]] += len;
                if (fed[e] == prompts[e].Length)
                {
                    ending.Add(j);
                    active.Remove(e);
                }
            }
            if (ending.Count > 0)
            {
                StoreLastLogits(p, ids, len, ending);
            }
        }
    }

    // The logits of the last token of each sequence in `ending` (indexes into `sequences`, the piece's sequences in
    // order) into its row of Logits: one projection when the whole piece ends on consecutive rows (a batch of prompts of
    // one length), else one per ending sequence.
    private void StoreLastLogits(Buffers p, int[] sequences, int len, List<int> ending)
    {
        using var _ = _ctx.Op("lm_head");
        var lastRows = p.Normed.View([sequences.Length, _hidden], [len * _hidden, 1], (len - 1) * _hidden);
        if (ending.Count == sequences.Length && Consecutive(sequences))
        {
            Kernels.Linear(_ctx, lastRows, _model.LmHead, Logits.Slice(0, sequences[0], sequences.Length));
            return;
        }
        foreach (var j in ending)
        {
            Kernels.Linear(_ctx, lastRows.Slice(0, j, 1), _model.LmHead, _logitRows[sequences[j]]);
        }
    }

    // Embedding, every block and the final norm over a piece of `len` tokens of each of `sequences` (their ids already
    // in p.Ids, one sequence after another), leaving the normalized last hidden states in p.Normed.
    private void RunLayers(Buffers p, int[] sequences, int len)
    {
        var rows = (long)sequences.Length * len;
        var ids = p.Ids.Slice(0, 0, rows);
        var emb = p.Embedded.View([rows, _hidden]);
        var residual = p.Residual.View([rows, _hidden]);
        var normed = p.Normed.View([rows, _hidden]);
        var mixed = p.Mixed.View([rows, _hidden]);
        using (_ctx.Op("embedding"))
        {
            _model.Embedding.Forward(_ctx, ids, emb);
        }
        // Consecutive sequences are rows of the state as they are; others are gathered into a staging state per layer
        // and scattered back after it.
        var consecutive = Consecutive(sequences);
        for (var i = 0; i < _states.Length; i++)
        {
            var layer = _model.Layers[i];
            using (_ctx.Op("rmsnorm"))
            {
                if (i == 0)
                {
                    layer.Norm.Forward(_ctx, emb, normed, null, residual);
                }
                else
                {
                    layer.Norm.Forward(_ctx, mixed, normed, residual, residual);
                }
            }
            if (consecutive)
            {
                layer.Mixer.Prefill(_ctx, normed, mixed, sequences.Length, len, p.Scratch, _states[i], sequences[0]);
                continue;
            }
            var staging = StagingState();
            using (_ctx.Op("state_gather"))
            {
                CopyStateRows(_states[i], sequences, staging, toStaging: true);
            }
            layer.Mixer.Prefill(_ctx, normed, mixed, sequences.Length, len, p.Scratch, staging, 0);
            using (_ctx.Op("state_gather"))
            {
                CopyStateRows(_states[i], sequences, staging, toStaging: false);
            }
        }
        using (_ctx.Op("final_norm"))
        {
            _model.FinalNorm.Forward(_ctx, mixed, normed, residual);
        }
    }

    private static bool Consecutive(int[] sequences)
    {
        for (var j = 1; j < sequences.Length; j++)
        {
            if (sequences[j] != sequences[0] + j)
            {
                return false;
            }
        }
        return true;
    }

    private static void CopyStateRows(MixerState state, int[] sequences, MixerState staging, bool toStaging)
    {
        for (var j = 0; j < sequences.Length; j++)
        {
            var (conv, ssm) = (state.Conv.Slice(0, sequences[j], 1), state.Ssm.Slice(0, sequences[j], 1));
            var (stagedConv, stagedSsm) = (staging.Conv.Slice(0, j, 1), staging.Ssm.Slice(0, j, 1));
            if (toStaging)
            {
                conv.CopyTo(stagedConv);
                ssm.CopyTo(stagedSsm);
            }
            else
            {
                stagedConv.CopyTo(conv);
                stagedSsm.CopyTo(ssm);
            }
        }
    }

    // Rows of the batched prefill buffers: the model's token budget, or the batch's pieces if fewer.
    private int BatchPrefillRows => (int)Math.Min(_model.PrefillBatchTokens, (long)BatchSize * _chunk);

    private Buffers BatchPrefillBuffers()
    {
        if (BatchPrefillRows <= _chunk)
        {
            return _prefill;
        }
        return _batchPrefill ??= new Buffers(_model, BatchPrefillRows, Math.Min(BatchSize, BatchPrefillRows), decode: false);
    }

    private MixerState StagingState() =>
        _staging ??= _model.Layers[0].Mixer.CreateState(_ctx, Math.Min(BatchSize, BatchPrefillRows), _model.ActivationDType);

    /// <summary>Feeds one token to every sequence (finished ones may be fed anything valid) and leaves the next-token
    /// logits in <see cref="Logits"/>. On CUDA the second call records the step as a CUDA graph (see
    /// <see cref="MambaModelOptions.UseCudaGraphs"/>) and later calls replay it; apart from that one capture it
    /// allocates nothing.</summary>
    public void Decode(ReadOnlySpan<int> tokens)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (tokens.Length != BatchSize)
        {
            throw new ArgumentException($"decode needs one token per sequence ({BatchSize}); got {tokens.Length}", nameof(tokens));
        }
        CheckTokens(tokens);
        if (!_deviceIdsValid || !tokens.SequenceEqual(_deviceIds))
        {
            _decode.Ids.CopyFrom(tokens);
            tokens.CopyTo(_deviceIds);
            _deviceIdsValid = true;
        }
        if (_decodeGraph is null && _useGraph && _decodeWarm)
        {
            TryCaptureDecode();
        }
        if (_decodeGraph is not null)
        {
            _decodeGraph.Launch();
        }
        else
        {
            RunDecodeSteps();
            _decodeWarm = true;
        }
        for (var b = 0; b < BatchSize; b++)
        {
            _lengths[b]++;
        }
    }

    /// <summary>Copies the current logits of one sequence to the host.</summary>
    public void CopyLogits(int sequence, Span<float> destination)
    {
        CheckSequence(sequence);
        _logitRows[sequence].CopyTo(destination);
    }

    /// <summary>Draws the next token of every sequence from <see cref="Logits"/> with the native sampler.
    /// <paramref name="step"/> is mixed with the seed; the repetition penalty sees the history given to
    /// <see cref="SetHistoryCapacity"/>/<see cref="AppendHistory"/>.</summary>
    public void Sample(SamplingParams parameters, ulong step, Span<int> tokens)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        Tensor? history = null;
        if (parameters.RepetitionPenalty != 1f && _history is not null)
        {
            _history.CopyFrom<int>(_hostHistory);
            history = _history;
        }
        // Sampling stays outside the decode graph: its step counter, parameters and history change every call and
        // are passed by value, and it is one launch against the graph's one.
        _deviceIdsValid = false;  // until the draw is known to have succeeded
        Kernels.Sample(_ctx, Logits, _decode.Ids, parameters, step, history);
        _decode.Ids.CopyTo(tokens);
        tokens.CopyTo(_deviceIds);
        _deviceIdsValid = true;
    }

    /// <summary>Makes room for <paramref name="capacity"/> tokens of history per sequence and clears it.</summary>
    public void SetHistoryCapacity(int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        if (capacity != _historyCapacity)
        {
            _history?.Dispose();
            _history = Tensor.Empty(_ctx, DType.Int32, BatchSize, capacity);
            _hostHistory = new int[BatchSize * capacity];
            _historyCapacity = capacity;
        }
        Array.Fill(_hostHistory, -1);
        _historyFill = new int[BatchSize];
    }

    private int[] _historyFill = [];

    /// <summary>Records tokens of one sequence for the repetition penalty (the oldest fall out when full).</summary>
    public void AppendHistory(int sequence, ReadOnlySpan<int> tokens)
    {
        CheckSequence(sequence);
        if (_historyCapacity == 0)
        {
            return;
        }
        foreach (var t in tokens)
        {
            // A ring buffer: the penalty does not depend on order.
            _hostHistory[sequence * _historyCapacity + _historyFill[sequence] % _historyCapacity] = t;
            _historyFill[sequence]++;
        }
    }

    /// <summary>Whether <see cref="Decode"/> replays a captured CUDA graph (after its first, direct step).</summary>
    public bool DecodesWithGraph => _decodeGraph is not null;

    /// <summary>Why the decode step could not be captured (it then runs directly), or null.</summary>
    public string? GraphCaptureFailure { get; private set; }

    /// <summary>The captured decode step (null before capture or without graphs), for overhead measurements.</summary>
    internal MambaGraph? DecodeGraph => _decodeGraph;

    /// <summary>(batch) int32 device buffer the decode step reads its tokens from and the sampler draws into.</summary>
    internal Tensor DecodeIds => _decode.Ids;

    private void TryCaptureDecode()
    {
        try
        {
            _decodeGraph = MambaGraph.Capture(_ctx, RunDecodeSteps);
        }
        catch (MambaException e)
        {
            GraphCaptureFailure = e.Message;
            // A step that cannot be captured runs directly from now on (capturing ran nothing, so the step is
            // still to be done); an error that is not about capture then surfaces from the direct run.
            _useGraph = false;
        }
    }

    private void RunDecodeSteps()
    {
        foreach (var step in _decodeSteps)
        {
            step();
        }
    }

    private Action[] BuildDecode()
    {
        var d = _decode;
        var steps = new List<Action>();
        var emb = d.Embedded;
        steps.Add(() => _model.Embedding.Forward(_ctx, d.Ids, emb));
        // The residual stream and the blocks' outputs alternate between two buffers each: a block reads one and writes
        // the other, so that a step that folds the norm into in_proj never writes what its other blocks still read.
        Tensor? residual = null;
        var x = emb;
        for (var i = 0; i < _states.Length; i++)
        {
            var layer = _model.Layers[i];
            var residualOut = i % 2 == 0 ? d.Residual : d.ResidualNext;
            var y = i % 2 == 0 ? d.Mixed : d.MixedNext;
            steps.Add(layer.Mixer.CreateBlockDecodeStep(_ctx, layer.Norm, x, residual, residualOut, d.Normed, y, d.Scratch, _states[i]));
            residual = residualOut;
            x = y;
        }
        var (lastResidual, lastMixed) = (residual!, x);
        steps.Add(() => _model.FinalNorm.Forward(_ctx, lastMixed, d.Normed, lastResidual));
        steps.Add(() => Kernels.Linear(_ctx, d.Normed, _model.LmHead, Logits));
        return steps.ToArray();
    }

    private void CheckSequence(int sequence)
    {
        if ((uint)sequence >= (uint)BatchSize)
        {
            throw new ArgumentOutOfRangeException(nameof(sequence), $"sequence {sequence} does not exist in a session of {BatchSize}");
        }
    }

    private void CheckTokens(ReadOnlySpan<int> tokens)
    {
        foreach (var t in tokens)
        {
            if ((uint)t >= (uint)_vocab)
            {
                throw new ArgumentOutOfRangeException(nameof(tokens), $"token id {t} is outside the vocabulary [0, {_vocab})");
            }
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        _decodeGraph?.Dispose();
        foreach (var s in _states)
        {
            s?.Dispose();
        }
        _prefill?.Dispose();
        _batchPrefill?.Dispose();
        _staging?.Dispose();
        _decode?.Dispose();
        Logits?.Dispose();
        _chunkLogits?.Dispose();
        _history?.Dispose();
    }

    /// <summary>Activations for up to <c>rows</c> tokens of up to <c>sequences</c> sequences at once.</summary>
    private sealed class Buffers : TensorSet
    {
        public Buffers(MambaModel m, int rows, int sequences, bool decode)
        {
            var c = m.Context;
            long h = m.Config.HiddenSize;
            var act = m.ActivationDType;
            Ids = Alloc(c, DType.Int32, rows);
            // The embedding writes in the table's own type; the first norm reads any float type.
            Embedded = Alloc(c, m.Embedding.Table.DType, rows, h);
            Residual = Alloc(c, m.ResidualDType, rows, h);
            // Decode alternates two residual and two output buffers (BuildDecode); prefill updates one in place.
            ResidualNext = decode ? Alloc(c, m.ResidualDType, rows, h) : Residual;
            Normed = Alloc(c, act, rows, h);
            Mixed = Alloc(c, act, rows, h);
            MixedNext = decode ? Alloc(c, act, rows, h) : Mixed;
            Scratch = m.Layers[0].Mixer.CreateScratch(c, rows, sequences, act);
        }

        public Tensor Ids { get; }
        public Tensor Embedded { get; }
        public Tensor Residual { get; }
        public Tensor ResidualNext { get; }
        public Tensor Normed { get; }
        public Tensor Mixed { get; }
        public Tensor MixedNext { get; }
        public TensorSet Scratch { get; }

        public override void Dispose()
        {
            Scratch.Dispose();
            base.Dispose();
        }
    }
}
