using System.Buffers.Binary;
using System.Numerics;
using System.Text;
using Mamba.Tensors;

namespace Mamba.Loading;

/// <summary>
/// A pickle interpreter that builds only plain data (None, bools, ints, floats, strings, tuples, lists, dicts)
/// and PyTorch tensor references. The only callables it knows are <c>collections.OrderedDict</c>,
/// <c>torch._utils._rebuild_tensor_v2</c> and <c>torch._utils._rebuild_parameter</c>, and the only globals the
/// torch storage classes; anything else is refused, so no pickle can make it run code.
/// </summary>
internal sealed class RestrictedUnpickler
{
    /// <summary>A storage of the archive: persistent id ('storage', type, key, location, numel).</summary>
    public sealed record StorageRef(DType DType, string Key, long Numel);

    /// <summary>A tensor: a strided view of a storage.</summary>
    public sealed record TensorRef(StorageRef Storage, long Offset, long[] Shape, long[] Stride);

    /// <summary>A dict, keeping insertion order.</summary>
    public sealed class PickleDict : List<KeyValuePair<object, object?>>;

    private sealed record Global(string Module, string Name);

    private sealed class Mark;

    private static readonly Dictionary<string, DType?> StorageTypes = new(StringComparer.Ordinal)
    {
        ["FloatStorage"] = DType.Float32,
        ["HalfStorage"] = DType.Float16,
        ["BFloat16Storage"] = DType.BFloat16,
        ["IntStorage"] = DType.Int32,
        ["LongStorage"] = DType.Int64,
        ["DoubleStorage"] = null,
        ["ByteStorage"] = null,
        ["CharStorage"] = null,
        ["ShortStorage"] = null,
        ["BoolStorage"] = null,
    };

    private readonly string _file;
    private readonly byte[] _data;
    private int _pos;
    private readonly List<object?> _stack = [];
    private readonly Dictionary<long, object?> _memo = [];

    private RestrictedUnpickler(string file, byte[] data)
    {
        _file = file;
        _data = data;
    }

    public static object? Load(string file, byte[] data) => new RestrictedUnpickler(file, data).Run();

    private CheckpointFormatException Bad(string problem) => new(_file, $"data.pkl at byte {_pos}: {problem}");

    private ReadOnlySpan<byte> Take(long n)
    {
        if (n < 0 || n > _data.Length - _pos)
        {
            throw Bad($"truncated ({n} bytes needed)");
        }
        var span = _data.AsSpan(_pos, (int)n);
        _pos += (int)n;
        return span;
    }

    private string Line()
    {
        var end = Array.IndexOf(_data, (byte)'\n', _pos);
        if (end < 0)
        {
            throw Bad("truncated text argument");
        }
        var text = Encoding.UTF8.GetString(_data, _pos, end - _pos);
        _pos = end + 1;
        return text;
    }

    private object? Pop()
    {
        if (_stack.Count == 0)
        {
            throw Bad("stack underflow");
        }
        var top = _stack[^1];
        _stack.RemoveAt(_stack.Count - 1);
        return top is Mark ? throw Bad("unexpected mark") : top;
    }

    private object? Peek() => _stack.Count > 0 ? _stack[^1] : throw Bad("stack underflow");

    private List<object?> PopToMark()
    {
        var mark = _stack.FindLastIndex(x => x is Mark);
        if (mark < 0)
        {
            throw Bad("no mark on the stack");
        }
        var items = _stack.GetRange(mark + 1, _stack.Count - mark - 1);
        _stack.RemoveRange(mark, _stack.Count - mark);
        return items;
    }

    private void Push(object? value)
    {
        if (_stack.Count > 1_000_000)
        {
            throw Bad("stack too deep");
        }
        _stack.Add(value);
    }

    private object? Run()
    {
        while (true)
        {
            if (_pos >= _data.Length)
            {
                throw Bad("ends without STOP");
            }
            var op = _data[_pos++];
            switch (op)
            {
                case 0x80: Take(1); break; // PROTO
                case 0x95: Take(8); break; // FRAME
                case (byte)'.': return _stack.Count == 1 ? Pop() : throw Bad($"STOP with {_stack.Count} items on the stack");
                case (byte)'(': Push(new Mark()); break;
                case (byte)')': Push(Array.Empty<object?>()); break;
                case (byte)']': Push(new List<object?>()); break;
                case (byte)'}': Push(new PickleDict()); break;
                case (byte)'t': Push(PopToMark().ToArray()); break;
                case 0x85: Push(new[] { Pop() }); break;
                case 0x86: { var b = Pop(); var a = Pop(); Push(new[] { a, b }); break; }
                case 0x87: { var c = Pop(); var b = Pop(); var a = Pop(); Push(new[] { a, b, c }); break; }
                case (byte)'l': Push(PopToMark()); break;
                case (byte)'a': { var v = Pop(); AsList(Peek()).Add(v); break; }
                case (byte)'e': { var items = PopToMark(); AsList(Peek()).AddRange(items); break; }
                case (byte)'s': { var v = Pop(); var k = Pop(); AsDict(Peek()).Add(new(Key(k), v)); break; }
                case (byte)'u':
                {
                    var items = PopToMark();
                    if (items.Count % 2 != 0)
                    {
                        throw Bad("SETITEMS with an odd number of items");
                    }
                    var dict = AsDict(Peek());
                    for (var i = 0; i < items.Count; i += 2)
                    {
                        dict.Add(new(Key(items[i]), items[i + 1]));
                    }
                    break;
                }
                case (byte)'K': Push((long)Take(1)[0]); break;
                case (byte)'M': Push((long)BinaryPrimitives.ReadUInt16LittleEndian(Take(2))); break;
                case (byte)'J': Push((long)BinaryPrimitives.ReadInt32LittleEndian(Take(4))); break;
                case 0x8a: Push(Long(Take(Take(1)[0]))); break;
                case (byte)'G': Push(BinaryPrimitives.ReadDoubleBigEndian(Take(8))); break;
                case (byte)'X': Push(Encoding.UTF8.GetString(Take(BinaryPrimitives.ReadUInt32LittleEndian(Take(4))))); break;
                case 0x8c: Push(Encoding.UTF8.GetString(Take(Take(1)[0]))); break;
                case 0x8d: Push(Encoding.UTF8.GetString(Take((long)BinaryPrimitives.ReadUInt64LittleEndian(Take(8))))); break;
                case (byte)'N': Push(null); break;
                case 0x88: Push(true); break;
                case 0x89: Push(false); break;
                case (byte)'q': _memo[Take(1)[0]] = Peek(); break;
                case (byte)'r': _memo[BinaryPrimitives.ReadUInt32LittleEndian(Take(4))] = Peek(); break;
                case 0x94: _memo[_memo.Count] = Peek(); break;
                case (byte)'h': Push(Memo(Take(1)[0])); break;
                case (byte)'j': Push(Memo(BinaryPrimitives.ReadUInt32LittleEndian(Take(4)))); break;
                case (byte)'0': Pop(); break;
                case (byte)'1': PopToMark(); break;
                case (byte)'2': Push(Peek()); break;
                case (byte)'c': { var module = Line(); var name = Line(); Push(Resolve(module, name)); break; }
                case 0x93: { var name = Pop() as string; var module = Pop() as string; Push(Resolve(module ?? "?", name ?? "?")); break; }
                case (byte)'Q': Push(PersistentLoad(Pop())); break;
                case (byte)'R': { var args = Pop(); var callable = Pop(); Push(Call(callable, args as object?[] ?? throw Bad("REDUCE arguments are not a tuple"))); break; }
                case (byte)'b':
                {
                    // State of an OrderedDict (a state_dict's _metadata): not needed, dropped.
                    Pop();
                    if (Peek() is not PickleDict)
                    {
                        throw Bad("BUILD on something other than a dict");
                    }
                    break;
                }
                default:
                    throw Bad($"pickle opcode 0x{op:x2} ('{(char)op}') is not allowed in a weights file");
            }
        }
    }

    private static object Key(object? key) => key ?? "None";

    private List<object?> AsList(object? o) => o as List<object?> ?? throw Bad("APPEND to something other than a list");

    private PickleDict AsDict(object? o) => o as PickleDict ?? throw Bad("SETITEM on something other than a dict");

    private object? Memo(long index) => _memo.TryGetValue(index, out var v) ? v : throw Bad($"memo {index} is not set");

    private long Long(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length > 8)
        {
            throw Bad("integer wider than 64 bits");
        }
        return bytes.Length == 0 ? 0 : (long)new BigInteger(bytes, isUnsigned: false, isBigEndian: false);
    }

    private Global Resolve(string module, string name) => (module, name) switch
    {
        ("collections", "OrderedDict") or ("torch._utils", "_rebuild_tensor_v2") or ("torch._utils", "_rebuild_parameter") => new Global(module, name),
        ("torch", _) when StorageTypes.ContainsKey(name) => new Global(module, name),
        _ => throw Bad($"refusing global '{module}.{name}': only tensors, storages and OrderedDict may appear in a weights file"),
    };

    private StorageRef PersistentLoad(object? pid)
    {
        if (pid is not object?[] { Length: 5 } t || t[0] as string != "storage" || t[1] is not Global { Module: "torch" } type
            || t[2] is not string key || t[4] is not long numel || numel < 0)
        {
            throw Bad("persistent id is not ('storage', type, key, location, numel)");
        }
        var dtype = StorageTypes[type.Name] ?? throw Bad($"torch.{type.Name} tensors are not supported (supported: float32, float16, bfloat16, int32, int64)");
        return new StorageRef(dtype, key, numel);
    }

    private object? Call(object? callable, object?[] args)
    {
        switch (callable)
        {
            case Global { Name: "OrderedDict" } when args.Length == 0:
                return new PickleDict();
            case Global { Name: "_rebuild_tensor_v2" } when args.Length is >= 6 and <= 7:
                if (args[0] is not StorageRef storage || args[1] is not long offset || !TryLongs(args[2], out var shape) || !TryLongs(args[3], out var stride)
                    || shape.Length != stride.Length)
                {
                    throw Bad("malformed _rebuild_tensor_v2 arguments");
                }
                return new TensorRef(storage, offset, shape, stride);
            case Global { Name: "_rebuild_parameter" } when args.Length == 3 && args[0] is TensorRef tensor:
                return tensor;
            default:
                throw Bad($"call of {callable} with {args.Length} arguments is not allowed");
        }
    }

    private static bool TryLongs(object? value, out long[] result)
    {
        result = [];
        if (value is not object?[] items || items.Any(i => i is not long))
        {
            return false;
        }
        result = items.Select(i => (long)i!).ToArray();
        return true;
    }
}
