//! Time to first byte, cold (phone-book lookup, QUIC handshake, manifest, first chunk) and on
//! a pooled connection, in round trips of the path. Needs a phone book and a serving player
//! (tests/bench/peer-netns.sh sets both up behind a delayed link).
//!
//! Run with: `bench_ttfb --phonebook URL --name 'Me Here@World' --player 'Seed One@World' --hash SHA1 --rtt-ms 40`

use std::sync::Arc;
use std::time::Instant;

use peer::download::DownloadConfig;
use peer::phonebook::PhoneBookConfig;
use peer::{
    Endpoint, EndpointConfig, FileHash, Identity, PhoneBook, PinStore, PlayerName, Pool,
    PoolConfig, Source, Visibility, download,
};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .map(|i| args[i + 1].clone())
            .unwrap_or_else(|| panic!("{name} needed"))
    };
    let url = arg("--phonebook");
    let me = PlayerName::parse(&arg("--name")).unwrap();
    let player = PlayerName::parse(&arg("--player")).unwrap();
    let hash: FileHash = arg("--hash").parse().unwrap();
    let rtt_ms: f64 = arg("--rtt-ms").parse().unwrap();
    let dir = std::env::temp_dir();
    smol::block_on(smol::spawn(async move {
        let identity = Arc::new(Identity::generate());
        let endpoint =
            Arc::new(Endpoint::bind(identity.clone(), &EndpointConfig::default()).unwrap());
        let book = PhoneBook::new(
            &identity,
            me,
            PhoneBookConfig {
                urls: vec![url],
                ..Default::default()
            },
        )
        .unwrap();
        book.register(
            endpoint.local_addr().unwrap().port(),
            Visibility::Public,
            &[],
        )
        .await
        .unwrap();
        let pool = Arc::new(Pool::new(
            endpoint,
            PinStore::in_memory(),
            PoolConfig::default(),
        ));
        let rt = |t: Instant| t.elapsed().as_secs_f64() * 1000.0 / rtt_ms;

        let t0 = Instant::now();
        let found = book.lookup(&player).await.unwrap();
        let lookup = rt(t0);
        let t1 = Instant::now();
        let source = Source {
            name: Some(player.as_str().to_owned()),
            addr: found.addr,
            key: found.key,
        };
        let dest = dir.join("peer-ttfb-1");
        let _ = std::fs::remove_file(&dest);
        download(
            &pool,
            hash,
            std::slice::from_ref(&source),
            &dest,
            DownloadConfig::default(),
            None,
        )
        .await
        .unwrap();
        let cold_fetch = rt(t1);
        let cold = rt(t0);

        let t2 = Instant::now();
        let dest2 = dir.join("peer-ttfb-2");
        let _ = std::fs::remove_file(&dest2);
        download(
            &pool,
            hash,
            &[source],
            &dest2,
            DownloadConfig::default(),
            None,
        )
        .await
        .unwrap();
        let pooled = rt(t2);
        println!("time to first byte in round trips (RTT {rtt_ms} ms, one-chunk file):");
        println!(
            "  cold:   {cold:.2} RTT = lookup {lookup:.2} + handshake, manifest and chunk {cold_fetch:.2}"
        );
        println!("  pooled: {pooled:.2} RTT (manifest + chunk on the kept connection)");
        let _ = std::fs::remove_file(&dest);
        let _ = std::fs::remove_file(&dest2);
    }));
}
