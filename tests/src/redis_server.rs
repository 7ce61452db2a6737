//! A throwaway `redis-server` on a free loopback port (no persistence), killed on drop: for
//! the tests and benchmarks of several phone-book instances.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running redis-server.
#[derive(Debug)]
pub struct Redis {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Redis {
    /// Starts one, or returns `None` (after saying why) when `redis-server` is missing;
    /// `PB_REQUIRE_REDIS` makes that a failure.
    pub fn start() -> Option<Redis> {
        let found = Command::new(server_bin())
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok();
        if !found {
            assert!(
                std::env::var_os("PB_REQUIRE_REDIS").is_none(),
                "PB_REQUIRE_REDIS is set but redis-server is not installed"
            );
            eprintln!("skipping: redis-server is not installed (apt-get install redis-server)");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir =
            std::env::temp_dir().join(format!("pb-tests-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = spawn(port, &dir);
        Some(Redis { child, port, dir })
    }

    /// Kills it (SIGKILL) and starts it again on the same port, empty.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(self.port, &self.dir);
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Its process id (for CPU figures).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The server binary: `PB_REDIS_SERVER` (e.g. a valkey-server), else `redis-server`.
pub fn server_bin() -> String {
    std::env::var("PB_REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned())
}

/// Starts redis-server on `port` and waits until it listens.
fn spawn(port: u16, dir: &std::path::Path) -> Child {
    let child = Command::new(server_bin())
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts");
    let until = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < until, "redis-server did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}
