//! A node's threads end with it: a plugin disabled and enabled again in the same process (the
//! game never unloads a native library) must not pile up threads. Alone in its test binary, so
//! no other test's nodes are counted.

use peer::{Node, NodeConfig};

/// Threads of this process whose name is the node's (`ffxiv-p2p-N`).
#[cfg(target_os = "linux")]
fn node_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("ffxiv-p2p-"))
        .count()
}

#[cfg(target_os = "linux")]
#[test]
fn nodes_started_and_dropped_again_and_again_leave_no_thread_behind() {
    let root = std::env::temp_dir().join(format!("pb-node-threads-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    for round in 0..5 {
        let mut c = NodeConfig::new(root.join("id.key"), root.join("data"));
        c.listen = "127.0.0.1:0".parse().unwrap();
        c.threads = 3;
        let node = Node::start(c).unwrap();
        // A thread names itself once it runs.
        let mut running = 0;
        for _ in 0..200 {
            running = node_threads();
            if running == 3 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(running, 3, "round {round}: the node's threads run");
        smol::block_on(node.shutdown());
        drop(node);
        assert_eq!(node_threads(), 0, "round {round}: none left after the drop");
    }
    let mut bad = NodeConfig::new(root.join("id.key"), root.join("data"));
    bad.threads = 0;
    assert!(Node::start(bad).is_err(), "0 threads is refused");
    let _ = std::fs::remove_dir_all(&root);
}
