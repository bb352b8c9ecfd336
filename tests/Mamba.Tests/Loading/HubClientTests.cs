using System.Text;
using Mamba.Loading;
using Mamba.Loading.Hub;

namespace Mamba.Tests.Loading;

/// <summary>The hub client against a local server with the hub's URL layout and headers.</summary>
[TestFixture]
public class HubClientTests
{
    private const string Repo = "tiny-org/tiny-mamba";

    private static byte[] Weights(int seed, int floats = 4096) =>
        new Mamba.Loading.SafetensorsWriter().Add("w", LoadingFixtures.RandomValues(new Random(seed), floats), [floats]).ToBytes();

    private static (FakeHub Hub, byte[] Model) TinyRepo()
    {
        var hub = new FakeHub();
        var model = Weights(1);
        hub.Add(Repo, "config.json", Encoding.UTF8.GetBytes(LoadingFixtures.HfMamba1Config));
        hub.Add(Repo, "tokenizer.json", Encoding.UTF8.GetBytes("{\"model\": {}}"));
        hub.Add(Repo, "special_tokens_map.json", Encoding.UTF8.GetBytes("{}"));
        hub.Add(Repo, "model.safetensors", model, lfs: true);
        return (hub, model);
    }

    private static HubClient Client(FakeHub hub, TempDir cache, string? token = null, bool offline = false) =>
        new(new HubOptions { Endpoint = hub.Endpoint, CacheDirectory = cache.Path, Token = token, Offline = offline });

    private sealed class Recorder : IProgress<HubDownloadProgress>
    {
        public List<HubDownloadProgress> Reports { get; } = [];

        public void Report(HubDownloadProgress value)
        {
            lock (Reports)
            {
                Reports.Add(value);
            }
        }
    }

    [Test]
    public async Task DownloadsIntoTheHuggingFaceCacheLayout()
    {
        var (hub, model) = TinyRepo();
        using var _ = hub;
        using var cache = new TempDir();
        using var client = Client(hub, cache);
        var progress = new Recorder();

        var snapshot = await client.DownloadModelAsync(Repo, progress: progress);

        var repoFolder = Path.Combine(cache.Path, "models--tiny-org--tiny-mamba");
        var snapshotFolder = Path.Combine(repoFolder, "snapshots", hub.Commit);
        Assert.Multiple(() =>
        {
            Assert.That(snapshot.Commit, Is.EqualTo(hub.Commit));
            Assert.That(snapshot.Directory, Is.EqualTo(snapshotFolder));
            Assert.That(snapshot.ConfigPath, Is.EqualTo(Path.Combine(snapshotFolder, "config.json")));
            Assert.That(snapshot.WeightsPath, Is.EqualTo(Path.Combine(snapshotFolder, "model.safetensors")));
            Assert.That(snapshot.TokenizerPath, Is.EqualTo(Path.Combine(snapshotFolder, "tokenizer.json")));
            Assert.That(snapshot.SpecialTokensMapPath, Is.Not.Null);
            Assert.That(snapshot.TokenizerConfigPath, Is.Null, "absent in the repository");
            Assert.That(snapshot.GenerationConfigPath, Is.Null);
            Assert.That(File.ReadAllText(Path.Combine(repoFolder, "refs", "main")), Is.EqualTo(hub.Commit));
            // Large files are stored under their sha256, linked from the snapshot.
            var blob = Path.Combine(repoFolder, "blobs", FakeHub.Sha256(model));
            Assert.That(File.ReadAllBytes(blob), Is.EqualTo(model));
            Assert.That(new FileInfo(snapshot.WeightsPath).LinkTarget, Is.EqualTo(Path.Combine("..", "..", "blobs", FakeHub.Sha256(model))));
            Assert.That(File.ReadAllBytes(snapshot.WeightsPath), Is.EqualTo(model));
            Assert.That(File.ReadAllText(snapshot.ConfigPath), Is.EqualTo(LoadingFixtures.HfMamba1Config));
            Assert.That(File.Exists(Path.Combine(repoFolder, ".no_exist", hub.Commit, "tokenizer_config.json")), Is.True);
            Assert.That(Directory.GetFiles(Path.Combine(repoFolder, "blobs"), "*.incomplete"), Is.Empty);
        });

        var weightReports = progress.Reports.Where(r => r.File == "model.safetensors").ToList();
        Assert.That(weightReports.Select(r => r.BytesDone), Is.Ordered);
        Assert.That(weightReports[^1], Is.EqualTo(new HubDownloadProgress(Repo, "model.safetensors", model.Length, model.Length, true)));
        Assert.That(progress.Reports.Where(r => r.Completed).Select(r => r.File),
            Is.EquivalentTo(new[] { "config.json", "model.safetensors", "tokenizer.json", "special_tokens_map.json" }));

        // Second time: metadata requests only, no transfers.
        hub.Log.Clear();
        var again = await client.DownloadModelAsync(Repo);
        Assert.That(again, Is.EqualTo(snapshot));
        Assert.That(hub.Log.Where(l => l.StartsWith("GET", StringComparison.Ordinal)), Is.Empty);
    }

    [Test]
    public async Task OfflineModeUsesTheCacheOrFailsClearly()
    {
        var (hub, _) = TinyRepo();
        using var cache = new TempDir();
        using (hub)
        {
            using var offlineEmpty = Client(hub, cache, offline: true);
            var e = Assert.ThrowsAsync<HubOfflineException>(() => offlineEmpty.DownloadModelAsync(Repo))!;
            Assert.That(e.Message, Does.Contain("HF_HUB_OFFLINE").And.Contain("config.json"));
            Assert.That(hub.Log, Is.Empty, "offline never touches the network");

            using var online = Client(hub, cache);
            await online.DownloadModelAsync(Repo);
        }
        // The server is gone now.
        using var offline = Client(hub, cache, offline: true);
        var snapshot = await offline.DownloadModelAsync(Repo);
        Assert.That(snapshot.Commit, Is.EqualTo(hub.Commit));
        Assert.That(snapshot.TokenizerConfigPath, Is.Null);
        Assert.That(File.Exists(snapshot.WeightsPath), Is.True);
        var byCommit = await offline.DownloadModelAsync(Repo, hub.Commit);
        Assert.That(byCommit.Directory, Is.EqualTo(snapshot.Directory));
        Assert.ThrowsAsync<HubOfflineException>(() => offline.DownloadModelAsync(Repo, "other-branch"));

        // Online but unreachable: the cache still serves.
        using var unreachable = new HubClient(new HubOptions { Endpoint = hub.Endpoint, CacheDirectory = cache.Path });
        Assert.That((await unreachable.DownloadModelAsync(Repo)).Commit, Is.EqualTo(hub.Commit));
    }

    [Test]
    public async Task InterruptedDownloadResumesWithARangeRequest()
    {
        var (hub, model) = TinyRepo();
        using var _ = hub;
        using var cache = new TempDir();
        using var client = Client(hub, cache);
        hub.AbortNextCdnAfter = 5000;

        var e = Assert.ThrowsAsync<HubException>(() => client.DownloadModelAsync(Repo))!;
        Assert.That(e.Message, Does.Contain("model.safetensors").And.Contain("resumed"));
        var incomplete = Path.Combine(cache.Path, "models--tiny-org--tiny-mamba", "blobs", FakeHub.Sha256(model) + ".incomplete");
        Assert.That(File.Exists(incomplete), Is.True);
        var partial = new FileInfo(incomplete).Length;
        Assert.That(partial, Is.GreaterThan(0).And.LessThan(model.Length));

        hub.Log.Clear();
        var snapshot = await client.DownloadModelAsync(Repo);
        Assert.That(File.ReadAllBytes(snapshot.WeightsPath), Is.EqualTo(model));
        Assert.That(hub.Log, Has.Some.StartsWith($"GET /cdn/{FakeHub.Sha256(model)} bytes={partial}-"));
        Assert.That(File.Exists(incomplete), Is.False);
        using var checkpoint = Checkpoint.Open(snapshot.WeightsPath);
        Assert.That(checkpoint.Tensors["w"].Shape, Is.EqualTo(new long[] { 4096 }));
    }

    [Test]
    public async Task StalePartialFileLargerThanTheBlobIsDiscarded()
    {
        var (hub, model) = TinyRepo();
        using var _ = hub;
        using var cache = new TempDir();
        var incomplete = cache.Write(Path.Combine("models--tiny-org--tiny-mamba", "blobs", FakeHub.Sha256(model) + ".incomplete"), new byte[model.Length + 10]);
        using var client = Client(hub, cache);
        var snapshot = await client.DownloadModelAsync(Repo);
        Assert.That(File.ReadAllBytes(snapshot.WeightsPath), Is.EqualTo(model));
        Assert.That(File.Exists(incomplete), Is.False);
    }

    [Test]
    public async Task ShardedWeightsDownloadEveryShard()
    {
        using var hub = new FakeHub();
        hub.Add(Repo, "config.json", Encoding.UTF8.GetBytes(LoadingFixtures.HfMamba1Config));
        var rng = new Random(3);
        var a = LoadingFixtures.RandomValues(rng, 10);
        var b = LoadingFixtures.RandomValues(rng, 20);
        hub.Add(Repo, "model-00001-of-00002.safetensors", new SafetensorsWriter().Add("a", a, [10]).ToBytes(), lfs: true);
        hub.Add(Repo, "model-00002-of-00002.safetensors", new SafetensorsWriter().Add("b", b, [20]).ToBytes(), lfs: true);
        hub.Add(Repo, "model.safetensors.index.json", Encoding.UTF8.GetBytes(
            """{"metadata": {"total_size": 120}, "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}"""));
        using var cache = new TempDir();
        using var client = Client(hub, cache);
        var snapshot = await client.DownloadModelAsync(Repo);
        Assert.That(Path.GetFileName(snapshot.WeightsPath), Is.EqualTo("model.safetensors.index.json"));
        Assert.That(snapshot.TokenizerPath, Is.Null);
        using var checkpoint = Checkpoint.Open(snapshot.WeightsPath);
        Assert.That(checkpoint.Tensors["a"].ToFloatArray(), Is.EqualTo(a));
        Assert.That(checkpoint.Tensors["b"].ToFloatArray(), Is.EqualTo(b));
    }

    [Test]
    public async Task PyTorchOnlyRepositoryDownloadsTheArchive()
    {
        using var hub = new FakeHub();
        hub.Add(Repo, "config.json", Encoding.UTF8.GetBytes(LoadingFixtures.HfMamba1Config));
        var archive = File.ReadAllBytes(Path.Combine(TorchCheckpointTests.DataDir, "state_dict.bin"));
        hub.Add(Repo, "pytorch_model.bin", archive, lfs: true);
        using var cache = new TempDir();
        using var client = Client(hub, cache);
        var snapshot = await client.DownloadModelAsync(Repo);
        Assert.That(Path.GetFileName(snapshot.WeightsPath), Is.EqualTo("pytorch_model.bin"));
        Assert.That(File.ReadAllBytes(snapshot.WeightsPath), Is.EqualTo(archive));
        using var checkpoint = Checkpoint.Open(snapshot.WeightsPath);
        Assert.That(checkpoint.Tensors.Keys, Does.Contain("backbone.embedding.weight"));
    }

    [Test]
    public void MissingThingsAreClearErrors()
    {
        var (hub, _) = TinyRepo();
        using var _h = hub;
        using var cache = new TempDir();
        using var client = Client(hub, cache);

        var file = Assert.ThrowsAsync<HubNotFoundException>(() => client.DownloadFileAsync(Repo, "nope.json"))!;
        Assert.That(file.Message, Does.Contain("nope.json").And.Contain(Repo));

        var repo = Assert.ThrowsAsync<HubNotFoundException>(() => client.DownloadModelAsync("someone/missing"))!;
        Assert.That(repo.Message, Does.Contain("repository 'someone/missing' not found").And.Contain("HF_TOKEN"));

        var revision = Assert.ThrowsAsync<HubNotFoundException>(() => client.DownloadModelAsync(Repo, "v9"))!;
        Assert.That(revision.Message, Does.Contain("revision 'v9'"));

        using var noWeights = new FakeHub();
        noWeights.Add(Repo, "config.json", Encoding.UTF8.GetBytes("{}"));
        using var client2 = Client(noWeights, cache);
        var weights = Assert.ThrowsAsync<HubNotFoundException>(() => client2.DownloadModelAsync(Repo))!;
        Assert.That(weights.Message, Does.Contain("model.safetensors"));

        Assert.ThrowsAsync<ArgumentException>(() => client.DownloadModelAsync("../etc"));
        Assert.ThrowsAsync<ArgumentException>(() => client.DownloadFileAsync(Repo, "../../x"));
        Assert.ThrowsAsync<ArgumentException>(() => client.DownloadModelAsync(Repo, "../main"));
    }

    [Test]
    public async Task PrivateRepositoryNeedsTheToken()
    {
        var (hub, model) = TinyRepo();
        using var _ = hub;
        hub.RequiredToken = "hf_secret";
        using var cache = new TempDir();

        using var anonymous = Client(hub, cache);
        var e = Assert.ThrowsAsync<HubUnauthorizedException>(() => anonymous.DownloadModelAsync(Repo))!;
        Assert.That(e.StatusCode, Is.EqualTo(System.Net.HttpStatusCode.Unauthorized));
        Assert.That(e.Message, Does.Contain("HF_TOKEN").And.Contain("Invalid credentials"));

        using var wrong = Client(hub, cache, token: "hf_wrong");
        Assert.That(Assert.ThrowsAsync<HubUnauthorizedException>(() => wrong.DownloadModelAsync(Repo))!.Message, Does.Contain("token was rejected"));

        using var authorized = Client(hub, cache, token: "hf_secret");
        hub.Log.Clear();
        var snapshot = await authorized.DownloadModelAsync(Repo);
        Assert.That(File.ReadAllBytes(snapshot.WeightsPath), Is.EqualTo(model));
        Assert.That(hub.Log.Where(l => l.Contains("/resolve/", StringComparison.Ordinal)), Has.All.EndsWith("Bearer hf_secret"));
    }

    [Test]
    public async Task TheTokenIsNotSentToAnotherHost()
    {
        using var cdn = new FakeHub();
        using var hub = new FakeHub { Cdn = cdn, RequiredToken = "hf_secret" };
        var model = Weights(6);
        hub.Add(Repo, "config.json", Encoding.UTF8.GetBytes(LoadingFixtures.HfMamba1Config));
        hub.Add(Repo, "model.safetensors", model, lfs: true);
        using var cache = new TempDir();
        using var client = Client(hub, cache, token: "hf_secret");
        var snapshot = await client.DownloadModelAsync(Repo);
        Assert.That(File.ReadAllBytes(snapshot.WeightsPath), Is.EqualTo(model));
        Assert.That(cdn.Log, Has.Some.StartsWith("GET /cdn/"), "the large file came from the other server");
        Assert.That(cdn.Log, Has.None.Contains("Bearer"));
        Assert.That(hub.Log, Has.None.StartsWith("GET /cdn/"));
    }

    [Test]
    public async Task ConcurrentDownloadsOfOneBlobTransferItOnce()
    {
        using var hub = new FakeHub();
        var model = Weights(9, floats: 1 << 18);
        hub.Add(Repo, "config.json", Encoding.UTF8.GetBytes(LoadingFixtures.HfMamba1Config));
        hub.Add(Repo, "model.safetensors", model, lfs: true);
        using var cache = new TempDir();
        var clients = Enumerable.Range(0, 4).Select(_ => Client(hub, cache)).ToList();
        try
        {
            var snapshots = await Task.WhenAll(clients.Select(c => c.DownloadModelAsync(Repo)));
            Assert.That(snapshots.Select(s => s.WeightsPath).Distinct().Count(), Is.EqualTo(1));
            Assert.That(File.ReadAllBytes(snapshots[0].WeightsPath), Is.EqualTo(model));
            Assert.That(hub.Log.Count(l => l.StartsWith("GET /cdn/", StringComparison.Ordinal)), Is.EqualTo(1));
            Assert.That(File.Exists(Path.Combine(cache.Path, ".locks", "models--tiny-org--tiny-mamba", FakeHub.Sha256(model) + ".lock")), Is.True);
        }
        finally
        {
            clients.ForEach(c => c.Dispose());
        }
    }

    [Test]
    public async Task RenamedRepositoryIsFollowed()
    {
        var (hub, model) = TinyRepo();
        using var _ = hub;
        hub.Renamed["old-org/old-name"] = Repo;
        using var cache = new TempDir();
        using var client = Client(hub, cache);
        var snapshot = await client.DownloadModelAsync("old-org/old-name");
        Assert.That(File.ReadAllBytes(snapshot.WeightsPath), Is.EqualTo(model));
        Assert.That(hub.Log, Has.Some.StartsWith($"HEAD /{Repo}/resolve/main/config.json"));
    }

    [Test]
    public void GatedRepositoryIsForbidden()
    {
        var (hub, _) = TinyRepo();
        using var _h = hub;
        hub.Gated = true;
        using var cache = new TempDir();
        using var client = Client(hub, cache, token: "hf_any");
        var e = Assert.ThrowsAsync<HubUnauthorizedException>(() => client.DownloadModelAsync(Repo))!;
        Assert.That(e.StatusCode, Is.EqualTo(System.Net.HttpStatusCode.Forbidden));
        Assert.That(e.Message, Does.Contain("gated").And.Contain("Access to model is restricted"));
    }

    [Test]
    public void OptionsComeFromTheEnvironment()
    {
        using var home = new TempDir();
        var env = new Dictionary<string, string>
        {
            ["HF_HOME"] = home.Path,
            ["HF_ENDPOINT"] = "http://127.0.0.1:9/",
            ["HF_HUB_OFFLINE"] = "1",
        };
        var options = HubOptions.FromEnvironment(env.GetValueOrDefault);
        Assert.That(options.Endpoint, Is.EqualTo("http://127.0.0.1:9"));
        Assert.That(options.CacheDirectory, Is.EqualTo(Path.Combine(home.Path, "hub")));
        Assert.That(options.Offline, Is.True);
        Assert.That(options.Token, Is.Null);

        home.Write("token", "hf_from_file\n");
        Assert.That(HubOptions.FromEnvironment(env.GetValueOrDefault).Token, Is.EqualTo("hf_from_file"));
        env["HF_TOKEN"] = "hf_env";
        env["HF_HUB_CACHE"] = "/somewhere/else";
        env["HF_HUB_OFFLINE"] = "0";
        options = HubOptions.FromEnvironment(env.GetValueOrDefault);
        Assert.That(options.Token, Is.EqualTo("hf_env"));
        Assert.That(options.CacheDirectory, Is.EqualTo("/somewhere/else"));
        Assert.That(options.Offline, Is.False);
    }
}
