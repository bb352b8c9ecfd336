using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Mamba.Loading;

/// <summary>
/// Typed reads of one JSON object of a config, with errors that name the file and the (dotted) field.
/// A JSON null counts as absent. Remembers which fields were read, so the rest can be reported.
/// </summary>
internal sealed class ConfigFields
{
    private readonly JsonElement _object;
    private readonly string _prefix;

    public ConfigFields(string file, JsonElement obj, string prefix = "")
    {
        File = file;
        _object = obj;
        _prefix = prefix;
    }

    public string File { get; }

    public HashSet<string> Read { get; } = new(StringComparer.Ordinal);

    public IEnumerable<string> Names => _object.EnumerateObject().Select(p => p.Name);

    public string FieldName(string name) => _prefix + name;

    public ConfigFormatException Error(string name, string problem) => new(File, FieldName(name), problem);

    public bool Has(string name) => _object.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null;

    private JsonElement? Get(string name)
    {
        Read.Add(name);
        return _object.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;
    }

    private static string Describe(JsonElement v) => v.ValueKind switch
    {
        JsonValueKind.String => $"the string \"{v.GetString()}\"",
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.True or JsonValueKind.False => $"the boolean {v.GetRawText()}",
        _ => v.GetRawText(),
    };

    public int Int(string name, int? fallback = null, int min = int.MinValue) =>
        Get(name) is { } v ? ToInt(name, v, min) : fallback ?? throw Error(name, "required field is missing");

    public int? OptionalInt(string name) => Get(name) is { } v ? ToInt(name, v, int.MinValue) : null;

    private int ToInt(string name, JsonElement v, int min)
    {
        // Python writes integral floats (2.0) for some int fields; accept those, reject 2.5.
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetDouble(out var d) || d != Math.Floor(d) || d < int.MinValue || d > int.MaxValue)
        {
            throw Error(name, $"expected an integer, got {Describe(v)}");
        }
        if (d < min)
        {
            throw Error(name, $"must be at least {min}, got {v.GetRawText()}");
        }
        return (int)d;
    }

    public double Double(string name, double? fallback = null) =>
        Get(name) is { } v ? ToDouble(name, v) : fallback ?? throw Error(name, "required field is missing");

    public double ToDouble(string name, JsonElement v)
    {
        switch (v.ValueKind)
        {
            case JsonValueKind.Number:
                return v.GetDouble();
            case JsonValueKind.String when ParseNamedFloat(v.GetString()!) is { } named:
                return named;
            // Recent transformers serializes non-finite floats as {"__float__": "Infinity"}.
            case JsonValueKind.Object when v.TryGetProperty("__float__", out var inner) && inner.ValueKind == JsonValueKind.String
                                           && ParseNamedFloat(inner.GetString()!) is { } wrapped:
                return wrapped;
            default:
                throw Error(name, $"expected a number, got {Describe(v)}");
        }
    }

    private static double? ParseNamedFloat(string s) => s switch
    {
        "Infinity" or "inf" or "+inf" or "+Infinity" => double.PositiveInfinity,
        "-Infinity" or "-inf" => double.NegativeInfinity,
        "NaN" or "nan" => double.NaN,
        _ => double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) ? d : null,
    };

    public bool Bool(string name, bool fallback) =>
        Get(name) is { } v
            ? v.ValueKind switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                _ => throw Error(name, $"expected true or false, got {Describe(v)}"),
            }
            : fallback;

    public string? String(string name) =>
        Get(name) is { } v
            ? v.ValueKind == JsonValueKind.String ? v.GetString() : throw Error(name, $"expected a string, got {Describe(v)}")
            : null;

    public ConfigFields? Object(string name) =>
        Get(name) is { } v
            ? v.ValueKind == JsonValueKind.Object ? new ConfigFields(File, v, FieldName(name) + ".") : throw Error(name, $"expected an object, got {Describe(v)}")
            : null;

    public JsonElement? Raw(string name) => Get(name);

    /// <summary>
    /// Python's json module writes bare Infinity, -Infinity and NaN, which are not JSON; quote them (outside
    /// strings) so the document parses, and let the number reads accept the quoted names.
    /// </summary>
    public static string QuoteNonFiniteLiterals(string json)
    {
        if (!json.Contains("Infinity", StringComparison.Ordinal) && !json.Contains("NaN", StringComparison.Ordinal))
        {
            return json;
        }
        var result = new StringBuilder(json.Length + 16);
        var inString = false;
        for (var i = 0; i < json.Length; i++)
        {
            var c = json[i];
            if (inString)
            {
                result.Append(c);
                if (c == '\\' && i + 1 < json.Length)
                {
                    result.Append(json[++i]);
                }
                else if (c == '"')
                {
                    inString = false;
                }
                continue;
            }
            if (c == '"')
            {
                inString = true;
                result.Append(c);
                continue;
            }
            var literal = new[] { "-Infinity", "Infinity", "NaN" }.FirstOrDefault(l => string.CompareOrdinal(json, i, l, 0, l.Length) == 0);
            if (literal is not null)
            {
                result.Append('"').Append(literal).Append('"');
                i += literal.Length - 1;
                continue;
            }
            result.Append(c);
        }
        return result.ToString();
    }
}
