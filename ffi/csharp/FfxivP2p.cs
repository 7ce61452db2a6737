// C# binding of the C ABI in ffi/include/ffxiv_p2p_peer.h (library ffxiv_p2p_peer_v1).
//
// Three layers:
// - NativeMethods: one P/Invoke per ffxp_* function, exactly as the header declares it
//   (uint64_t handles, UTF-8 pointer + length, FfxpStatus return). Public so tests can feed it
//   raw bad input; a plugin uses Node.
// - NodeHandle: a SafeHandle whose ReleaseHandle calls ffxp_node_shutdown, so a node is shut
//   down exactly once whether the plugin calls Dispose, Shutdown, or forgets (finalizer).
// - Node: strings in and out as C# strings, failures as FfxpException (status + the library's
//   message), and Tick()/DrainEvents() to call once per frame on the framework thread.
//
// Written for C# 7 and the .NET Framework / netstandard2.0 API surface: Mono's mcs compiles it
// (CI), and .NET 8 (Dalamud) loads the same assembly. No unsafe code: the event struct's
// fixed-size arrays are marshalled with ByValArray.
using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Text;

namespace FfxivP2p
{
    /// <summary>What every native call returns. Values are stable (FfxpStatus in the header).</summary>
    public enum FfxpStatus : int
    {
        Ok = 0,
        NoEvent = 1,
        NullPointer = 2,
        InvalidUtf8 = 3,
        InvalidHandle = 4,
        InvalidArgument = 5,
        StartFailed = 6,
        UnknownOperation = 7,
        BufferTooSmall = 8,
        Internal = 99,
    }

    /// <summary>What an event reports. Values are stable (FfxpEventKind in the header).</summary>
    public enum FfxpEventKind : int
    {
        /// <summary>Registered with the phone book (Total = seconds the record lives).</summary>
        Registered = 1,
        /// <summary>Registration failed (Message says why, Done = failures, Total = seconds to retry).</summary>
        RegistrationRetrying = 2,
        /// <summary>Not registered (no phone book, or shut down).</summary>
        RegistrationOff = 3,
        /// <summary>Fetch progress for Op (Done of Total bytes); coalesced.</summary>
        Progress = 4,
        /// <summary>Lookup Op found a player (Key).</summary>
        Found = 5,
        /// <summary>Operation Op finished.</summary>
        Done = 6,
        /// <summary>Operation Op failed or was cancelled (Message).</summary>
        Failed = 7,
    }

    /// <summary>Who may find us (ffxp_node_set_visibility).</summary>
    public enum Visibility : uint
    {
        Public = 0,
        /// <summary>Friends only: the keys of the last SetFriends (none: nobody). A new node starts so.</summary>
        Friends = 1,
    }

    /// <summary>
    /// The header's FfxpEvent, field for field. Layout on x64 (Linux and Windows alike):
    /// kind 0 (4 bytes + 4 padding), op 8, done 16, total 24, key 32 (32 bytes), message_len 64,
    /// message 68 (256 bytes), size 328 (padded to 8). Layout.Check() verifies this at run time.
    /// </summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct FfxpEvent
    {
        public FfxpEventKind Kind;
        public ulong Op;
        public ulong Done;
        public ulong Total;
        [MarshalAs(UnmanagedType.ByValArray, SizeConst = 32)]
        public byte[] Key;
        public uint MessageLen;
        [MarshalAs(UnmanagedType.ByValArray, SizeConst = NativeMethods.MessageMax)]
        public byte[] Message;
    }

    /// <summary>
    /// The header's FfxpNodeOptions (ffxp_node_create_ex), field for field: struct_size,
    /// phonebook_ca (pointer), phonebook_ca_len. 24 bytes on x64 (offsets 0, 8, 16), 12 on x86.
    /// StructSize must be Marshal.SizeOf(typeof(FfxpNodeOptions)); the CA path's bytes must stay
    /// pinned during the call (Node does this).
    /// </summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct FfxpNodeOptions
    {
        public UIntPtr StructSize;
        public IntPtr PhonebookCa;
        public UIntPtr PhonebookCaLen;
    }

    /// <summary>The C ABI as declared in ffxiv_p2p_peer.h. Every string is UTF-8, pointer + length.</summary>
    public static class NativeMethods
    {
        /// <summary>The native library's name (file: libffxiv_p2p_peer_v1.so, ffxiv_p2p_peer_v1.dll).</summary>
        public const string Library = "ffxiv_p2p_peer_v1";
        /// <summary>FFXP_ABI_VERSION.</summary>
        public const int AbiVersion = 1;
        /// <summary>FFXP_MESSAGE_MAX.</summary>
        public const int MessageMax = 256;
        /// <summary>MAX_NODES.</summary>
        public const int MaxNodes = 64;
        /// <summary>FFXP_MAX_PHONEBOOKS: most phone-book URLs one node takes.</summary>
        public const int MaxPhonebooks = 8;

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern FfxpStatus ffxp_last_error([Out] byte[] buf, UIntPtr cap, out UIntPtr outLen);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern FfxpStatus ffxp_node_create(
            byte[] identity, UIntPtr identityLen,
            byte[] dataDir, UIntPtr dataDirLen,
            byte[] phonebook, UIntPtr phonebookLen,
            byte[] name, UIntPtr nameLen,
            byte[] listen, UIntPtr listenLen,
            out ulong outHandle);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern FfxpStatus ffxp_node_create_ex(
            byte[] identity, UIntPtr identityLen,
            byte[] dataDir, UIntPtr dataDirLen,
            byte[] phonebook, UIntPtr phonebookLen,
            byte[] name, UIntPtr nameLen,
            byte[] listen, UIntPtr listenLen,
            ref FfxpNodeOptions options,
            out ulong outHandle);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern FfxpStatus ffxp_node_share(ulong handle, byte[] dir, UIntPtr dirLen);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern FfxpStatus ffxp_node_lookup(ulong handle, byte[] name, UIntPtr nameLen, out ulong outOp);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern FfxpStatus ffxp_node_fetch(
            ulong handle, byte[] hash, UIntPtr hashLen, byte[] player, UIntPtr playerLen, out ulong outOp);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern FfxpStatus ffxp_node_cancel(ulong handle, ulong op);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern FfxpStatus ffxp_node_set_visibility(ulong handle, uint visibility);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern FfxpStatus ffxp_node_set_friends(ulong handle, byte[] keys, UIntPtr count);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern FfxpStatus ffxp_node_key(ulong handle, byte[] outKey);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern FfxpStatus ffxp_node_poll_event(ulong handle, out FfxpEvent outEvent);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern FfxpStatus ffxp_node_shutdown(ulong handle);

        // Throws on a lone surrogate instead of sending U+FFFD: the caller's string was broken.
        static readonly UTF8Encoding Utf8 = new UTF8Encoding(false, true);

        /// <summary>UTF-8 bytes of s, null for null or empty (the ABI's "empty").</summary>
        public static byte[] Encode(string s)
        {
            if (string.IsNullOrEmpty(s)) return null;
            return Utf8.GetBytes(s);
        }

        /// <summary>The length argument that goes with Encode's result.</summary>
        public static UIntPtr Len(byte[] b)
        {
            return new UIntPtr(b == null ? 0u : (uint)b.Length);
        }

        /// <summary>This thread's last error message from the library ("" if none).</summary>
        public static string LastError()
        {
            var buf = new byte[512];
            UIntPtr len;
            var s = ffxp_last_error(buf, new UIntPtr((uint)buf.Length), out len);
            if (s == FfxpStatus.BufferTooSmall)
            {
                buf = new byte[(int)len.ToUInt64()];
                s = ffxp_last_error(buf, new UIntPtr((uint)buf.Length), out len);
            }
            if (s != FfxpStatus.Ok) return "(no message: ffxp_last_error returned " + s + ")";
            return Encoding.UTF8.GetString(buf, 0, (int)len.ToUInt64());
        }

        /// <summary>Throws FfxpException with the library's message unless s is Ok.</summary>
        public static void Check(FfxpStatus s, string call)
        {
            if (s != FfxpStatus.Ok) throw new FfxpException(s, call, LastError());
        }
    }

    /// <summary>
    /// A native call failed: Status is the code, Message the library's own words (from
    /// ffxp_last_error on the calling thread), Call the function that failed.
    /// </summary>
    public class FfxpException : Exception
    {
        public FfxpStatus Status { get; private set; }
        public string Call { get; private set; }
        public string NativeMessage { get; private set; }

        public FfxpException(FfxpStatus status, string call, string nativeMessage)
            : base(call + ": " + status + (string.IsNullOrEmpty(nativeMessage) ? "" : ": " + nativeMessage))
        {
            Status = status;
            Call = call;
            NativeMessage = nativeMessage;
        }
    }

    /// <summary>
    /// Owns one native node. ReleaseHandle calls ffxp_node_shutdown (blocking, bounded: at most
    /// about 6 s, see ffi/README.md); Dispose twice is safe, and a call in flight on another
    /// thread keeps the node alive until it returns (SafeHandle's reference count).
    /// </summary>
    public sealed class NodeHandle : SafeHandle
    {
        ulong value;

        NodeHandle() : base(IntPtr.Zero, true) { }

        internal static NodeHandle FromValue(ulong value)
        {
            var h = new NodeHandle();
            h.value = value;
            // The u64 lives in `value`; `handle` only marks "owned" (it cannot hold 64 bits on x86).
            h.SetHandle(new IntPtr(1));
            return h;
        }

        /// <summary>The native handle (uint64_t). Stays readable after release, for diagnostics.</summary>
        public ulong Value { get { return value; } }

        public override bool IsInvalid { get { return value == 0; } }

        /// <summary>The status of the shutdown ReleaseHandle made (Ok, or why not).</summary>
        public FfxpStatus ShutdownStatus { get; private set; }

        protected override bool ReleaseHandle()
        {
            ShutdownStatus = NativeMethods.ffxp_node_shutdown(value);
            // InvalidHandle: someone shut it down through NativeMethods already; nothing leaks.
            return ShutdownStatus == FfxpStatus.Ok || ShutdownStatus == FfxpStatus.InvalidHandle;
        }
    }

    /// <summary>An event as C# values (a copy: nothing points into native memory).</summary>
    public sealed class NodeEvent
    {
        public FfxpEventKind Kind { get; private set; }
        public ulong Op { get; private set; }
        public ulong Done { get; private set; }
        public ulong Total { get; private set; }
        /// <summary>The player's 32-byte key (Found); null otherwise.</summary>
        public byte[] Key { get; private set; }
        /// <summary>The message (RegistrationRetrying, Failed); "" otherwise.</summary>
        public string Message { get; private set; }

        internal NodeEvent(ref FfxpEvent e)
        {
            Kind = e.Kind;
            Op = e.Op;
            Done = e.Done;
            Total = e.Total;
            Key = e.Kind == FfxpEventKind.Found ? (byte[])e.Key.Clone() : null;
            int n = (int)Math.Min(e.MessageLen, (uint)NativeMethods.MessageMax);
            Message = n == 0 ? "" : Encoding.UTF8.GetString(e.Message, 0, n);
        }

        public override string ToString()
        {
            switch (Kind)
            {
                case FfxpEventKind.Progress: return "Progress op " + Op + ": " + Done + "/" + Total;
                case FfxpEventKind.Found: return "Found op " + Op + ": " + Convert.ToBase64String(Key);
                case FfxpEventKind.Registered: return "Registered for " + Total + " s";
                case FfxpEventKind.RegistrationRetrying:
                    return "RegistrationRetrying (" + Done + " failures, next in " + Total + " s): " + Message;
                case FfxpEventKind.Failed: return "Failed op " + Op + ": " + Message;
                default: return Kind + " op " + Op;
            }
        }
    }

    /// <summary>What a node needs (ffxp_node_create_ex's arguments).</summary>
    public sealed class NodeConfig
    {
        /// <summary>The key file (created if missing). Required.</summary>
        public string Identity;
        /// <summary>Holds downloads (DataDir/downloads/HASH) and pins. Required.</summary>
        public string DataDir;
        /// <summary>
        /// A phone-book URL (or several separated by spaces or newlines); null: none. Listed
        /// before those of Phonebooks when both are set.
        /// </summary>
        public string Phonebook;
        /// <summary>
        /// Phone-book URLs, http://HOST[:PORT] or https://HOST[:PORT], at most
        /// NativeMethods.MaxPhonebooks in all, none twice: the node registers with every one and
        /// looks players up in order, so one that is down does not stop it. null: none. An entry
        /// that is null, empty or holds whitespace is an ArgumentException; a bad URL, too many
        /// or one twice an FfxpException(InvalidArgument) naming it.
        /// </summary>
        public IEnumerable<string> Phonebooks;
        /// <summary>
        /// A PEM file of extra certificate authorities for https:// phone books (a private CA,
        /// or a test CA such as pebble's), beside the bundled web roots; null: none. Read and
        /// checked by the constructor: missing, unreadable or not PEM is
        /// FfxpException(InvalidArgument).
        /// </summary>
        public string PhonebookCa;
        /// <summary>Our player name, "First Last@World"; needed with a phone book.</summary>
        public string Name;
        /// <summary>UDP listen address; null: "0.0.0.0:0".</summary>
        public string Listen;
    }

    /// <summary>
    /// One player's node. Create on login, call Tick() (or DrainEvents()) once per frame on the
    /// framework thread, Dispose() (or Shutdown()) on logout or when the plugin is disabled.
    /// Blocking calls: the constructor (key file, socket bind), Share (hashes the folder: call it
    /// off the game thread) and Shutdown (bounded). Everything else returns at once.
    /// </summary>
    public sealed class Node : IDisposable
    {
        readonly NodeHandle handle;
        readonly string dataDir;

        /// <summary>Raised by Tick() for every event, in order, on the thread that calls Tick().</summary>
        public event Action<NodeEvent> EventReceived;
        /// <summary>Raised by Tick(): op, bytes done, bytes in all.</summary>
        public event Action<ulong, ulong, ulong> Progress;
        /// <summary>Raised by Tick(): op, the player's key.</summary>
        public event Action<ulong, byte[]> Found;
        /// <summary>Raised by Tick(): op.</summary>
        public event Action<ulong> Done;
        /// <summary>Raised by Tick(): op, reason ("cancelled", "shut down", or an error).</summary>
        public event Action<ulong, string> Failed;
        /// <summary>Raised by Tick() for Registered, RegistrationRetrying and RegistrationOff.</summary>
        public event Action<NodeEvent> Registration;

        /// <summary>Starts a node (blocks while it reads the key and binds its socket).</summary>
        public Node(NodeConfig config)
        {
            if (config == null) throw new ArgumentNullException("config");
            byte[] identity = NativeMethods.Encode(config.Identity), data = NativeMethods.Encode(config.DataDir),
                book = NativeMethods.Encode(PhonebookText(config.Phonebook, config.Phonebooks)),
                name = NativeMethods.Encode(config.Name), listen = NativeMethods.Encode(config.Listen),
                ca = NativeMethods.Encode(config.PhonebookCa);
            var options = new FfxpNodeOptions
            {
                StructSize = new UIntPtr((uint)Marshal.SizeOf(typeof(FfxpNodeOptions))),
            };
            ulong h;
            FfxpStatus s;
            var pin = default(GCHandle);
            try
            {
                if (ca != null)
                {
                    // The native side reads the path through this pointer during the call only.
                    pin = GCHandle.Alloc(ca, GCHandleType.Pinned);
                    options.PhonebookCa = pin.AddrOfPinnedObject();
                    options.PhonebookCaLen = NativeMethods.Len(ca);
                }
                s = NativeMethods.ffxp_node_create_ex(
                    identity, NativeMethods.Len(identity), data, NativeMethods.Len(data),
                    book, NativeMethods.Len(book), name, NativeMethods.Len(name),
                    listen, NativeMethods.Len(listen), ref options, out h);
            }
            finally
            {
                if (pin.IsAllocated) pin.Free();
            }
            // The handle is wrapped before anything else can throw, so it is never leaked.
            NativeMethods.Check(s, "ffxp_node_create_ex");
            handle = NodeHandle.FromValue(h);
            dataDir = config.DataDir;
        }

        /// <summary>
        /// Starts a node with several phone books (see NodeConfig.Phonebooks) and, for https://
        /// phone books with a private CA, a PEM CA file (null: none). The same as
        /// new Node(new NodeConfig { ... }).
        /// </summary>
        public Node(string identity, string dataDir, IEnumerable<string> phoneBooks, string name,
            string listen = null, string phoneBookCa = null)
            : this(new NodeConfig
            {
                Identity = identity, DataDir = dataDir, Phonebooks = phoneBooks, Name = name,
                Listen = listen, PhonebookCa = phoneBookCa,
            })
        {
        }

        /// <summary>
        /// The same as new Node(identity, dataDir, phoneBooks, name, listen, phoneBookCa), as a
        /// factory method.
        /// </summary>
        public static Node Create(string identity, string dataDir, IEnumerable<string> phoneBooks, string name,
            string listen = null, string phoneBookCa = null)
        {
            return new Node(identity, dataDir, phoneBooks, name, listen, phoneBookCa);
        }

        // The ABI's phonebook text: the URLs one per line. The library checks each URL; an entry
        // the text cannot carry as one URL (null, empty, with whitespace) is refused here.
        static string PhonebookText(string single, IEnumerable<string> many)
        {
            var sb = new StringBuilder(single ?? "");
            if (many == null) return sb.ToString();
            int i = 0;
            foreach (var url in many)
            {
                i++;
                if (string.IsNullOrEmpty(url))
                    throw new ArgumentException("phone book " + i + " is null or empty", "phoneBooks");
                foreach (var c in url)
                    if (char.IsWhiteSpace(c))
                        throw new ArgumentException("phone book " + i + " (\"" + url + "\") holds whitespace", "phoneBooks");
                if (sb.Length > 0) sb.Append('\n');
                sb.Append(url);
            }
            return sb.ToString();
        }

        /// <summary>The SafeHandle (for diagnostics; Dispose the Node, not this).</summary>
        public NodeHandle Handle { get { return handle; } }

        /// <summary>Whether Shutdown/Dispose ran.</summary>
        public bool IsShutDown { get { return handle.IsClosed; } }

        // Runs a native call with the handle pinned alive; a closed handle is InvalidHandle,
        // the same typed error the library gives for a stale one.
        FfxpStatus Call(Func<ulong, FfxpStatus> f, string name)
        {
            bool added = false;
            try
            {
                try
                {
                    handle.DangerousAddRef(ref added);
                }
                catch (ObjectDisposedException)
                {
                    throw new FfxpException(FfxpStatus.InvalidHandle, name, "the node was shut down");
                }
                return f(handle.Value);
            }
            finally
            {
                if (added) handle.DangerousRelease();
            }
        }

        void Run(Func<ulong, FfxpStatus> f, string name)
        {
            NativeMethods.Check(Call(f, name), name);
        }

        /// <summary>Shares the files of folder dir (blocks while it is hashed; call it off the game thread).</summary>
        public void Share(string dir)
        {
            var d = NativeMethods.Encode(dir);
            Run(h => NativeMethods.ffxp_node_share(h, d, NativeMethods.Len(d)), "ffxp_node_share");
        }

        /// <summary>Starts looking player name up; a Found or Failed event with the returned op follows.</summary>
        public ulong Lookup(string name)
        {
            var n = NativeMethods.Encode(name);
            ulong op = 0;
            Run(h => NativeMethods.ffxp_node_lookup(h, n, NativeMethods.Len(n), out op), "ffxp_node_lookup");
            return op;
        }

        /// <summary>
        /// Starts fetching the file with SHA-1 hash (40 hex digits) from player; Progress events,
        /// then Done or Failed, follow with the returned op. The file lands at DownloadPath(hash).
        /// </summary>
        public ulong Fetch(string hash, string player)
        {
            byte[] hb = NativeMethods.Encode(hash), pb = NativeMethods.Encode(player);
            ulong op = 0;
            Run(h => NativeMethods.ffxp_node_fetch(h, hb, NativeMethods.Len(hb), pb, NativeMethods.Len(pb), out op),
                "ffxp_node_fetch");
            return op;
        }

        /// <summary>Where a fetch of hash lands (DataDir/downloads/lowercase hash).</summary>
        public string DownloadPath(string hash)
        {
            if (hash == null) throw new ArgumentNullException("hash");
            return System.IO.Path.Combine(System.IO.Path.Combine(dataDir, "downloads"), hash.ToLowerInvariant());
        }

        /// <summary>Cancels operation op (a Failed "cancelled" event follows); UnknownOperation if it is not running.</summary>
        public void Cancel(ulong op)
        {
            Run(h => NativeMethods.ffxp_node_cancel(h, op), "ffxp_node_cancel");
        }

        /// <summary>Changes who may find us (re-registers at once). Friends keeps the last SetFriends list.</summary>
        public void SetVisibility(Visibility v)
        {
            Run(h => NativeMethods.ffxp_node_set_visibility(h, (uint)v), "ffxp_node_set_visibility");
        }

        /// <summary>
        /// Friends only, visible to exactly these keys (32 bytes each, at most 64, none twice; an
        /// empty list: nobody). Re-registers at once. The keys are each friend's <see cref="Key"/>.
        /// </summary>
        public void SetFriends(IEnumerable<byte[]> keys)
        {
            if (keys == null) throw new ArgumentNullException("keys");
            var list = new List<byte[]>(keys);
            var packed = new byte[list.Count * 32];
            for (int i = 0; i < list.Count; i++)
            {
                if (list[i] == null || list[i].Length != 32)
                    throw new ArgumentException("friend " + i + " is not a 32-byte key", "keys");
                Buffer.BlockCopy(list[i], 0, packed, i * 32, 32);
            }
            Run(h => NativeMethods.ffxp_node_set_friends(h, packed, (UIntPtr)list.Count), "ffxp_node_set_friends");
        }

        /// <summary>Our key (32 bytes): what a friend passes to SetFriends to let us find them.</summary>
        public byte[] Key
        {
            get
            {
                var key = new byte[32];
                Run(h => NativeMethods.ffxp_node_key(h, key), "ffxp_node_key");
                return key;
            }
        }

        /// <summary>
        /// Takes every queued event (never blocks), oldest first. Call once per frame; the list is
        /// empty when nothing happened.
        /// </summary>
        public List<NodeEvent> DrainEvents()
        {
            var list = new List<NodeEvent>();
            while (true)
            {
                var e = new FfxpEvent();
                var s = Call(h => NativeMethods.ffxp_node_poll_event(h, out e), "ffxp_node_poll_event");
                if (s == FfxpStatus.NoEvent) return list;
                NativeMethods.Check(s, "ffxp_node_poll_event");
                list.Add(new NodeEvent(ref e));
            }
        }

        /// <summary>
        /// Drains the events (DrainEvents) and raises the C# events for each, on this thread.
        /// Returns how many there were. An exception thrown by a handler propagates; the events
        /// after it in this tick are lost, so handlers should not throw.
        /// </summary>
        public int Tick()
        {
            var events = DrainEvents();
            foreach (var e in events)
            {
                var any = EventReceived;
                if (any != null) any(e);
                switch (e.Kind)
                {
                    case FfxpEventKind.Progress:
                        var p = Progress; if (p != null) p(e.Op, e.Done, e.Total);
                        break;
                    case FfxpEventKind.Found:
                        var f = Found; if (f != null) f(e.Op, e.Key);
                        break;
                    case FfxpEventKind.Done:
                        var d = Done; if (d != null) d(e.Op);
                        break;
                    case FfxpEventKind.Failed:
                        var x = Failed; if (x != null) x(e.Op, e.Message);
                        break;
                    case FfxpEventKind.Registered:
                    case FfxpEventKind.RegistrationRetrying:
                    case FfxpEventKind.RegistrationOff:
                        var r = Registration; if (r != null) r(e);
                        break;
                    default: // a kind newer than this binding: EventReceived only
                        break;
                }
            }
            return events.Count;
        }

        /// <summary>
        /// Stops the node: cancels its operations, unregisters, closes its socket (blocks, bounded).
        /// Safe to call twice; every later call on this Node throws FfxpException(InvalidHandle).
        /// Events queued before are lost: Tick() first if they matter.
        /// </summary>
        public void Shutdown()
        {
            handle.Dispose();
        }

        public void Dispose()
        {
            handle.Dispose();
        }
    }

    /// <summary>Checks FfxpEvent's and FfxpNodeOptions' managed layout against the header's (offsets in bytes).</summary>
    public static class Layout
    {
        /// <summary>The layout this binding was written for (x64: Linux, Windows).</summary>
        public static readonly int[] Expected = { 328, 0, 8, 16, 24, 32, 64, 68 };

        /// <summary>FfxpNodeOptions on x64: size, struct_size, phonebook_ca, phonebook_ca_len.</summary>
        public static readonly int[] ExpectedOptions = { 24, 0, 8, 16 };

        /// <summary>FfxpNodeOptions' marshalled size and field offsets (as ExpectedOptions).</summary>
        public static int[] ActualOptions()
        {
            var t = typeof(FfxpNodeOptions);
            return new[]
            {
                Marshal.SizeOf(t),
                (int)Marshal.OffsetOf(t, "StructSize"),
                (int)Marshal.OffsetOf(t, "PhonebookCa"),
                (int)Marshal.OffsetOf(t, "PhonebookCaLen"),
            };
        }

        /// <summary>Marshalled size and field offsets: size, kind, op, done, total, key, message_len, message.</summary>
        public static int[] Actual()
        {
            var t = typeof(FfxpEvent);
            return new[]
            {
                Marshal.SizeOf(t),
                (int)Marshal.OffsetOf(t, "Kind"),
                (int)Marshal.OffsetOf(t, "Op"),
                (int)Marshal.OffsetOf(t, "Done"),
                (int)Marshal.OffsetOf(t, "Total"),
                (int)Marshal.OffsetOf(t, "Key"),
                (int)Marshal.OffsetOf(t, "MessageLen"),
                (int)Marshal.OffsetOf(t, "Message"),
            };
        }
    }
}
