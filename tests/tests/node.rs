//! The `peer::Node` facade end to end on loopback with a real pi-server: two nodes register,
//! one shares a folder, the other looks it up and fetches a file with progress events; a
//! visibility change takes effect; shutdown then a new node in the same process works.

use std::time::{Duration, Instant};

use peer::storage::folder::{FolderStore, FolderStoreConfig};
use peer::{Event, Node, NodeConfig, Registration, Visibility};
use pi_server::config::Config;
use pi_server::server::TestServer;

mod common;

const WAIT: Duration = Duration::from_secs(20);

fn dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("pb-node-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config(root: &std::path::Path, name: &str, url: &str) -> NodeConfig {
    let mut c = NodeConfig::new(root.join("id.key"), root.join("data"));
    assert_eq!(c.visibility, Visibility::Friends, "the compliant default");
    c.visibility = Visibility::Public;
    c.phonebooks = vec![url.to_owned()];
    c.name = Some(name.to_owned());
    c.listen = "127.0.0.1:0".parse().unwrap();
    c
}

/// Polls events until `want` matches one (returning every event seen) or the wait runs out.
fn wait_for(node: &Node, want: impl Fn(&Event) -> bool) -> Vec<Event> {
    let start = Instant::now();
    let mut seen = Vec::new();
    while start.elapsed() < WAIT {
        while let Some(e) = node.poll_event() {
            let hit = want(&e);
            seen.push(e);
            if hit {
                return seen;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("event not seen; got {seen:?}");
}

fn registered(e: &Event) -> bool {
    matches!(e, Event::Registration(Registration::Registered { .. }))
}

#[test]
fn two_nodes_share_look_up_fetch_hide_and_restart() {
    let pb = TestServer::start(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        capacity: 64,
        ..Config::default()
    })
    .expect("pi-server starts");
    let url = format!("http://{}", pb.addr());
    let root = dir("pair");
    let shared = root.join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let body: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7) as u8).collect();
    std::fs::write(shared.join("mod.tex"), &body).unwrap();
    let (store, _) = FolderStore::open(&shared, &FolderStoreConfig::default()).unwrap();
    let hash = store.list()[0].0;
    drop(store);

    let mut ca = config(&root.join("a"), "Alice Seeder@Lich", &url);
    ca.share = Some(shared.clone());
    let a = Node::start(ca).unwrap();
    let b = Node::start(config(&root.join("b"), "Bob Fetcher@Lich", &url)).unwrap();
    wait_for(&a, registered);
    wait_for(&b, registered);

    let found = smol::block_on(b.lookup("Alice Seeder@Lich")).unwrap();
    assert_eq!(found.key, a.id());
    let op = b.fetch(hash, vec!["Alice Seeder@Lich".into()], vec![]);
    let seen = wait_for(
        &b,
        |e| matches!(e, Event::Done { op: o } | Event::Failed { op: o, .. } if *o == op),
    );
    assert_eq!(seen.last(), Some(&Event::Done { op }), "{seen:?}");
    assert!(
        seen.iter()
            .any(|e| matches!(e, Event::Progress { op: o, .. } if *o == op))
    );
    assert_eq!(std::fs::read(b.download_path(hash)).unwrap(), body);
    assert!(
        !b.cancel(op),
        "a finished operation is no longer cancellable"
    );

    // Friends only, with no friends: the phone book no longer hands Alice out.
    a.set_visibility(Visibility::Friends, vec![]);
    wait_for(&a, registered);
    assert!(smol::block_on(b.lookup("Alice Seeder@Lich")).is_err());

    // Shut down within the bound, then a node with the same identity and port starts again.
    let started = Instant::now();
    let port = a.local_addr().unwrap().port();
    smol::block_on(a.shutdown());
    drop(a);
    assert!(started.elapsed() < Duration::from_secs(8));
    let mut again = config(&root.join("a"), "Alice Seeder@Lich", &url);
    again.listen = ([127, 0, 0, 1], port).into();
    // The last connection tasks end on the executor just after: the port frees within moments.
    let a = loop {
        match Node::start(again.clone()) {
            Ok(a) => break a,
            Err(e) if started.elapsed() < WAIT => {
                eprintln!("not yet: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("port never released: {e}"),
        }
    };
    eprintln!("re-created after {:?}", started.elapsed());
    wait_for(&a, registered);
    smol::block_on(a.shutdown());
    smol::block_on(b.shutdown());
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_node_keeps_reachable_and_a_visibility_change_reaches_its_running_server() {
    let pb = common::relay_phone_book(|_| {});
    let url = format!("http://{}", pb.addr());
    let root = dir("reach");
    let shared = root.join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let one: Vec<u8> = (0..700_000u32).map(|i| (i * 13) as u8).collect();
    let two: Vec<u8> = (0..500_000u32).map(|i| (i * 17) as u8).collect();
    std::fs::write(shared.join("one.tex"), &one).unwrap();
    std::fs::write(shared.join("two.tex"), &two).unwrap();
    let (store, _) = FolderStore::open(&shared, &FolderStoreConfig::default()).unwrap();
    let hash_of = |len: u64| store.list().into_iter().find(|f| f.1 == len).unwrap().0;
    let (h1, h2) = (hash_of(one.len() as u64), hash_of(two.len() as u64));
    drop(store);

    let mut ca = config(&root.join("a"), "Reach Able@Lich", &url);
    ca.share = Some(shared.clone());
    let a = Node::start(ca).unwrap();
    let b = Node::start(config(&root.join("b"), "Reach Er@Lich", &url)).unwrap();
    wait_for(&a, registered);
    wait_for(&b, registered);

    // A source whose address answers nothing: only the phone book (a punch request forwarded
    // through A's keep-alive mapping, or its relay) can bring the two together, so this works
    // only if A keeps reachable.
    let nowhere = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let source = |key| peer::Source {
        name: Some("Reach Able@Lich".into()),
        addr: nowhere.local_addr().unwrap(),
        key,
        candidates: Vec::new(),
    };
    let op = b.fetch(h1, vec![], vec![source(a.id())]);
    let seen = wait_for(
        &b,
        |e| matches!(e, Event::Done { op: o } | Event::Failed { op: o, .. } if *o == op),
    );
    assert_eq!(seen.last(), Some(&Event::Done { op }), "{seen:?}");
    assert_eq!(std::fs::read(b.download_path(h1)).unwrap(), one);

    // Friends only, with no friends: the running server now refuses B, even at A's address.
    a.set_visibility(Visibility::Friends, vec![]);
    wait_for(&a, registered);
    let direct = peer::Source {
        name: None,
        addr: a.local_addr().unwrap(),
        key: a.id(),
        candidates: Vec::new(),
    };
    let op = b.fetch(h2, vec![], vec![direct]);
    let seen = wait_for(
        &b,
        |e| matches!(e, Event::Done { op: o } | Event::Failed { op: o, .. } if *o == op),
    );
    assert!(
        matches!(seen.last(), Some(Event::Failed { op: o, .. }) if *o == op),
        "a hidden node still served: {seen:?}"
    );
    assert!(!b.download_path(h2).exists());
    smol::block_on(a.shutdown());
    smol::block_on(b.shutdown());
    let _ = std::fs::remove_dir_all(&root);
}
