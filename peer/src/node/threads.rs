//! The node's own executor and the threads that run it: every task of a node (QUIC drivers,
//! transfers, registration, traversal) runs here, and dropping the node stops and joins the
//! threads, so a plugin disabled and enabled again in the same process (the game never unloads
//! a native library) leaves no thread behind. Only process-wide helpers remain, started once:
//! async-io's reactor thread and, while a port-mapping request is in flight, a blocking-pool
//! thread that exits when idle.

use std::sync::Arc;
use std::thread::JoinHandle;

/// Most threads a node runs.
pub const MAX_THREADS: usize = 8;
/// How long a dropped node waits for its last tasks (connection closes, the QUIC driver) to
/// end before it stops its threads.
pub const DRAIN: std::time::Duration = std::time::Duration::from_secs(3);
/// How long stopped threads keep running tasks that are still pending (a connection still
/// closing holds the UDP socket) before they exit anyway; the drop does not wait for them.
pub const LINGER: std::time::Duration = std::time::Duration::from_secs(60);

/// An executor and its threads; dropping it stops and joins them.
pub(crate) struct Threads {
    pub(crate) ex: Arc<smol::Executor<'static>>,
    stop: Option<smol::channel::Sender<()>>,
    handles: Vec<JoinHandle<()>>,
}

impl Threads {
    /// Starts `n` threads (1 to [`MAX_THREADS`]) running a new executor.
    pub(crate) fn start(n: usize) -> std::io::Result<Self> {
        let ex = Arc::new(smol::Executor::new());
        let (stop, stopped) = smol::channel::bounded::<()>(1);
        let mut me = Threads {
            ex: ex.clone(),
            stop: Some(stop),
            handles: Vec::new(),
        };
        for i in 0..n.clamp(1, MAX_THREADS) {
            let (ex, stopped) = (ex.clone(), stopped.clone());
            // On failure `me` is dropped: the threads started so far stop and are joined.
            me.handles.push(
                std::thread::Builder::new()
                    .name(format!("ffxiv-p2p-{i}"))
                    .spawn(move || {
                        smol::block_on(ex.run(async {
                            let _ = stopped.recv().await;
                        }));
                        // Stopped: finish what is left, so that it releases its socket.
                        let until = std::time::Instant::now() + LINGER;
                        while !ex.is_empty() && std::time::Instant::now() < until {
                            smol::block_on(smol::future::or(ex.tick(), async {
                                smol::Timer::after(std::time::Duration::from_millis(100)).await;
                            }));
                        }
                    })?,
            );
        }
        Ok(me)
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        // The node's other parts are gone: their tasks end within moments (a task holds the
        // executor through the spawner it captured, so one left pending would keep it alive).
        let started = std::time::Instant::now();
        while !self.ex.is_empty() && started.elapsed() < DRAIN && !self.handles.is_empty() {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // Closing the channel ends every thread's `run`.
        drop(self.stop.take());
        if !self.ex.is_empty() {
            // They finish the rest (at most LINGER) and exit on their own: not waited for.
            log::debug!("node threads stop with tasks still pending");
            self.handles.clear();
            return;
        }
        let me = std::thread::current().id();
        for h in self.handles.drain(..) {
            // A node dropped from one of its own tasks cannot wait for its own thread.
            if h.thread().id() != me {
                let _ = h.join();
            }
        }
    }
}
