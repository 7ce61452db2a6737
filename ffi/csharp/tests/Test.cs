// The C# binding against the real library (ffi/csharp/FfxivP2p.cs over libffxiv_p2p_peer_v1):
// the event struct's layout against the header's, bad input (typed errors, never a crash),
// then two nodes in this process with a real pi-server: register, look each other up, fetch
// with progress and byte-compare, cancel, visibility, shut down, create again.
// Usage: mono Test.exe PHONEBOOK_URL WORKDIR --layout=SIZE,KIND,OP,DONE,TOTAL,KEY,LEN,MESSAGE
// (the layout as the C compiler sees the header; .ci/csharp-test.sh measures it with gcc).
// Prints every check; exits 1 if any failed.
using System;
using System.Collections.Generic;
using System.IO;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Threading;
using FfxivP2p;

// A TCP proxy to the phone book whose forwarding stops (in both directions, on open
// connections too) while Frozen is set: a phone book that accepts and never answers.
sealed class FreezingProxy
{
    readonly TcpListener listener = new TcpListener(IPAddress.Loopback, 0);
    readonly IPEndPoint target;
    volatile bool stopped;
    public volatile bool Frozen;
    public string Url { get { return "http://127.0.0.1:" + ((IPEndPoint)listener.LocalEndpoint).Port; } }

    public FreezingProxy(string url)
    {
        var u = new Uri(url);
        target = new IPEndPoint(IPAddress.Parse(u.Host), u.Port);
        listener.Start();
        var t = new Thread(() =>
        {
            try
            {
                while (!stopped)
                {
                    var client = listener.AcceptTcpClient();
                    var server = new TcpClient();
                    server.Connect(target);
                    Pump(client, server);
                    Pump(server, client);
                }
            }
            catch (SocketException) { } // Stop()
            catch (ObjectDisposedException) { }
        });
        t.IsBackground = true;
        t.Start();
    }

    void Pump(TcpClient from, TcpClient to)
    {
        var t = new Thread(() =>
        {
            var buf = new byte[16384];
            try
            {
                int n;
                while ((n = from.GetStream().Read(buf, 0, buf.Length)) > 0)
                {
                    while (Frozen && !stopped) Thread.Sleep(10);
                    if (stopped) break;
                    to.GetStream().Write(buf, 0, n);
                }
            }
            catch (IOException) { }
            catch (ObjectDisposedException) { }
            from.Close();
            to.Close();
        });
        t.IsBackground = true;
        t.Start();
    }

    public void Stop()
    {
        stopped = true;
        listener.Stop();
    }
}

static class Test
{
    static int checks, failures;
    static readonly TimeSpan Wait = TimeSpan.FromSeconds(20);

    static void Check(bool ok, string what)
    {
        checks++;
        if (ok) Console.WriteLine("ok   " + what);
        else { failures++; Console.WriteLine("FAIL " + what); }
    }

    // Runs a, which must throw FfxpException with status want and a non-empty message.
    static void Throws(FfxpStatus want, string what, Action a)
    {
        try
        {
            a();
            Check(false, what + ": no exception (want " + want + ")");
        }
        catch (FfxpException e)
        {
            Check(e.Status == want && e.NativeMessage.Length > 0,
                what + ": " + e.Status + " (want " + want + "): " + e.Message);
        }
        catch (Exception e)
        {
            Check(false, what + ": " + e.GetType().Name + " (want FfxpException " + want + "): " + e.Message);
        }
    }

    // Like Throws, and the library's message must contain part.
    static void ThrowsWith(FfxpStatus want, string what, string part, Action a)
    {
        try
        {
            a();
            Check(false, what + ": no exception (want " + want + ")");
        }
        catch (FfxpException e)
        {
            Check(e.Status == want && e.NativeMessage.Contains(part),
                what + ": " + e.Status + " (want " + want + ", message with \"" + part + "\"): " + e.Message);
        }
        catch (Exception e)
        {
            Check(false, what + ": " + e.GetType().Name + " (want FfxpException " + want + "): " + e.Message);
        }
    }

    static string Sha1(string path)
    {
        using (var sha = SHA1.Create())
        using (var f = File.OpenRead(path))
            return BitConverter.ToString(sha.ComputeHash(f)).Replace("-", "").ToLowerInvariant();
    }

    static bool SameBytes(string a, string b)
    {
        if (!File.Exists(a) || !File.Exists(b)) return false;
        byte[] x = File.ReadAllBytes(a), y = File.ReadAllBytes(b);
        if (x.Length != y.Length) return false;
        for (int i = 0; i < x.Length; i++) if (x[i] != y[i]) return false;
        return true;
    }

    // Ticks node once per "frame" (16 ms) until an event matches; returns it (null on timeout).
    // Every event seen goes to `seen` if given.
    static NodeEvent WaitFor(Node node, Func<NodeEvent, bool> want, List<NodeEvent> seen = null)
    {
        var start = DateTime.UtcNow;
        while (DateTime.UtcNow - start < Wait)
        {
            foreach (var e in node.DrainEvents())
            {
                if (seen != null) seen.Add(e);
                if (e.Kind == FfxpEventKind.Failed || e.Kind == FfxpEventKind.RegistrationRetrying)
                    Console.WriteLine("     event: " + e);
                if (want(e)) return e;
            }
            Thread.Sleep(16);
        }
        Console.WriteLine("     timed out after " + Wait.TotalSeconds + " s");
        return null;
    }

    static Func<NodeEvent, bool> Is(FfxpEventKind kind, ulong op = 0)
    {
        return e => e.Kind == kind && e.Op == op;
    }

    static Func<NodeEvent, bool> Ends(ulong op)
    {
        return e => e.Op == op &&
            (e.Kind == FfxpEventKind.Done || e.Kind == FfxpEventKind.Failed || e.Kind == FfxpEventKind.Found);
    }

    // Threads of this process named by the library's executors ("ffxiv-p2p-N"; Linux /proc).
    static int LibraryThreads()
    {
        int n = 0;
        foreach (var task in Directory.GetDirectories("/proc/self/task"))
        {
            try { if (File.ReadAllText(Path.Combine(task, "comm")).StartsWith("ffxiv-p2p-")) n++; }
            catch (IOException) { } // the thread ended meanwhile
        }
        return n;
    }

    static int FreeUdpPort()
    {
        using (var u = new UdpClient(new IPEndPoint(IPAddress.Loopback, 0)))
            return ((IPEndPoint)u.Client.LocalEndPoint).Port;
    }

    static void CheckLayout(string arg)
    {
        var actual = Layout.Actual();
        Check(string.Join(",", actual) == string.Join(",", Layout.Expected),
            "FfxpEvent marshalled layout " + string.Join(",", actual) + " = the binding's expected " +
            string.Join(",", Layout.Expected));
        if (arg == null) { Check(false, "no --layout given: cannot compare with the C header"); return; }
        Check(arg == string.Join(",", actual),
            "FfxpEvent layout (size, offsets) " + string.Join(",", actual) + " = the C header's " + arg);
        var options = Layout.ActualOptions();
        Check(string.Join(",", options) == string.Join(",", Layout.ExpectedOptions),
            "FfxpNodeOptions marshalled layout " + string.Join(",", options) + " = the header's (layout.c's static assertions) " +
            string.Join(",", Layout.ExpectedOptions));
    }

    static void BadInput(string work)
    {
        string dir = Path.Combine(work, "bad"), id = Path.Combine(dir, "id.key");
        Throws(FfxpStatus.InvalidArgument, "empty config", () => new Node(new NodeConfig()));
        Throws(FfxpStatus.InvalidArgument, "bad listen address",
            () => new Node(new NodeConfig { Identity = id, DataDir = dir, Listen = "not an address" }));
        Throws(FfxpStatus.StartFailed, "phone book without a name",
            () => new Node(new NodeConfig { Identity = id, DataDir = dir, Phonebook = "http://127.0.0.1:1", Listen = "127.0.0.1:0" }));
        Throws(FfxpStatus.StartFailed, "name that is not First Last@World",
            () => new Node(new NodeConfig { Identity = id, DataDir = dir, Phonebook = "http://127.0.0.1:1", Name = "nobody", Listen = "127.0.0.1:0" }));
        // Several phone books and a CA file: bad lists and files are refused at creation, with the
        // bad entry named in the library's message.
        var nine = new List<string>();
        for (int i = 1; i <= NativeMethods.MaxPhonebooks + 1; i++) nine.Add("http://127.0.0.1:" + i);
        ThrowsWith(FfxpStatus.InvalidArgument, "9 phone books", "at most 8",
            () => new Node(id, dir, nine, "Sharp Bad@Lich", "127.0.0.1:0"));
        ThrowsWith(FfxpStatus.InvalidArgument, "an ftp:// phone book", "ftp://127.0.0.1:2",
            () => new Node(id, dir, new[] { "http://127.0.0.1:1", "ftp://127.0.0.1:2" }, "Sharp Bad@Lich", "127.0.0.1:0"));
        ThrowsWith(FfxpStatus.InvalidArgument, "a phone book twice (Phonebook and Phonebooks)", "listed twice",
            () => new Node(new NodeConfig { Identity = id, DataDir = dir, Phonebook = "http://127.0.0.1:1",
                Phonebooks = new[] { "http://127.0.0.1:1" }, Name = "Sharp Bad@Lich", Listen = "127.0.0.1:0" }));
        string missingCa = Path.Combine(dir, "missing-ca.pem"), junkCa = Path.Combine(work, "junk-ca.pem");
        ThrowsWith(FfxpStatus.InvalidArgument, "a missing CA file", "missing-ca.pem",
            () => new Node(id, dir, new[] { "https://127.0.0.1:1" }, "Sharp Bad@Lich", "127.0.0.1:0", missingCa));
        File.WriteAllText(junkCa, "not a certificate\n");
        ThrowsWith(FfxpStatus.InvalidArgument, "a CA file that is not PEM", "no PEM certificate",
            () => Node.Create(id, dir, new[] { "https://127.0.0.1:1" }, "Sharp Bad@Lich", "127.0.0.1:0", junkCa));
        foreach (var entry in new[] { null, "", "http://a:1 http://b:2" })
        {
            try
            {
                new Node(id, dir, new[] { "http://127.0.0.1:1", entry }, "Sharp Bad@Lich", "127.0.0.1:0");
                Check(false, "phone-book entry " + (entry == null ? "null" : "\"" + entry + "\"") + ": no exception");
            }
            catch (ArgumentException e)
            {
                Check(true, "phone-book entry " + (entry == null ? "null" : "\"" + entry + "\"") + ": ArgumentException: " + e.Message);
            }
        }
        var badOptions = new FfxpNodeOptions { StructSize = new UIntPtr(4) };
        byte[] bid = NativeMethods.Encode(id), bdir = NativeMethods.Encode(dir);
        ulong unused;
        var st = NativeMethods.ffxp_node_create_ex(bid, NativeMethods.Len(bid), bdir, NativeMethods.Len(bdir),
            null, UIntPtr.Zero, null, UIntPtr.Zero, null, UIntPtr.Zero, ref badOptions, out unused);
        Check(st == FfxpStatus.InvalidArgument, "raw: options with struct_size 4: " + st + ": " + NativeMethods.LastError());
        try
        {
            new Node(new NodeConfig { Identity = "bad\uD800surrogate", DataDir = dir });
            Check(false, "lone surrogate: no exception");
        }
        catch (System.Text.EncoderFallbackException e)
        {
            Check(true, "lone surrogate in a string: " + e.GetType().Name + " before any native call");
        }

        // Raw calls, as the header has them: what the wrapper can never send.
        ulong h;
        byte[] tmp = NativeMethods.Encode("/tmp"), bad = { 0x66, 0xff, 0xfe };
        var s = NativeMethods.ffxp_node_create(null, new UIntPtr(5), tmp, NativeMethods.Len(tmp), null, UIntPtr.Zero,
            null, UIntPtr.Zero, null, UIntPtr.Zero, out h);
        Check(s == FfxpStatus.NullPointer, "raw: null pointer with length 5: " + s + ": " + NativeMethods.LastError());
        s = NativeMethods.ffxp_node_create(bad, NativeMethods.Len(bad), tmp, NativeMethods.Len(tmp), null, UIntPtr.Zero,
            null, UIntPtr.Zero, null, UIntPtr.Zero, out h);
        Check(s == FfxpStatus.InvalidUtf8, "raw: invalid UTF-8: " + s + ": " + NativeMethods.LastError());
        FfxpEvent ev;
        s = NativeMethods.ffxp_node_poll_event(0, out ev);
        Check(s == FfxpStatus.InvalidHandle, "raw: handle 0: " + s + ": " + NativeMethods.LastError());
        s = NativeMethods.ffxp_node_poll_event(0xdeadbeef00000007UL, out ev);
        Check(s == FfxpStatus.InvalidHandle, "raw: forged handle: " + s);
        Check(NativeMethods.ffxp_node_shutdown(12345) == FfxpStatus.InvalidHandle, "raw: shutdown of a forged handle");
        UIntPtr need;
        s = NativeMethods.ffxp_last_error(new byte[2], new UIntPtr(2), out need);
        Check(s == FfxpStatus.BufferTooSmall && need.ToUInt64() > 2,
            "raw: last_error into 2 bytes: " + s + ", needs " + need);

        // A node without a phone book: bad calls on a live node.
        var n = new Node(new NodeConfig { Identity = id, DataDir = dir, Listen = "127.0.0.1:0" });
        ulong first = n.Handle.Value;
        Throws(FfxpStatus.InvalidArgument, "fetch with a bad hash", () => n.Fetch("zz", "A B@C"));
        Throws(FfxpStatus.UnknownOperation, "cancel of an unknown op", () => n.Cancel(999));
        Throws(FfxpStatus.InvalidArgument, "visibility 7", () => n.SetVisibility((Visibility)7));
        var many = new List<byte[]>();
        for (int i = 0; i < 65; i++) many.Add(new byte[32]);
        Throws(FfxpStatus.InvalidArgument, "65 friends", () => n.SetFriends(many));
        Throws(FfxpStatus.InvalidArgument, "a friend twice", () => n.SetFriends(new[] { n.Key, n.Key }));
        try { n.SetFriends(new[] { new byte[31] }); Check(false, "a 31-byte key must be refused"); }
        catch (ArgumentException) { Check(true, "a 31-byte key: ArgumentException"); }
        n.SetFriends(new[] { n.Key });
        Check(true, "SetFriends with one key: Ok");
        Throws(FfxpStatus.InvalidArgument, "share of a missing folder", () => n.Share(Path.Combine(dir, "missing")));
        ulong op = n.Lookup("Some One@World");
        var failed = WaitFor(n, Ends(op));
        Check(failed != null && failed.Kind == FfxpEventKind.Failed && failed.Message.Contains("phone book"),
            "lookup without a phone book fails as an event: " + failed);

        // Two threads polling one node at once: no crash, no exception.
        Exception thrown = null;
        var threads = new Thread[2];
        for (int t = 0; t < threads.Length; t++)
        {
            threads[t] = new Thread(() =>
            {
                try { for (int i = 0; i < 2000; i++) n.DrainEvents(); }
                catch (Exception e) { thrown = e; }
            });
            threads[t].Start();
        }
        foreach (var t in threads) t.Join();
        Check(thrown == null, "two threads polling one node 2000 times each" + (thrown == null ? "" : ": " + thrown));

        // Shutdown through the SafeHandle: twice is safe, calls after are InvalidHandle.
        n.Shutdown();
        Check(n.Handle.ShutdownStatus == FfxpStatus.Ok && n.IsShutDown, "shutdown: " + n.Handle.ShutdownStatus);
        try { n.Shutdown(); n.Dispose(); Check(true, "shutdown twice and Dispose after it: no exception"); }
        catch (Exception e) { Check(false, "shutdown twice: " + e); }
        Throws(FfxpStatus.InvalidHandle, "lookup after shutdown", () => n.Lookup("Some One@World"));
        Throws(FfxpStatus.InvalidHandle, "DrainEvents after shutdown", () => n.DrainEvents());
        Throws(FfxpStatus.InvalidHandle, "Tick after shutdown", () => n.Tick());
        s = NativeMethods.ffxp_node_poll_event(first, out ev);
        Check(s == FfxpStatus.InvalidHandle, "raw: the shut-down handle value: " + s + ": " + NativeMethods.LastError());

        // A node nobody disposes: the finalizer shuts it down.
        ulong lost = MakeAndForget(id, dir);
        Check(lost != first, "a new node gets a new handle value");
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        s = NativeMethods.ffxp_node_poll_event(lost, out ev);
        Check(s == FfxpStatus.InvalidHandle, "a node never disposed is shut down by its finalizer: " + s);
    }

    // In its own method so that no local keeps the Node reachable.
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    static ulong MakeAndForget(string id, string dir)
    {
        return new Node(new NodeConfig { Identity = id, DataDir = dir, Listen = "127.0.0.1:0" }).Handle.Value;
    }

    static void TwoNodes(string url, string work)
    {
        string shared = Path.Combine(work, "shared");
        Directory.CreateDirectory(shared);
        var rng = new Random(12);
        var small = new byte[3000001];
        rng.NextBytes(small);
        File.WriteAllBytes(Path.Combine(shared, "mod.tex"), small);
        var big = new byte[48 << 20];
        rng.NextBytes(big);
        File.WriteAllBytes(Path.Combine(shared, "big.mdl"), big);
        string smallHash = Sha1(Path.Combine(shared, "mod.tex")), bigHash = Sha1(Path.Combine(shared, "big.mdl"));
        const string alice = "Sharp Seeder@Lich", bob = "Sharp Fetcher@Lich";
        int port = FreeUdpPort();
        // Two phone books each, one of them down (nothing listens on port 1): A and B register
        // with the other and find each other through it. B, which looks up, lists the dead one
        // first; B comes from the constructor overload with a list.
        const string dead = "http://127.0.0.1:1";
        var aConfig = new NodeConfig
        {
            Identity = Path.Combine(work, "a", "id.key"), DataDir = Path.Combine(work, "a"),
            Phonebooks = new[] { url, dead }, Name = alice, Listen = "127.0.0.1:" + port,
        };
        var a = new Node(aConfig);
        a.Share(shared);
        var b = new Node(Path.Combine(work, "b", "id.key"), Path.Combine(work, "b"), new List<string> { dead, url },
            bob, "127.0.0.1:0");
        Check(WaitFor(a, Is(FfxpEventKind.Registered)) != null, "A registered");
        Check(WaitFor(b, Is(FfxpEventKind.Registered)) != null, "B registered");
        int running = LibraryThreads();
        Check(running > 0, running + " executor threads (ffxiv-p2p-*) while two nodes run");

        // A new node is friends-only with no friends: B cannot find A. Then each lists the other.
        ulong op = b.Lookup(alice);
        var hiddenA = WaitFor(b, Ends(op));
        Check(hiddenA != null && hiddenA.Kind == FfxpEventKind.Failed, "B cannot find a new (friends-only) A: " + hiddenA);
        Check(a.Key.Length == 32 && Convert.ToBase64String(a.Key) != Convert.ToBase64String(b.Key), "each node has its own 32-byte key");
        a.SetFriends(new[] { b.Key });
        b.SetFriends(new[] { a.Key });
        Check(WaitFor(a, Is(FfxpEventKind.Registered)) != null, "A re-registered with B as its friend");
        Check(WaitFor(b, Is(FfxpEventKind.Registered)) != null, "B re-registered with A as its friend");

        // Look each other up.
        op = b.Lookup(alice);
        var found = WaitFor(b, Ends(op));
        Check(found != null && found.Kind == FfxpEventKind.Found && found.Key.Length == 32,
            "B looks A up: " + found);
        byte[] aliceKey = found == null ? null : found.Key;
        op = a.Lookup(bob);
        var back = WaitFor(a, Ends(op));
        Check(back != null && back.Kind == FfxpEventKind.Found && Convert.ToBase64String(back.Key) != Convert.ToBase64String(aliceKey ?? new byte[0]),
            "A looks B up (another key): " + back);

        // Fetch with progress through Tick() and the C# events, as a plugin's frame handler does.
        var progress = new List<ulong[]>();
        bool done = false;
        string failedWhy = null;
        Action<ulong, ulong, ulong> onProgress = (o, d, t) => progress.Add(new[] { o, d, t });
        Action<ulong> onDone = o => done = true;
        Action<ulong, string> onFailed = (o, why) => failedWhy = why;
        b.Progress += onProgress;
        b.Done += onDone;
        b.Failed += onFailed;
        op = b.Fetch(smallHash.ToUpperInvariant(), alice);
        var start = DateTime.UtcNow;
        while (!done && failedWhy == null && DateTime.UtcNow - start < Wait)
        {
            b.Tick();
            Thread.Sleep(16);
        }
        b.Progress -= onProgress;
        b.Done -= onDone;
        b.Failed -= onFailed;
        Check(done, "fetch of 3,000,001 bytes done via Tick()" + (failedWhy == null ? "" : ": failed: " + failedWhy));
        bool monotonic = true, totals = progress.Count > 0;
        for (int i = 0; i < progress.Count; i++)
        {
            totals &= progress[i][0] == op && progress[i][2] == (ulong)small.Length;
            if (i > 0 && progress[i][1] < progress[i - 1][1]) monotonic = false;
        }
        Check(progress.Count > 0 && monotonic && totals,
            progress.Count + " progress events, for this op, total = file size, done never decreasing");
        Check(SameBytes(Path.Combine(shared, "mod.tex"), b.DownloadPath(smallHash)),
            "downloaded file is byte-identical at " + b.DownloadPath(smallHash));

        // Cancel a fetch right after it starts (the lookup alone outlasts the call).
        op = b.Fetch(bigHash, alice);
        b.Cancel(op);
        var seen = new List<NodeEvent>();
        var end = WaitFor(b, Ends(op), seen);
        Check(end != null && end.Kind == FfxpEventKind.Failed && end.Message == "cancelled", "cancelled fetch ends as Failed \"cancelled\": " + end);
        Throws(FfxpStatus.UnknownOperation, "cancel of the same op again", () => b.Cancel(op));
        Thread.Sleep(300);
        bool noDone = true;
        foreach (var e in b.DrainEvents()) if (e.Op == op && e.Kind == FfxpEventKind.Done) noDone = false;
        Check(noDone, "no Done for the cancelled op afterwards");

        // C reaches the phone book through a proxy that the test freezes once C is registered:
        // C's lookup and fetch then wait on a phone book that never answers, so they surely
        // are still running when cancelled, and Cancel must succeed (no race to accept).
        var proxy = new FreezingProxy(url);
        var c = new Node(new NodeConfig
        {
            Identity = Path.Combine(work, "c", "id.key"), DataDir = Path.Combine(work, "c"),
            Phonebook = proxy.Url, Name = "Sharp Waiter@Lich", Listen = "127.0.0.1:0",
        });
        Check(WaitFor(c, Is(FfxpEventKind.Registered)) != null, "C registered through the proxy");
        proxy.Frozen = true;
        op = c.Lookup(alice);
        Thread.Sleep(200);
        try { c.Cancel(op); Check(true, "cancel of a lookup waiting on a silent phone book: Ok"); }
        catch (FfxpException e) { Check(false, "cancel of a waiting lookup: " + e.Message); }
        end = WaitFor(c, Ends(op));
        Check(end != null && end.Kind == FfxpEventKind.Failed && end.Message == "cancelled", "cancelled lookup: " + end);
        op = c.Fetch(bigHash, alice);
        Thread.Sleep(200);
        try { c.Cancel(op); Check(true, "cancel of a fetch waiting on a silent phone book: Ok"); }
        catch (FfxpException e) { Check(false, "cancel of a waiting fetch: " + e.Message); }
        end = WaitFor(c, Ends(op));
        Check(end != null && end.Kind == FfxpEventKind.Failed && end.Message == "cancelled", "cancelled fetch: " + end);
        var t0 = DateTime.UtcNow;
        c.Dispose();
        var took = DateTime.UtcNow - t0;
        Check(took < TimeSpan.FromSeconds(8), "shutdown with a silent phone book took " + (int)took.TotalMilliseconds + " ms (bounded)");
        proxy.Stop();

        // Friends only with no friends: nobody finds A; public: found again.
        a.SetFriends(new byte[0][]);
        Check(WaitFor(a, Is(FfxpEventKind.Registered)) != null, "A re-registered as friends-only");
        op = b.Lookup(alice);
        end = WaitFor(b, Ends(op));
        Check(end != null && end.Kind == FfxpEventKind.Failed, "B's lookup of hidden A fails: " + end);
        a.SetVisibility(Visibility.Public);
        Check(WaitFor(a, Is(FfxpEventKind.Registered)) != null, "A re-registered as public");

        // Shut A down, create it again on the same port in this process, fetch the big file.
        t0 = DateTime.UtcNow;
        a.Shutdown();
        Check(a.Handle.ShutdownStatus == FfxpStatus.Ok, "A shut down in " + (int)(DateTime.UtcNow - t0).TotalMilliseconds + " ms");
        a.Shutdown();
        Node again = null;
        int tries = 0;
        while (again == null)
        {
            tries++;
            try { again = new Node(aConfig); }
            catch (FfxpException e)
            {
                if (e.Status != FfxpStatus.StartFailed || DateTime.UtcNow - t0 > Wait) { Check(false, "A again: " + e.Message); break; }
                Thread.Sleep(50);
            }
        }
        if (again == null) { b.Dispose(); return; }
        Check(true, "A created again on port " + port + " (" + tries + " attempts)");
        again.Share(shared);
        Check(WaitFor(again, Is(FfxpEventKind.Registered)) != null, "A again registered");
        again.SetVisibility(Visibility.Public);
        Check(WaitFor(again, Is(FfxpEventKind.Registered)) != null, "A again registered as public");
        op = b.Lookup(alice);
        found = WaitFor(b, Ends(op));
        Check(found != null && found.Kind == FfxpEventKind.Found && aliceKey != null &&
              Convert.ToBase64String(found.Key) == Convert.ToBase64String(aliceKey),
            "B finds A again, same key");
        seen.Clear();
        op = b.Fetch(bigHash, alice);
        end = WaitFor(b, Ends(op), seen);
        int progressCount = seen.FindAll(e => e.Op == op && e.Kind == FfxpEventKind.Progress).Count;
        Check(end != null && end.Kind == FfxpEventKind.Done && progressCount > 0,
            "fetch of 48 MiB from A-again after the cancelled one: " + end + ", " + progressCount + " progress events");
        Check(SameBytes(Path.Combine(shared, "big.mdl"), b.DownloadPath(bigHash)), "48 MiB file byte-identical");
        again.Dispose();
        b.Dispose();
        Check(again.IsShutDown && b.IsShutDown, "all nodes shut down");
        var stop = DateTime.UtcNow;
        // A node's stopped threads first finish what is still pending (a QUIC connection
        // closing, a request to a silent phone book), for at most the library's LINGER (60 s:
        // peer/src/node/threads.rs), then exit: wait for that bound, not for a guess.
        while (LibraryThreads() > 0 && DateTime.UtcNow - stop < TimeSpan.FromSeconds(65)) Thread.Sleep(20);
        Check(LibraryThreads() == 0, "no executor thread left after every node was shut down (" +
            LibraryThreads() + " left after " + (int)(DateTime.UtcNow - stop).TotalMilliseconds + " ms)");
    }

    static int Main(string[] args)
    {
        string layout = null;
        var rest = new List<string>();
        foreach (var a in args)
        {
            if (a.StartsWith("--layout=")) layout = a.Substring("--layout=".Length);
            else rest.Add(a);
        }
        if (rest.Count != 2)
        {
            Console.Error.WriteLine("usage: mono Test.exe PHONEBOOK_URL WORKDIR --layout=SIZE,OFFSETS...");
            return 2;
        }
        try
        {
            CheckLayout(layout);
            BadInput(rest[1]);
            TwoNodes(rest[0], rest[1]);
        }
        catch (Exception e)
        {
            Check(false, "unexpected exception: " + e);
        }
        Console.WriteLine((failures == 0 ? "PASS" : "FAILED") + ": " + (checks - failures) + " passed, " + failures + " failed");
        return failures == 0 ? 0 : 1;
    }
}
