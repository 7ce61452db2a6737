//! Where the library runs its tasks: smol's global executor (the default), or an executor the
//! application owns and runs, for example on one thread with `block_on(ex.run(..))`.
//!
//! On one thread, quinn's drivers, the I/O reactor and the transfer tasks hand work to each
//! other without waking another thread; with the global executor every hand-off between the
//! caller's `block_on` thread, smol's executor thread and the reactor thread is a futex
//! wake-up and often a context switch (see the README's loopback figures).

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

/// Spawns the library's tasks.
#[derive(Clone, Default)]
pub enum Spawner {
    /// smol's global executor (`smol::spawn`).
    #[default]
    Global,
    /// An executor the application runs.
    Executor(Arc<smol::Executor<'static>>),
}

impl fmt::Debug for Spawner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Global => "Spawner::Global",
            Self::Executor(_) => "Spawner::Executor",
        })
    }
}

impl Spawner {
    /// Spawns `fut`; dropping the task cancels it.
    pub fn spawn<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> smol::Task<T> {
        match self {
            Self::Global => smol::spawn(fut),
            Self::Executor(ex) => ex.spawn(fut),
        }
    }

    /// The quinn runtime that spawns its drivers here.
    pub(crate) fn quinn_runtime(&self) -> Arc<dyn quinn::Runtime> {
        match self {
            Self::Global => Arc::new(quinn::SmolRuntime),
            Self::Executor(ex) => Arc::new(ExecutorRuntime(ex.clone())),
        }
    }
}

/// quinn's smol runtime, but spawning on a given executor.
struct ExecutorRuntime(Arc<smol::Executor<'static>>);

impl fmt::Debug for ExecutorRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ExecutorRuntime")
    }
}

impl quinn::Runtime for ExecutorRuntime {
    fn new_timer(&self, i: Instant) -> Pin<Box<dyn quinn::AsyncTimer>> {
        quinn::SmolRuntime.new_timer(i)
    }

    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) {
        self.0.spawn(future).detach();
    }

    fn wrap_udp_socket(
        &self,
        t: std::net::UdpSocket,
    ) -> io::Result<Arc<dyn quinn::AsyncUdpSocket>> {
        quinn::SmolRuntime.wrap_udp_socket(t)
    }
}
