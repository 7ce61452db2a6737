//! One timed fetch through `peer::Node`, the Rust side of `tests/bench/csharp-vs-rust.sh` (the
//! C# side, `tests/bench/csharp/Bench.cs`, does the same steps through the C ABI): a seeder
//! node shares a folder, a fetcher node fetches one file from it by player name, both
//! registered with the given phone book, in this one process. The key files live in KEYDIR
//! (kept across runs: the phone book binds a name to its key for a day), the data in WORKDIR. The time runs from the fetch call
//! to its `Done` event, polled every `POLL_MS` (1 ms) as a plugin's frame would; the line
//! `fetch_seconds=S bytes=N` reports it.
//!
//! Run with: `cargo run --release -p pb-tests --example node_fetch -- PHONEBOOK_URL KEYDIR WORKDIR SHARED_DIR HASH`

use std::path::Path;
use std::time::{Duration, Instant};

use peer::{Event, Node, NodeConfig, Registration};

/// How often events are polled (a frame of a very fast game).
const POLL_MS: u64 = 1;
/// How long any one step may take.
const WAIT: Duration = Duration::from_secs(120);

fn config(key: &Path, root: &Path, name: &str, url: &str) -> NodeConfig {
    let mut c = NodeConfig::new(key, root);
    c.phonebooks = vec![url.to_owned()];
    c.name = Some(name.to_owned());
    c.listen = "127.0.0.1:0".parse().expect("an address");
    c
}

/// Polls until `want` matches an event, or fails after [`WAIT`].
fn wait_for(node: &Node, want: impl Fn(&Event) -> bool) -> Result<Event, String> {
    let start = Instant::now();
    while start.elapsed() < WAIT {
        while let Some(e) = node.poll_event() {
            if want(&e) {
                return Ok(e);
            }
        }
        std::thread::sleep(Duration::from_millis(POLL_MS));
    }
    Err("timed out".into())
}

fn main() -> Result<(), peer::node::NodeError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, keys, work, shared, hash] = args.as_slice() else {
        return Err("usage: node_fetch PHONEBOOK_URL KEYDIR WORKDIR SHARED_DIR HASH".into());
    };
    let (keys, work) = (Path::new(keys), Path::new(work));
    let hash: peer::FileHash = hash.parse()?;
    let seeder = "Rust Seeder@Lich";
    let mut ca = config(&keys.join("a.key"), &work.join("a"), seeder, url);
    ca.share = Some(shared.into());
    let a = Node::start(ca)?;
    let b = Node::start(config(
        &keys.join("b.key"),
        &work.join("b"),
        "Rust Fetcher@Lich",
        url,
    ))?;
    let registered = |e: &Event| matches!(e, Event::Registration(Registration::Registered { .. }));
    wait_for(&a, registered)?;
    wait_for(&b, registered)?;
    // A node starts friends-only with no friends: the seeder lists the fetcher, as the C#
    // side of tests/bench/csharp-vs-rust.sh does.
    a.set_visibility(peer::Visibility::Friends, vec![b.id()]);
    wait_for(&a, registered)?;

    let start = Instant::now();
    let op = b.fetch(hash, vec![seeder.into()], vec![]);
    let end = wait_for(
        &b,
        |e| matches!(e, Event::Done { op: o } | Event::Failed { op: o, .. } if *o == op),
    )?;
    let seconds = start.elapsed().as_secs_f64();
    if end != (Event::Done { op }) {
        return Err(format!("fetch failed: {end:?}").into());
    }
    let bytes = std::fs::metadata(b.download_path(hash))?.len();
    println!("fetch_seconds={seconds:.4} bytes={bytes}");
    smol::block_on(b.shutdown());
    smol::block_on(a.shutdown());
    Ok(())
}
