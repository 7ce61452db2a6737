//! Memory of a peer holding idle connections: a serving peer (its own process) is measured
//! before and after N other peers (here, N endpoints in this process) connect and stay idle.
//!
//! Run with: `cargo run --profile bench-fast -p peer --example bench_idle -- [--connections 50]`

#[path = "support/bench_util.rs"]
mod bench_util;

use std::sync::Arc;

use bench_util::*;
use peer::{Endpoint, EndpointConfig, Identity, MemoryStore, PeerId, ServeConfig, Server};

fn loopback() -> EndpointConfig {
    EndpointConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .map(|i| args[i + 1].clone())
    };
    if arg("--role").as_deref() == Some("server") {
        smol::block_on(smol::spawn(async {
            let ep = Arc::new(Endpoint::bind(Arc::new(Identity::generate()), &loopback()).unwrap());
            let config = ServeConfig {
                max_connections: 1000,
                ..Default::default()
            };
            let _s = Server::spawn(ep.clone(), Arc::new(MemoryStore::default()), config, None);
            println!(
                "READY {} {}",
                ep.local_addr().unwrap().port(),
                ep.identity().id()
            );
            smol::future::pending::<()>().await;
        }));
        return;
    }
    let n: usize = arg("--connections").map_or(50, |s| s.parse().unwrap());
    let (mut child, ready) = spawn_role(None, &["--role", "server"]);
    let port: u16 = ready[0].parse().unwrap();
    let key: PeerId = ready[1].parse().unwrap();
    let before = rss_bytes(child.id());
    let conns = smol::block_on(smol::spawn(async move {
        let mut conns = Vec::new();
        for _ in 0..n {
            let ep = Arc::new(Endpoint::bind(Arc::new(Identity::generate()), &loopback()).unwrap());
            let c = ep
                .connect(([127, 0, 0, 1], port).into(), key)
                .await
                .unwrap();
            // One request each, so the server has run its per-connection task and stream code.
            let _ = c.fetch_manifest(peer::FileHash::Sha1([0; 20])).await;
            conns.push((ep, c));
        }
        conns
    }));
    // Let keep-alives flow for a while so that the figure is of idle, established connections.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let after = rss_bytes(child.id());
    let own = rss_bytes(std::process::id());
    println!(
        "serving peer RSS: {:.1} MiB before, {:.1} MiB with {n} idle connections ({:.1} KiB per connection); target: far under 50 MB",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        (after.saturating_sub(before)) as f64 / 1024.0 / n as f64
    );
    println!(
        "(this process, {n} client endpoints with one connection each: {:.1} MiB)",
        own as f64 / 1048576.0
    );
    drop(conns);
    let _ = child.kill();
    let _ = child.wait();
}
