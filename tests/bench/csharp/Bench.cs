// One timed fetch through the C# binding, the C# side of tests/bench/csharp-vs-rust.sh: the same
// steps as tests/examples/node_fetch.rs (a seeder node shares SHARED_DIR, a fetcher node fetches
// HASH from it by player name, both registered with the phone book, in this one process; keys in
// KEYDIR, kept across runs, data in WORKDIR), the time running from Fetch() to its Done event,
// polled every 1 ms with DrainEvents().
// Prints `fetch_seconds=S bytes=N`.
// Run with: mono Bench.exe PHONEBOOK_URL KEYDIR WORKDIR SHARED_DIR HASH  (LD_LIBRARY_PATH: the .so)
using System;
using System.Diagnostics;
using System.IO;
using System.Threading;
using FfxivP2p;

static class Bench
{
    const int PollMs = 1;
    static readonly TimeSpan Wait = TimeSpan.FromSeconds(120);

    static Node Start(string key, string root, string name, string url)
    {
        return new Node(new NodeConfig
        {
            Identity = key, DataDir = root,
            Phonebook = url, Name = name, Listen = "127.0.0.1:0",
        });
    }

    static NodeEvent WaitFor(Node node, Func<NodeEvent, bool> want)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < Wait)
        {
            foreach (var e in node.DrainEvents())
                if (want(e)) return e;
            Thread.Sleep(PollMs);
        }
        throw new TimeoutException("timed out");
    }

    static int Main(string[] args)
    {
        if (args.Length != 5)
        {
            Console.Error.WriteLine("usage: mono Bench.exe PHONEBOOK_URL KEYDIR WORKDIR SHARED_DIR HASH");
            return 2;
        }
        string url = args[0], keys = args[1], work = args[2], shared = args[3], hash = args[4];
        const string seeder = "Sharp Seeder@Lich";
        using (var a = Start(Path.Combine(keys, "a.key"), Path.Combine(work, "a"), seeder, url))
        using (var b = Start(Path.Combine(keys, "b.key"), Path.Combine(work, "b"), "Sharp Fetcher@Lich", url))
        {
            a.Share(shared);
            WaitFor(a, e => e.Kind == FfxpEventKind.Registered);
            a.SetFriends(new[] { b.Key }); // a node starts friends-only with no friends
            WaitFor(a, e => e.Kind == FfxpEventKind.Registered);
            WaitFor(b, e => e.Kind == FfxpEventKind.Registered);
            var clock = Stopwatch.StartNew();
            ulong op = b.Fetch(hash, seeder);
            var end = WaitFor(b, e => e.Op == op && (e.Kind == FfxpEventKind.Done || e.Kind == FfxpEventKind.Failed));
            double seconds = clock.Elapsed.TotalSeconds;
            if (end.Kind != FfxpEventKind.Done)
            {
                Console.Error.WriteLine("fetch failed: " + end);
                return 1;
            }
            long bytes = new FileInfo(b.DownloadPath(hash)).Length;
            Console.WriteLine("fetch_seconds=" + seconds.ToString("F4", System.Globalization.CultureInfo.InvariantCulture) + " bytes=" + bytes);
        }
        return 0;
    }
}
