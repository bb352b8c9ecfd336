using System.Text.Json;
using System.Text.Json.Nodes;
using Mamba.Tokenization;

namespace Mamba.Tests.Tokenization;

/// <summary>
/// Settings the GPT-NeoX file leaves off (prefix space, no regex, no normalizer, lstrip / rstrip / single-word
/// added tokens), each an edit of the reference tokenizer.json described in variants.json together with the
/// reference library's ids for some strings under that edit.
/// </summary>
[TestFixture]
public class VariantCasesTests
{
    public sealed record Variant(string Name, JsonObject Definition)
    {
        public override string ToString() => Name;
    }

    private static IEnumerable<Variant> Variants()
    {
        var root = JsonNode.Parse(File.ReadAllText(Path.Combine(TokenizerTestData.DirectoryOf(TokenizerTestData.NeoX), "variants.json")))!.AsArray();
        return root.Select(v => new Variant((string)v!["name"]!, v.AsObject()));
    }

    /// <summary>Applies a variant the way the generator does: replace top-level fields, append added tokens with fresh ids.</summary>
    private static string WriteEdited(Variant variant, string dir)
    {
        var json = JsonNode.Parse(File.ReadAllText(TokenizerTestData.TokenizerJson))!.AsObject();
        if (variant.Definition["replace"] is JsonObject replace)
        {
            foreach (var (key, value) in replace)
            {
                json[key] = value?.DeepClone();
            }
        }
        var added = json["added_tokens"]!.AsArray();
        var nextId = 1 + Math.Max(added.Max(t => (int)t!["id"]!), json["model"]!["vocab"]!.AsObject().Max(p => (int)p.Value!));
        if (variant.Definition["extra_added_tokens"] is JsonArray extra)
        {
            foreach (var token in extra)
            {
                var copy = token!.DeepClone().AsObject();
                copy["id"] = nextId++;
                added.Add(copy);
            }
        }
        var path = Path.Combine(dir, variant.Name + ".tokenizer.json");
        File.WriteAllText(path, json.ToJsonString());
        return path;
    }

    [TestCaseSource(nameof(Variants))]
    public void EncodesAndDecodesLikeTheReference(Variant variant)
    {
        var dir = Path.Combine(Path.GetTempPath(), "mamba-tokenizer-variant-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            var tokenizer = MambaTokenizer.FromFile(WriteEdited(variant, dir));
            var cases = variant.Definition["cases"]!.AsArray();
            Assert.That(cases, Is.Not.Empty);
            Assert.Multiple(() =>
            {
                foreach (var c in cases)
                {
                    var text = (string)c!["text"]!;
                    var ids = c["ids"]!.AsArray().Select(i => (int)i!).ToArray();
                    Assert.That(tokenizer.Encode(text), Is.EqualTo(ids), "encode " + JsonSerializer.Serialize(text));
                    Assert.That(tokenizer.Decode(ids), Is.EqualTo((string)c["decoded"]!), "decode " + JsonSerializer.Serialize(text));
                }
            });
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
