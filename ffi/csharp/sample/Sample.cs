// What a sync plugin does with the binding, as a console program: two players log in (each
// plugin creates its node: register), one shares its mod folder, the other looks up the players
// around it, fetches their files with a progress line, then both change visibility and log out.
// In a Dalamud plugin, OnLogin/OnFrame/OnLogout are the ClientState.Login, Framework.Update and
// ClientState.Logout handlers; the file list comes from whatever the sync service publishes.
// Run with: mono Sample.exe PHONEBOOK_URL WORKDIR   (LD_LIBRARY_PATH holding libffxiv_p2p_peer_v1.so)
using System;
using System.Collections.Generic;
using System.IO;
using System.Security.Cryptography;
using System.Threading;
using FfxivP2p;

/// <summary>One plugin instance: a player, their node, their wanted files.</summary>
sealed class SyncPlugin : IDisposable
{
    readonly string me;
    Node node;
    // op -> (player, hash) for the lookups and fetches in flight.
    readonly Dictionary<ulong, string> lookups = new Dictionary<ulong, string>();
    readonly Dictionary<ulong, string> fetches = new Dictionary<ulong, string>();
    public int Finished, Failed;
    public bool Registered;

    public SyncPlugin(string me) { this.me = me; }

    // ClientState.Login: start the node; it registers in the background.
    public void OnLogin(string phonebook, string dataDir, string modFolder)
    {
        node = new Node(new NodeConfig
        {
            Identity = Path.Combine(dataDir, "identity.key"),
            DataDir = dataDir,
            Phonebook = phonebook,
            Name = me,
            Listen = "127.0.0.1:0", // a plugin leaves this null: "0.0.0.0:0"
        });
        node.Registration += e =>
        {
            Registered = e.Kind == FfxpEventKind.Registered;
            Console.WriteLine("[{0}] phone book: {1}", me, e);
        };
        node.Found += (op, key) =>
        {
            string player;
            if (lookups.TryGetValue(op, out player))
                Console.WriteLine("[{0}] {1} is online, key {2}", me, player, Convert.ToBase64String(key));
            lookups.Remove(op);
        };
        node.Progress += (op, done, total) =>
            Console.WriteLine("[{0}] {1}: {2:F0} % ({3} of {4} bytes)", me, fetches[op], 100.0 * done / total, done, total);
        node.Done += op =>
        {
            Console.WriteLine("[{0}] {1}: done, at {2}", me, fetches[op], node.DownloadPath(fetches[op]));
            fetches.Remove(op);
            Finished++;
        };
        node.Failed += (op, why) =>
        {
            string what;
            if (!lookups.TryGetValue(op, out what)) fetches.TryGetValue(op, out what);
            Console.WriteLine("[{0}] {1}: failed: {2}", me, what, why);
            lookups.Remove(op);
            fetches.Remove(op);
            Failed++;
        };
        // Hashing a big folder takes time: a plugin runs this off the framework thread.
        if (modFolder != null) node.Share(modFolder);
    }

    // The players around us (from the object table): ask who is online.
    public void LookUp(IEnumerable<string> players)
    {
        foreach (var p in players) lookups[node.Lookup(p)] = p;
    }

    // The sync service told us which files a player's appearance needs.
    public void Want(string player, IEnumerable<string> hashes)
    {
        foreach (var h in hashes)
            if (!File.Exists(node.DownloadPath(h))) fetches[node.Fetch(h, player)] = h;
    }

    public bool Busy { get { return lookups.Count + fetches.Count > 0; } }

    // Framework.Update: once per frame, never blocks.
    public void OnFrame() { node.Tick(); }

    // The settings window's "visible to friends only" box.
    public void SetFriendsOnly(bool on) { node.SetVisibility(on ? Visibility.Friends : Visibility.Public); }

    // Pairing: the friends' keys, exchanged out of band (a pairing code, a friend request).
    public byte[] Key { get { return node.Key; } }
    public void SetFriends(params byte[][] keys) { node.SetFriends(keys); }

    // ClientState.Logout, or the plugin being disabled: unregister and free the socket.
    public void Dispose()
    {
        if (node != null) node.Dispose();
    }
}

static class Sample
{
    static string Sha1(string path)
    {
        using (var sha = SHA1.Create())
        using (var f = File.OpenRead(path))
            return BitConverter.ToString(sha.ComputeHash(f)).Replace("-", "").ToLowerInvariant();
    }

    static bool Frames(Func<bool> until, params SyncPlugin[] plugins)
    {
        for (int frame = 0; frame < 60 * 30; frame++) // 30 s at 60 fps
        {
            foreach (var p in plugins) p.OnFrame();
            if (until()) return true;
            Thread.Sleep(16);
        }
        return false;
    }

    static int Main(string[] args)
    {
        if (args.Length != 2)
        {
            Console.Error.WriteLine("usage: mono Sample.exe PHONEBOOK_URL WORKDIR");
            return 2;
        }
        string url = args[0], work = args[1];
        // Alice's mod folder: two files the sync service would list by SHA-1.
        string mods = Path.Combine(work, "alice-mods");
        Directory.CreateDirectory(mods);
        var rng = new Random(7);
        var hashes = new List<string>();
        foreach (var f in new[] { "body.tex", "hair.mdl" })
        {
            var bytes = new byte[2 << 20];
            rng.NextBytes(bytes);
            File.WriteAllBytes(Path.Combine(mods, f), bytes);
            hashes.Add(Sha1(Path.Combine(mods, f)));
        }

        using (var alice = new SyncPlugin("Alice Sample@Lich"))
        using (var bob = new SyncPlugin("Bob Sample@Lich"))
        {
            alice.OnLogin(url, Path.Combine(work, "alice"), mods);
            bob.OnLogin(url, Path.Combine(work, "bob"), null);
            if (!Frames(() => alice.Registered && bob.Registered, alice, bob)) return Fail("registration");
            // A node starts friends-only with no friends: pair Alice and Bob.
            alice.Registered = bob.Registered = false;
            alice.SetFriends(bob.Key);
            bob.SetFriends(alice.Key);
            if (!Frames(() => alice.Registered && bob.Registered, alice, bob)) return Fail("registration as friends");
            bob.LookUp(new[] { "Alice Sample@Lich", "Nobody Around@Lich" });
            if (!Frames(() => !bob.Busy, alice, bob)) return Fail("lookups");
            bob.Want("Alice Sample@Lich", hashes);
            if (!Frames(() => !bob.Busy, alice, bob)) return Fail("fetches");
            if (bob.Finished != hashes.Count) return Fail(bob.Finished + " of " + hashes.Count + " files fetched");
            alice.SetFriendsOnly(true);
            alice.OnFrame();
        } // both log out: Dispose shuts the nodes down
        Console.WriteLine("sample: ok");
        return 0;
    }

    static int Fail(string what)
    {
        Console.WriteLine("sample: FAILED: " + what);
        return 1;
    }
}
