//! The registry of open connections, swept once a second to close idle ones and ones that
//! take too long to send a request (slowloris) or to read an answer.

use async_io::Async;
use std::cell::Cell;
use std::net::{Shutdown, TcpStream};
use std::rc::Rc;

/// One open connection, as the sweeper sees it.
#[derive(Debug)]
pub struct ConnEntry {
    /// The socket, shared with the connection's task.
    pub stream: Rc<Async<TcpStream>>,
    /// When the last complete request was answered (monotonic ms).
    pub last_active_ms: Cell<u64>,
    /// When the request being received or answered began, if one is under way.
    pub busy_since_ms: Cell<Option<u64>>,
    /// While the TLS handshake is under way: when it must be done (monotonic ms).
    pub handshake_until_ms: Cell<Option<u64>>,
}

/// Open connections, at most `max` of them.
#[derive(Debug)]
pub struct Conns {
    entries: Vec<Option<Rc<ConnEntry>>>,
    free: Vec<usize>,
    open: usize,
    max: usize,
}

impl Conns {
    /// An empty registry for at most `max` connections.
    pub fn new(max: usize) -> Self {
        Conns {
            entries: Vec::new(),
            free: Vec::new(),
            open: 0,
            max,
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open
    }

    /// Registers a connection; `None` when full.
    pub fn insert(&mut self, entry: Rc<ConnEntry>) -> Option<usize> {
        if self.open >= self.max {
            return None;
        }
        self.open += 1;
        Some(match self.free.pop() {
            Some(i) => {
                self.entries[i] = Some(entry);
                i
            }
            None => {
                self.entries.push(Some(entry));
                self.entries.len() - 1
            }
        })
    }

    /// Forgets a connection.
    pub fn remove(&mut self, id: usize) {
        if let Some(slot) = self.entries.get_mut(id)
            && slot.take().is_some()
        {
            self.open -= 1;
            self.free.push(id);
        }
    }

    /// Shuts down connections past their deadlines; returns how many.
    pub fn sweep(&self, now_ms: u64, read_timeout_ms: u64, idle_timeout_ms: u64) -> usize {
        let mut closed = 0;
        for e in self.entries.iter().flatten() {
            let expired = match (e.handshake_until_ms.get(), e.busy_since_ms.get()) {
                (Some(until), _) => now_ms > until,
                (None, Some(t)) => now_ms.saturating_sub(t) > read_timeout_ms,
                (None, None) => now_ms.saturating_sub(e.last_active_ms.get()) > idle_timeout_ms,
            };
            if expired {
                // Wakes the task, whose next read sees end of file.
                let _ = e.stream.get_ref().shutdown(Shutdown::Both);
                closed += 1;
            }
        }
        closed
    }

    /// Shuts down every connection (server stop).
    pub fn close_all(&self) {
        for e in self.entries.iter().flatten() {
            let _ = e.stream.get_ref().shutdown(Shutdown::Both);
        }
    }
}
