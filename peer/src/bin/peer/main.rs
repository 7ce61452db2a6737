//! `peer`: try the peer library by hand and drive it from tests and benchmarks.
//!
//! Run with: `cargo run --release -p peer --bin peer -- --help`
#![forbid(unsafe_code)]

mod netcheck;

/// Prints a line to stderr, ignoring a closed stderr (`peer fetch ... 2>&1 | head -1`).
macro_rules! note {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

/// Prints a line to stdout; a closed pipe (`peer fetch ... | head -1`) ends the program quietly
/// (exit status 0) instead of panicking.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout(), $($t)*).is_err() {
            std::process::exit(0);
        }
    }};
}

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lexopt::prelude::*;
use peer::net::portmap::{PortMapConfig, PortMapper, Status};
use peer::net::reach::{Reach, RelayListener};
use peer::net::traversal::{Discovery, MappingBehaviour, Traversal, TraversalConfig};
use peer::phonebook::{PhoneBookConfig, requester_name};
use peer::storage::folder::{DEFAULT_MAX_OPEN_FILES, FolderStoreConfig};
use peer::transfer::download::DownloadConfig;
use peer::{
    Endpoint, EndpointConfig, FileHash, FolderStore, Identity, PeerId, PhoneBook, PinStore,
    PlayerName, Pool, PoolConfig, ServeConfig, Server, Source, Visibility, download,
};

const HELP: &str = "\
peer: move mod files directly between players

USAGE:
  peer id                                   print this identity's public key (made on first use)
  peer serve DIR [options]                  serve every file under DIR (prints their SHA-1)
  peer fetch HASH --out PATH [options]      fetch a file by SHA-1 from peers and/or players
  peer lookup NAME --phonebook URL          look a player up in the phone book
  peer netcheck --phonebook URL             what your network lets through, in plain words

`serve` registers NAME with the chosen visibility and serves only the keys it allows
(friends: the listed keys and our own; others are refused at their first request).
`serve` with --phonebook publishes the addresses other players can reach it at (LAN,
public, a port mapped on the router, IPv6), signed, and keeps its router's mapping open;
`fetch --player` connects through NATs: the phone book tells the player, both sides send
at once, and the first path that opens wins (`path:` lines say which).
`lookup`, `fetch --player` and `netcheck` register hidden (visible to no other key) under a name
derived from our secret key (nobody else can take it first), only to get a lookup token,
and unregister when done or on Ctrl-C (fetch: after the download).

OPTIONS:
  --identity PATH       key file (env PEER_IDENTITY, default ./peer-identity.key)
  --pins PATH           pinned keys file (env PEER_PINS, default ./peer-pins.txt)
  --index PATH          hash index of the served folder, so a restart hashes only changed files
                        (serve; env PEER_INDEX, default peer-index.bin beside the identity; none: off)
  --max-open-files N    files held open at once for serving (serve, default 64)
  --listen ADDR         UDP address (env PEER_LISTEN, default [::]:0: IPv6 and IPv4)
  --connect-timeout S   give up on a player after S seconds (fetch, default 5)
  --no-portmap          do not ask the router to forward our ports (UPnP, NAT-PMP, PCP: the
                        QUIC UDP port, and the --relay-listen TCP port)
  --phonebook URL       phone book https://HOST[:PORT] (http:// on a LAN); repeat for redundancy
                        (env PEER_PHONEBOOK, comma-separated)
  --phonebook-ca PATH   extra PEM CA trusted for https:// phone books, beside the bundled web
                        roots (a private CA; env PEER_PHONEBOOK_CA)
  --name NAME           our player name 'Forename Surname@World' (serve; env PEER_NAME)
  --visibility V        who may look us up and download: friends | public (serve; default
                        friends: only the --friend keys; public lets anyone registered find us)
  --friend KEY          a friend's public key (repeatable; with --visibility friends)
  --relay-listen ADDR   relay for our friends (the --friend keys) on this TCP address (serve;
                        needs a phone book; friends use it with --relay-via our name)
  --relay-public ADDR   the address friends reach our relay at (serve; default: the TCP port
                        mapped on the router by UPnP, NAT-PMP or PCP, else our public IP with
                        the --relay-listen port: then forward that TCP port by hand)
  --relay-via NAME      a friend whose peer relay we use when no direct path opens (serve,
                        fetch; repeatable, at most 4; serve waits there for incoming sessions)
  --upload-rate B       upload limit in bytes per second (serve)
  --max-uploads N       concurrent requests served (serve, default 16)
  --compress            always try LZ4 (default: only with --upload-rate) (serve)
  --peer ADDR,KEY       a source by address and key (fetch; repeatable)
  --player NAME         a source by player name, looked up in the phone book (fetch; repeatable)
  --out PATH            where to write the fetched file (fetch)
  --quiet               no progress lines
  -h, --help            this text
";

#[derive(Debug, Default)]
struct Args {
    command: String,
    positional: Option<String>,
    identity: Option<PathBuf>,
    pins: Option<PathBuf>,
    index: Option<PathBuf>,
    max_open_files: Option<usize>,
    listen: Option<SocketAddr>,
    phonebooks: Vec<String>,
    phonebook_ca: Option<PathBuf>,
    name: Option<String>,
    visibility: Option<String>,
    friends: Vec<PeerId>,
    upload_rate: Option<u64>,
    max_uploads: Option<usize>,
    compress: bool,
    peers: Vec<(SocketAddr, PeerId)>,
    players: Vec<String>,
    out: Option<PathBuf>,
    quiet: bool,
    connect_timeout: Option<Duration>,
    no_portmap: bool,
    relay_listen: Option<SocketAddr>,
    relay_public: Option<SocketAddr>,
    relay_via: Vec<PlayerName>,
}

fn parse_args() -> Result<Args, lexopt::Error> {
    let mut a = Args::default();
    let mut p = lexopt::Parser::from_env();
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => {
                print!("{HELP}");
                std::process::exit(0);
            }
            Long("identity") => a.identity = Some(p.value()?.into()),
            Long("pins") => a.pins = Some(p.value()?.into()),
            Long("index") => a.index = Some(p.value()?.into()),
            Long("max-open-files") => {
                let n: usize = p.value()?.parse()?;
                if !(1..=65_536).contains(&n) {
                    return Err("--max-open-files is between 1 and 65536".into());
                }
                a.max_open_files = Some(n);
            }
            Long("listen") => a.listen = Some(p.value()?.parse()?),
            Long("phonebook") => a.phonebooks.push(p.value()?.string()?),
            Long("phonebook-ca") => a.phonebook_ca = Some(p.value()?.into()),
            Long("name") => a.name = Some(p.value()?.string()?),
            Long("visibility") => a.visibility = Some(p.value()?.string()?),
            Long("friend") => a.friends.push(p.value()?.parse()?),
            Long("upload-rate") => a.upload_rate = Some(p.value()?.parse()?),
            Long("max-uploads") => a.max_uploads = Some(p.value()?.parse()?),
            Long("compress") => a.compress = true,
            Long("peer") => {
                let v = p.value()?.string()?;
                let (addr, key) = v.split_once(',').ok_or("--peer takes ADDR,KEY")?;
                a.peers.push((
                    addr.parse().map_err(|_| "bad --peer address")?,
                    key.parse().map_err(|_| "bad --peer key")?,
                ));
            }
            Long("player") => a.players.push(p.value()?.string()?),
            Long("out") => a.out = Some(p.value()?.into()),
            Long("quiet") => a.quiet = true,
            Long("no-portmap") => a.no_portmap = true,
            Long("relay-listen") => a.relay_listen = Some(p.value()?.parse()?),
            Long("relay-public") => a.relay_public = Some(p.value()?.parse()?),
            Long("relay-via") => {
                if a.relay_via.len() == peer::net::traversal::peer_relays::MAX_RELAY_VIA {
                    return Err("--relay-via is given at most 4 times".into());
                }
                let name = p.value()?.string()?;
                a.relay_via.push(
                    PlayerName::parse(&name).map_err(|e| format!("--relay-via {name:?}: {e}"))?,
                );
            }
            Long("connect-timeout") => {
                let secs: f64 = p.value()?.parse()?;
                if !(0.1..=600.0).contains(&secs) {
                    return Err("--connect-timeout is between 0.1 and 600 seconds".into());
                }
                a.connect_timeout = Some(Duration::from_secs_f64(secs));
            }
            Value(v) if a.command.is_empty() => a.command = v.string()?,
            Value(v) if a.positional.is_none() => a.positional = Some(v.string()?),
            _ => return Err(arg.unexpected()),
        }
    }
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    a.identity = a
        .identity
        .or_else(|| env("PEER_IDENTITY").map(Into::into))
        .or(Some("peer-identity.key".into()));
    a.pins = a
        .pins
        .or_else(|| env("PEER_PINS").map(Into::into))
        .or(Some("peer-pins.txt".into()));
    a.index = a
        .index
        .or_else(|| env("PEER_INDEX").map(Into::into))
        .or_else(|| {
            let identity = a.identity.as_deref().expect("defaulted");
            Some(identity.with_file_name("peer-index.bin"))
        });
    if a.listen.is_none() {
        a.listen = env("PEER_LISTEN")
            .map(|v| v.parse::<SocketAddr>())
            .transpose()
            .map_err(|_| "bad PEER_LISTEN")?;
    }
    if a.phonebooks.is_empty() {
        a.phonebooks = env("PEER_PHONEBOOK")
            .map(|v| v.split(',').map(str::to_owned).collect())
            .unwrap_or_default();
    }
    a.name = a.name.or_else(|| env("PEER_NAME"));
    a.phonebook_ca = a
        .phonebook_ca
        .or_else(|| env("PEER_PHONEBOOK_CA").map(Into::into));
    Ok(a)
}

type Failure = Box<dyn std::error::Error>;

/// Waits for SIGINT or SIGTERM and says which arrived.
async fn stop_signal(signals: &mut async_signal::Signals) {
    use smol::stream::StreamExt as _;
    let what = match signals.next().await {
        Some(Ok(async_signal::Signal::Int)) => "interrupted (Ctrl-C)",
        Some(Ok(async_signal::Signal::Term)) => "terminated (SIGTERM)",
        _ => "stopped",
    };
    note!("{what}, shutting down");
}

fn watch_signals() -> Result<async_signal::Signals, Failure> {
    // Windows has Ctrl-C (and Ctrl-Break) only.
    #[cfg(windows)]
    let signals = [async_signal::Signal::Int];
    #[cfg(not(windows))]
    let signals = [async_signal::Signal::Term, async_signal::Signal::Int];
    Ok(async_signal::Signals::new(signals)?)
}

/// A phone-book client for lookups only, under [`requester_name`] (not our player name, which a
/// running `serve` may hold).
fn lookup_book(args: &Args, identity: &Identity) -> Result<Arc<PhoneBook>, Failure> {
    if args.phonebooks.is_empty() {
        return Err("looking players up needs --phonebook URL".into());
    }
    let config = PhoneBookConfig {
        urls: args.phonebooks.clone(),
        ca_file: args.phonebook_ca.clone(),
        ..Default::default()
    };
    Ok(Arc::new(PhoneBook::new(
        identity,
        requester_name(identity),
        config,
    )?))
}

/// Registers `book` hidden, runs `work` (lookups), then unregisters, also when a signal cuts the
/// work short: looking players up publishes nobody and leaves no live name behind.
async fn hidden_lookups<T>(
    book: &PhoneBook,
    port: u16,
    signals: &mut async_signal::Signals,
    work: impl std::future::Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    let registered = std::cell::Cell::new(false);
    let task = async {
        book.register_hidden(port).await?;
        registered.set(true);
        work.await.map(Some)
    };
    let result = smol::future::or(task, async {
        stop_signal(signals).await;
        Ok(None)
    })
    .await;
    // Interrupted: the registration may have reached a phone book before its answer reached us.
    let interrupted = matches!(result, Ok(None));
    if registered.get() || interrupted {
        // A second Ctrl-C does not wait for an unreachable phone book's retries.
        let unregister = async { book.unregister().await.map_err(|e| e.to_string()) };
        let again = async {
            use smol::stream::StreamExt as _;
            let _ = signals.next().await;
            Err("interrupted again: not waiting (the hidden record expires with its TTL)".into())
        };
        if let Err(e) = smol::future::or(unregister, again).await
            && (registered.get() || e.starts_with("interrupted"))
        {
            note!("peer: unregistering the lookup name failed: {e}");
        }
    }
    result?.ok_or_else(|| "interrupted".into())
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            note!("peer: {e}\n\n{HELP}");
            return ExitCode::from(2);
        }
    };
    match smol::block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            note!("peer: {e}");
            ExitCode::FAILURE
        }
    }
}

fn endpoint(args: &Args, identity: Arc<Identity>) -> Result<Arc<Endpoint>, Failure> {
    let mut config = EndpointConfig::default();
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(t) = args.connect_timeout {
        config.connect_timeout = t;
    }
    Ok(Arc::new(Endpoint::bind(identity, &config)?))
}

fn phonebook(args: &Args, identity: &Identity) -> Result<Option<Arc<PhoneBook>>, Failure> {
    if args.phonebooks.is_empty() {
        return Ok(None);
    }
    let name = args
        .name
        .as_deref()
        .ok_or("--phonebook needs --name (our player name)")?;
    let config = PhoneBookConfig {
        urls: args.phonebooks.clone(),
        ca_file: args.phonebook_ca.clone(),
        ..Default::default()
    };
    Ok(Some(Arc::new(PhoneBook::new(
        identity,
        PlayerName::parse(name)?,
        config,
    )?)))
}

fn visibility(args: &Args) -> Result<Visibility, Failure> {
    Ok(match args.visibility.as_deref().unwrap_or("friends") {
        "public" => Visibility::Public,
        "friends" => Visibility::Friends,
        _ => return Err("--visibility is public or friends".into()),
    })
}

async fn run(args: Args) -> Result<(), Failure> {
    let identity = Arc::new(Identity::load_or_create(
        args.identity.as_deref().expect("defaulted"),
    )?);
    match args.command.as_str() {
        "id" => {
            out!("{}", identity.id());
            Ok(())
        }
        "serve" => serve(&args, identity).await,
        "fetch" => fetch(&args, identity).await,
        "lookup" => lookup(&args, identity).await,
        "netcheck" => netcheck(&args, identity).await,
        "" => Err("a command is needed: id, serve, fetch, lookup or netcheck (see --help)".into()),
        other => Err(format!("unknown command {other:?} (see --help)").into()),
    }
}

async fn serve(args: &Args, identity: Arc<Identity>) -> Result<(), Failure> {
    let dir = args.positional.as_deref().ok_or("serve needs a folder")?;
    let started = Instant::now();
    let config = FolderStoreConfig {
        max_open_files: args.max_open_files.unwrap_or(DEFAULT_MAX_OPEN_FILES),
        index: args.index.clone().filter(|p| p.as_os_str() != "none"),
    };
    let (store, stats) = FolderStore::open(dir.as_ref(), &config)?;
    let store = Arc::new(store);
    for (hash, size, path) in store.list() {
        out!("{hash} {size} {}", path.display());
    }
    note!(
        "indexed {} files in {:.1} s ({} hashed, {} unchanged since the last index{}{})",
        stats.files,
        started.elapsed().as_secs_f64(),
        stats.hashed,
        stats.reused,
        if stats.skipped > 0 {
            format!(
                ", {} unreadable or over the limit: not served",
                stats.skipped
            )
        } else {
            String::new()
        },
        if stats.index_refused {
            ", the index on disk was damaged or another folder's"
        } else {
            ""
        }
    );
    let endpoint = endpoint(args, identity.clone())?;
    let config = ServeConfig {
        upload_rate: args.upload_rate,
        max_concurrent_uploads: args
            .max_uploads
            .unwrap_or(ServeConfig::default().max_concurrent_uploads),
        compress: if args.compress {
            peer::transfer::serve::Compression::Always
        } else {
            peer::transfer::serve::Compression::WhenRateLimited
        },
        ..Default::default()
    };
    let visibility = visibility(args)?;
    let policy = peer::transfer::serve::visibility_policy(identity.id(), visibility, &args.friends);
    // Watched before we say where we listen: a signal sent from then on stops us cleanly.
    let mut signals = watch_signals()?;
    let server = Server::spawn(endpoint.clone(), store, config, policy.clone());
    let port = endpoint.local_addr()?.port();
    out!("listening on port {port} key {}", identity.id());
    let book = phonebook(args, &identity)?;
    let traversal = Traversal::start(endpoint.clone(), book.clone(), traversal_config(args))
        .ok_or("the endpoint's control queue is taken")?;
    // A friend's peer relay tells us of a session only from its friends: we take only keys
    // we serve, so it learns nothing of us from anyone else.
    traversal.relays().set_policy(policy.clone());
    let relay = match args.relay_listen {
        Some(listen) => Some(peer_relay(
            args,
            &identity,
            &endpoint,
            book.as_deref(),
            listen,
        )?),
        None => None,
    };
    let mut _tasks = Vec::new();
    let mut reach = None;
    if let Some(b) = &book {
        // A relay address given outright goes into the first registration already.
        if relay.is_some() {
            b.set_relay_addr(args.relay_public);
        }
        b.register(port, visibility, &args.friends).await?;
        note!("registered as {}", b.name().as_str());
        _tasks.push(b.keep_registered(port, visibility, args.friends.clone()));
        let relay_listener = relay.as_ref().map(|r| RelayListener {
            local: r.local_addr(),
            public: args.relay_public,
        });
        let (r, reached) =
            Reach::start_with_relay(&traversal, !args.no_portmap, relay_listener).await;
        reach = Some(r);
        let list = reached.candidates;
        note!(
            "{}",
            describe_nat(&reached.discovery, traversal.udp_works())
        );
        match (reached.mapper_status, reached.mapping) {
            (_, Some(m)) => note!("port mapping: {} maps {} to us", m.protocol, m.external),
            (Some(status), None) => note!("port mapping: {}", describe_unmapped(status)),
            (None, None) => note!("port mapping: off (--no-portmap)"),
        }
        if relay.is_some() {
            match (reached.relay_mapper_status, reached.relay_mapping) {
                (_, Some(m)) => note!("peer relay: {} maps TCP {} to us", m.protocol, m.external),
                (Some(status), None) => {
                    note!(
                        "peer relay: TCP port mapping: {}",
                        describe_unmapped(status)
                    )
                }
                (None, None) => {}
            }
            // Chosen by Reach: --relay-public, else the mapped TCP port, else our public IP
            // with the relay's port; kept current as the mapping changes.
            match reached.relay_addr {
                Some(a) => note!(
                    "peer relay: published at {a} for {} friends",
                    args.friends.len()
                ),
                None => note!(
                    "peer relay: no public address known, not published (give --relay-public)"
                ),
            }
        }
        if list.is_empty() {
            note!("candidates: none (players will use the address the phone book reports)");
        } else {
            let shown: Vec<String> = list.iter().map(ToString::to_string).collect();
            note!("candidates: {}", shown.join(", "));
        }
    }
    let stats = async {
        loop {
            smol::Timer::after(Duration::from_secs(60)).await;
            let s = server.stats();
            log::info!(
                "serving: {} connections, {} uploads, {} bytes sent",
                s.connections.load(std::sync::atomic::Ordering::Relaxed),
                s.uploads.load(std::sync::atomic::Ordering::Relaxed),
                s.bytes_sent.load(std::sync::atomic::Ordering::Relaxed)
            );
        }
    };
    let stop = stop_signal(&mut signals);
    smol::future::or(stats, stop).await;
    drop(_tasks);
    // The router forgets our port now rather than when the lease ends.
    if let Some(r) = reach {
        r.close().await;
    }
    if let Some(b) = &book {
        match b.unregister().await {
            Ok(()) => note!("unregistered"),
            Err(e) => note!("unregister failed: {e}"),
        }
    }
    if let Some(relay) = &relay {
        let s = relay.stats();
        note!(
            "peer relay: carried {} sessions, {} bytes in",
            s.sessions_total.load(std::sync::atomic::Ordering::Relaxed),
            s.bytes_in.load(std::sync::atomic::Ordering::Relaxed)
        );
    }
    endpoint.close();
    Ok(())
}

fn traversal_config(args: &Args) -> TraversalConfig {
    TraversalConfig {
        relay_via: args.relay_via.clone(),
        ..TraversalConfig::default()
    }
}

/// Starts our peer relay (`--relay-listen`) for the `--friend` keys.
fn peer_relay(
    args: &Args,
    identity: &Identity,
    endpoint: &Endpoint,
    book: Option<&PhoneBook>,
    listen: SocketAddr,
) -> Result<peer::net::relay::PeerRelay, Failure> {
    if book.is_none() {
        return Err(
            "--relay-listen needs --phonebook: friends find the relay in our record".into(),
        );
    }
    if args.friends.is_empty() {
        return Err("--relay-listen relays for friends only: give --friend KEY".into());
    }
    if let Ok(quic) = endpoint.local_addr()
        && quic.port() == listen.port()
    {
        return Err("--relay-listen needs a port other than the QUIC one (--listen)".into());
    }
    let friends: std::collections::HashSet<PeerId> = args.friends.iter().copied().collect();
    let relay = peer::net::relay::PeerRelay::start(
        identity,
        Arc::new(move |k: &PeerId| friends.contains(k)),
        peer::net::relay::PeerRelayConfig {
            listen,
            ..Default::default()
        },
        endpoint.spawner(),
    )
    .map_err(|e| format!("--relay-listen {listen}: {e}"))?;
    note!("peer relay: listening on {}", relay.local_addr());
    Ok(relay)
}

async fn fetch(args: &Args, identity: Arc<Identity>) -> Result<(), Failure> {
    let hash: FileHash = args
        .positional
        .as_deref()
        .ok_or("fetch needs a file hash")?
        .parse()?;
    let out = args.out.clone().ok_or("fetch needs --out PATH")?;
    let endpoint = endpoint(args, identity.clone())?;
    let mut signals = watch_signals()?;
    let pins = PinStore::open(args.pins.as_deref().expect("defaulted"))?;
    let pool = Arc::new(Pool::new(endpoint.clone(), pins, PoolConfig::default()));
    let sources: Vec<Source> = args
        .peers
        .iter()
        .map(|&(addr, key)| Source {
            name: None,
            addr,
            key,
            candidates: vec![],
        })
        .collect();
    let quiet = args.quiet;
    let report = if args.players.is_empty() {
        if sources.is_empty() {
            return Err("no sources: give --peer ADDR,KEY or --player NAME".into());
        }
        let traversal = Traversal::start(endpoint.clone(), None, TraversalConfig::default())
            .ok_or("the endpoint's control queue is taken")?;
        pool.set_traversal(traversal);
        let work = download_with_progress(&pool, hash, &sources, &out, quiet);
        smol::future::or(async { Some(work.await) }, async {
            stop_signal(&mut signals).await;
            None
        })
        .await
        .ok_or("interrupted (what arrived is kept in the .part file for a later fetch)")??
    } else {
        let names = args
            .players
            .iter()
            .map(|p| PlayerName::parse(p))
            .collect::<Result<Vec<_>, _>>()?;
        let book = lookup_book(args, &identity)?;
        let traversal =
            Traversal::start(endpoint.clone(), Some(book.clone()), traversal_config(args))
                .ok_or("the endpoint's control queue is taken")?;
        pool.set_traversal(traversal.clone());
        // A port mapped on our router lets players behind strict NATs answer us (it is offered
        // in punch requests); start-up waits at most 2 s when no router answers.
        let mapper = if args.no_portmap {
            None
        } else {
            let local = endpoint.local_addr()?;
            let m = PortMapper::start(local, PortMapConfig::default(), endpoint.spawner()).await;
            traversal.update_mapped(m.mapping().map(|m| m.external));
            Some(m)
        };
        let port = endpoint.local_addr()?.port();
        // The hidden registration lives until the download ends: the phone books take punch
        // requests only from registered players.
        let report = hidden_lookups(&book, port, &mut signals, async {
            let mut sources = sources.clone();
            for name in &names {
                match book.lookup(name).await {
                    Ok(f) => sources.push(Source {
                        name: Some(name.as_str().to_owned()),
                        addr: f.addr,
                        key: f.key,
                        candidates: f.record.candidates.clone(),
                    }),
                    Err(e) => note!("{}: {e}", name.as_str()),
                }
            }
            if sources.is_empty() {
                return Err("no sources: nobody was found".into());
            }
            let report = download_with_progress(&pool, hash, &sources, &out, quiet).await;
            print_paths(&pool, &sources);
            Ok(report?)
        })
        .await;
        if let Some(m) = mapper {
            m.close().await;
        }
        report?
    };
    let secs = report.elapsed.as_secs_f64();
    let fetched = report.bytes - report.resumed_bytes;
    out!(
        "fetched {hash}: {} bytes ({} resumed) in {secs:.3} s = {:.1} MB/s",
        report.bytes,
        report.resumed_bytes,
        fetched as f64 / secs / 1e6
    );
    for s in &report.sources {
        out!(
            "  source {}: used {} chunks {} bytes {} dropped {:?}",
            s.peer.short(),
            s.used,
            s.tally.chunks_ok,
            s.tally.bytes_ok,
            s.tally.dropped
        );
    }
    for m in pool.metrics() {
        out!(
            "  peer {}: rtt {:?} lost {}/{} packets",
            m.peer.short(),
            m.rtt,
            m.lost_packets,
            m.sent_packets
        );
    }
    out!("  cpu {:.2} s (this process)", own_cpu_seconds());
    Ok(())
}

type Report = Result<peer::DownloadReport, peer::DownloadError>;

/// Downloads with a progress line per second on stderr (unless `quiet`); on failure, prints
/// for each source what was tried.
async fn download_with_progress(
    pool: &Arc<Pool>,
    hash: FileHash,
    sources: &[Source],
    out: &std::path::Path,
    quiet: bool,
) -> Report {
    let (tx, rx) = smol::channel::bounded::<peer::Progress>(64);
    let printer = smol::spawn(async move {
        let mut last = Instant::now();
        while let Ok(p) = rx.recv().await {
            if !quiet && (last.elapsed() >= Duration::from_secs(1) || p.bytes_done == p.bytes_total)
            {
                last = Instant::now();
                note!(
                    "{} / {} bytes ({:.0}%)",
                    p.bytes_done,
                    p.bytes_total,
                    100.0 * p.bytes_done as f64 / p.bytes_total.max(1) as f64
                );
            }
        }
    });
    let report = download(
        pool,
        hash,
        sources,
        out,
        DownloadConfig::default(),
        Some(tx),
    )
    .await;
    printer.await;
    if report.is_err() {
        print_paths(pool, sources);
        for s in sources {
            if pool.path(&s.key).is_none() {
                let mut had: Vec<String> = s.candidates.iter().map(ToString::to_string).collect();
                had.push(format!("reported {}", s.addr));
                note!(
                    "{}: not connected; its addresses: {}",
                    s.name.as_deref().unwrap_or("peer"),
                    had.join(", ")
                );
            }
        }
    }
    report
}

/// One `path:` line per source connected: player, address, how it was known, time to connect.
fn print_paths(pool: &Pool, sources: &[Source]) {
    for s in sources {
        if let Some(p) = pool.path(&s.key) {
            note!(
                "path: {} {} {} {} ms",
                s.name.as_deref().unwrap_or("peer").replace(' ', "_"),
                p.addr,
                p.kind,
                p.elapsed.as_millis()
            );
        }
    }
}

/// A sentence about why there is no port mapping.
fn describe_unmapped(status: Status) -> String {
    match status {
        Status::Mapped(m) => format!("{} maps {}", m.protocol, m.external),
        Status::Unmapped(why) => format!("none ({why})"),
    }
}

/// A sentence about what discovery found.
fn describe_nat(d: &Discovery, udp_works: bool) -> String {
    match (d.reflexive, d.mapping) {
        (None, _) if !udp_works => {
            "UDP: no answer from the phone book over UDP (your network may block UDP)".into()
        }
        (None, _) => "UDP: the phone book did not answer discovery".into(),
        (Some(r), MappingBehaviour::EndpointIndependent) => {
            format!("NAT: public address {r}, the same toward every destination (cone NAT or none)")
        }
        (Some(r), MappingBehaviour::DestinationDependent) => format!(
            "NAT: public address {r} toward the phone book only: your router picks a new port \
             for each destination (symmetric NAT)"
        ),
        (Some(r), MappingBehaviour::Unknown) => {
            format!("NAT: public address {r} (the phone book has no second port to compare)")
        }
    }
}

async fn netcheck(args: &Args, identity: Arc<Identity>) -> Result<(), Failure> {
    let book = lookup_book(args, &identity)?;
    let endpoint = endpoint(args, identity.clone())?;
    let traversal = Traversal::start(
        endpoint.clone(),
        Some(book.clone()),
        TraversalConfig::default(),
    )
    .ok_or("the endpoint's control queue is taken")?;
    let mut signals = watch_signals()?;
    let port = endpoint.local_addr()?.port();
    let mapper = if args.no_portmap {
        None
    } else {
        Some(
            PortMapper::start(
                endpoint.local_addr()?,
                PortMapConfig::default(),
                endpoint.spawner(),
            )
            .await,
        )
    };
    let portmap = mapper.as_ref().map(|m| m.status());
    let report = hidden_lookups(&book, port, &mut signals, async {
        Ok(netcheck::run(&traversal, &book, portmap).await)
    })
    .await?;
    if let Some(m) = mapper {
        m.close().await;
    }
    for line in report.lines() {
        out!("{line}");
    }
    Ok(())
}

async fn lookup(args: &Args, identity: Arc<Identity>) -> Result<(), Failure> {
    let name = PlayerName::parse(
        args.positional
            .as_deref()
            .ok_or("lookup needs a player name")?,
    )?;
    let book = lookup_book(args, &identity)?;
    let endpoint = endpoint(args, identity.clone())?;
    let mut signals = watch_signals()?;
    let port = endpoint.local_addr()?.port();
    let found = hidden_lookups(&book, port, &mut signals, async {
        Ok(book.lookup(&name).await?)
    })
    .await?;
    out!("{} {} {}", found.name.as_str(), found.addr, found.key);
    for c in &found.record.candidates {
        out!("  candidate {c}");
    }
    Ok(())
}

/// CPU seconds (user + system) this process has used, from /proc (0 where there is none).
fn own_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}
