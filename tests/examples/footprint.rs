//! Memory of a plugin process: a `peer::Node` (what the C ABI runs, one node per plugin) idle,
//! then with N peers connected to it and idle. Run by `tests/bench/footprint.sh`.
//!
//! `footprint node DIR`: starts a node (no phone book, 127.0.0.1), prints `ready ADDR KEY`, then
//! `rss KIB` whenever a line arrives on stdin, until stdin ends.
//! `footprint peers N ADDR KEY`: N endpoints in this process, each with a QUIC connection to the
//! node, held open (idle) until stdin ends; prints `connected N`.

use std::io::BufRead;
use std::sync::Arc;

use peer::{Endpoint, EndpointConfig, Identity, Node, NodeConfig, PeerId};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("node") => {
            let dir = std::path::PathBuf::from(args.get(2).expect("footprint node DIR"));
            let mut c = NodeConfig::new(dir.join("id.key"), dir.join("data"));
            c.listen = "127.0.0.1:0".parse().unwrap();
            let node = Node::start(c).expect("node starts");
            println!("ready {} {}", node.local_addr().unwrap(), node.id());
            for _ in std::io::stdin().lock().lines() {
                println!("rss {}", rss_kib());
            }
            smol::block_on(node.shutdown());
        }
        Some("peers") => {
            let n: usize = args[2].parse().expect("N");
            let addr = args[3].parse().expect("ADDR");
            let key: PeerId = args[4].parse().expect("KEY");
            let mut held = Vec::new();
            smol::block_on(async {
                for _ in 0..n {
                    let config = EndpointConfig {
                        listen: "127.0.0.1:0".parse().unwrap(),
                        ..Default::default()
                    };
                    let e =
                        Arc::new(Endpoint::bind(Arc::new(Identity::generate()), &config).unwrap());
                    let c = e.connect(addr, key).await.expect("connected");
                    held.push((e, c));
                }
            });
            println!("connected {}", held.len());
            for _ in std::io::stdin().lock().lines() {}
        }
        _ => eprintln!("usage: footprint node DIR | footprint peers N ADDR KEY"),
    }
}
