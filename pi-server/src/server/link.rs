//! What a connection's bytes go through: nothing (plain HTTP) or a rustls server session.
//!
//! Both read into the server's shared input buffer and write from its shared output buffer
//! (see `conn.rs`); with TLS, rustls holds the ciphertext and plaintext that wait on the
//! socket or on the reader, instead of the connection's `unsent` buffer.

use rustls::ServerConnection;
use std::io::{self, Read, Write};
use std::net::TcpStream;

/// A connection's transport.
pub(super) enum Link {
    /// Plain HTTP: bytes go straight to the socket.
    Plain,
    /// HTTPS: a rustls session over the socket.
    Tls(Box<ServerConnection>),
}

impl Link {
    /// Whether the TLS handshake is still under way (never for plain HTTP).
    pub(super) fn handshaking(&self) -> bool {
        matches!(self, Link::Tls(t) if t.is_handshaking())
    }

    /// Whether the completed handshake resumed an earlier session.
    pub(super) fn resumed(&self) -> bool {
        matches!(self, Link::Tls(t) if t.handshake_kind() == Some(rustls::HandshakeKind::Resumed))
    }

    /// Whether the handshake chose ACME's validation protocol: answer nothing, close.
    pub(super) fn is_acme_validation(&self) -> bool {
        matches!(self, Link::Tls(t) if t.alpn_protocol() == Some(crate::tls::ALPN_ACME))
    }

    /// Whether decrypted bytes wait in the session (read again before waiting on the socket).
    pub(super) fn has_buffered(&mut self) -> bool {
        match self {
            Link::Plain => false,
            Link::Tls(t) => t
                .process_new_packets()
                .is_ok_and(|s| s.plaintext_bytes_to_read() > 0 || s.peer_has_closed()),
        }
    }

    /// Reads application bytes into `buf`: `Ok(0)` when the peer closed, `WouldBlock` when
    /// the socket has nothing more (after sending what the handshake wants sent, as far as
    /// the socket takes it; the rest is flushed by [`Link::flush`]).
    pub(super) fn read(&mut self, mut sock: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        let tls = match self {
            Link::Plain => return sock.read(buf),
            Link::Tls(t) => t,
        };
        loop {
            match tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The peer closed without close_notify: the same as end of file here.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if tls.read_tls(&mut sock)? == 0 {
                return Ok(0);
            }
            if let Err(e) = tls.process_new_packets() {
                // Send the alert that says why, then give up on the connection.
                let _ = tls.write_tls(&mut sock);
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            while tls.wants_write() {
                match tls.write_tls(&mut sock) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
        }
    }

    /// Queues `out` and writes what the socket takes now; the rest waits in `unsent` (plain)
    /// or in the session (TLS), after anything already waiting.
    pub(super) fn send(
        &mut self,
        mut sock: &TcpStream,
        out: &[u8],
        unsent: &mut Vec<u8>,
    ) -> io::Result<()> {
        match self {
            Link::Plain => {
                let mut written = 0;
                if unsent.is_empty() {
                    while written < out.len() {
                        match sock.write(&out[written..]) {
                            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                            Ok(k) => written += k,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) => return Err(e),
                        }
                    }
                }
                unsent.extend_from_slice(&out[written..]);
                Ok(())
            }
            Link::Tls(t) => {
                if !out.is_empty() {
                    // The session's buffer limit is off (set at accept): this takes all.
                    t.writer().write_all(out)?;
                }
                match self.flush(sock, unsent) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
                    r => r,
                }
            }
        }
    }

    /// Whether bytes wait to be written.
    pub(super) fn has_unsent(&self, unsent: &[u8]) -> bool {
        match self {
            Link::Plain => !unsent.is_empty(),
            Link::Tls(t) => t.wants_write(),
        }
    }

    /// Writes waiting bytes until the socket would block (`WouldBlock`) or none are left.
    pub(super) fn flush(&mut self, mut sock: &TcpStream, unsent: &mut Vec<u8>) -> io::Result<()> {
        match self {
            Link::Plain => {
                while !unsent.is_empty() {
                    match sock.write(unsent) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(k) => {
                            unsent.drain(..k);
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                *unsent = Vec::new();
                Ok(())
            }
            Link::Tls(t) => {
                while t.wants_write() {
                    match t.write_tls(&mut sock) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
        }
    }

    /// Starts a clean close: TLS sends close_notify (flushed by the caller).
    pub(super) fn close(&mut self) {
        if let Link::Tls(t) = self {
            t.send_close_notify();
        }
    }
}

/// `WouldBlock` or `Interrupted`: try again later.
pub(super) fn is_would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted
}
