//! One client connection: read requests, answer them, keep the connection alive.
//!
//! Buffers: bytes are read into the server's shared input buffer and requests are answered
//! into its shared output buffer (one thread, no await while they are borrowed). Only a
//! connection with a partly received request or a partly sent answer keeps bytes of its own,
//! so 10,000 idle keep-alive connections cost little more than their sockets.

use super::Shared;
use super::conns::ConnEntry;
use super::link::{Link, is_would_block};
use crate::api::{Pending, Started};
use crate::http::{HeadError, parse_head};
use crate::metrics::Reject;
use phonebook_proto::ErrorCode;
use std::net::IpAddr;
use std::rc::Rc;

/// Bytes read per `read` call.
pub const READ_CHUNK: usize = 16 * 1024;

enum Step {
    /// Answered everything complete in the buffer; keep reading.
    Continue,
    /// Close after writing what is in the output buffer.
    Close,
    /// A signed request waits for its signature check; the requests after it wait for it.
    Verify(Pending),
}

/// Serves one connection until it closes.
pub async fn serve(shared: Rc<Shared>, entry: Rc<ConnEntry>, peer: IpAddr, mut link: Link) {
    let stream = entry.stream.clone();
    let mut pending: Vec<u8> = Vec::new(); // an incomplete request, or requests after a Verify
    let mut unsent: Vec<u8> = Vec::new(); // an answer the socket did not take at once (plain)
    let mut resume = false; // `pending` may hold complete requests: answer them before reading
    loop {
        if !resume && !link.has_buffered() {
            // The handshake's messages (TLS) go out before we wait for the client's.
            if link.has_unsent(&unsent) {
                if flush_all(&shared, &entry, &mut link, &mut unsent)
                    .await
                    .is_err()
                {
                    return;
                }
                if pending.is_empty() {
                    entry.busy_since_ms.set(None);
                }
            }
            if stream.readable().await.is_err() {
                return;
            }
        }
        let step = {
            let mut input = shared.input.borrow_mut();
            let n = if std::mem::take(&mut resume) {
                0
            } else {
                input.resize(READ_CHUNK, 0);
                let was_handshaking = link.handshaking();
                let r = link.read(stream.get_ref(), &mut input);
                if was_handshaking && !link.handshaking() {
                    entry.handshake_until_ms.set(None);
                    shared
                        .app
                        .borrow_mut()
                        .metrics
                        .tls
                        .handshake(true, link.resumed());
                    if link.is_acme_validation() {
                        // The validation server saw the challenge certificate: all it wanted.
                        link.close();
                        let _ = link.flush(stream.get_ref(), &mut unsent);
                        return;
                    }
                }
                match r {
                    Ok(0) => return,
                    Ok(n) => n,
                    Err(e) if is_would_block(&e) => continue,
                    Err(_) => {
                        if was_handshaking {
                            shared.app.borrow_mut().metrics.tls.handshake(false, false);
                        }
                        return;
                    }
                }
            };
            let now = shared.now();
            if entry.busy_since_ms.get().is_none() {
                entry.busy_since_ms.set(Some(now.mono_ms));
            }
            let data: &[u8] = if pending.is_empty() {
                &input[..n]
            } else {
                pending.extend_from_slice(&input[..n]);
                &pending
            };
            let mut out = shared.output.borrow_mut();
            out.clear();
            let (consumed, step) = answer_all(&shared, data, peer, now, &mut out);
            let rest = data[consumed..].to_vec();
            pending = rest;
            if pending.is_empty() {
                entry.busy_since_ms.set(None);
                entry.last_active_ms.set(now.mono_ms);
                if pending.capacity() > READ_CHUNK {
                    pending = Vec::new();
                }
            }
            if link.send(stream.get_ref(), &out, &mut unsent).is_err() {
                return;
            }
            step
        };
        let step = match step {
            Step::Verify(p) => {
                // No buffer is borrowed across this wait: other connections use them.
                let Some((p, verified)) = shared.verifier.check(p).await else {
                    return;
                };
                let keep = match shared.redis.clone() {
                    Some(redis) => {
                        // Its own buffer: the shared ones are not held across the wait.
                        let mut own = Vec::new();
                        let keep =
                            crate::store::commit::finish(&shared, &redis, &p, verified, &mut own)
                                .await;
                        if link.send(stream.get_ref(), &own, &mut unsent).is_err() {
                            return;
                        }
                        keep
                    }
                    None => {
                        let now = shared.now();
                        let mut out = shared.output.borrow_mut();
                        out.clear();
                        let keep = shared.app.borrow_mut().finish(&p, verified, now, &mut out);
                        if link.send(stream.get_ref(), &out, &mut unsent).is_err() {
                            return;
                        }
                        keep
                    }
                };
                if keep {
                    resume = !pending.is_empty();
                    Step::Continue
                } else {
                    Step::Close
                }
            }
            other => other,
        };
        if let Step::Close = step {
            link.close();
        }
        if link.has_unsent(&unsent) {
            if flush_all(&shared, &entry, &mut link, &mut unsent)
                .await
                .is_err()
            {
                return;
            }
            if pending.is_empty() {
                entry.busy_since_ms.set(None);
            }
        }
        if let Step::Close = step {
            let _ = stream.get_ref().shutdown(std::net::Shutdown::Write);
            return;
        }
    }
}

/// Writes everything waiting, waiting for the socket as needed; the sweeper's read deadline
/// covers a client that does not read. `Err` when the connection is gone.
async fn flush_all(
    shared: &Shared,
    entry: &ConnEntry,
    link: &mut Link,
    unsent: &mut Vec<u8>,
) -> Result<(), ()> {
    let stream = &entry.stream;
    while link.has_unsent(unsent) {
        match link.flush(stream.get_ref(), unsent) {
            Ok(()) => {}
            Err(e) if is_would_block(&e) => {
                entry.busy_since_ms.set(Some(
                    entry.busy_since_ms.get().unwrap_or(shared.now().mono_ms),
                ));
                if stream.writable().await.is_err() {
                    return Err(());
                }
            }
            Err(_) => return Err(()),
        }
    }
    Ok(())
}

/// Answers every complete request at the start of `data` (pipelining); returns the bytes
/// consumed.
fn answer_all(
    shared: &Shared,
    data: &[u8],
    peer: IpAddr,
    now: crate::api::Now,
    out: &mut Vec<u8>,
) -> (usize, Step) {
    let mut app = shared.app.borrow_mut();
    let max_head = app.config.max_header_bytes as usize;
    let max_body = app.config.max_body_bytes as usize;
    let mut at = 0;
    while at < data.len() {
        let buf = &data[at..];
        let head = match parse_head(buf, max_head) {
            Ok(h) => h,
            Err(HeadError::Partial) => return (at, Step::Continue),
            Err(e) => {
                let (code, reason) = match e {
                    HeadError::TooLarge => (ErrorCode::HeadersTooLarge, Reject::HeadersTooLarge),
                    HeadError::Chunked | HeadError::LengthRequired => {
                        (ErrorCode::LengthRequired, Reject::BadRequest)
                    }
                    HeadError::Version => (ErrorCode::VersionNotSupported, Reject::BadRequest),
                    _ => (ErrorCode::BadRequest, Reject::BadRequest),
                };
                app.reject(code, &e.to_string(), reason, out);
                return (data.len(), Step::Close);
            }
        };
        let body_len = head.content_length.unwrap_or(0);
        if body_len > max_body {
            app.reject(
                ErrorCode::BodyTooLarge,
                &format!("body larger than {max_body} bytes"),
                Reject::BodyTooLarge,
                out,
            );
            return (data.len(), Step::Close);
        }
        if buf.len() < head.len + body_len {
            // `Expect: 100-continue`: invite the body once, when the head has just arrived
            // (no body byte yet; this runs again only when more bytes come). Never to an
            // HTTP/1.0 client, which does not know interim answers (RFC 9110 section 10.1.1).
            if head.expect_continue && head.minor >= 1 && buf.len() == head.len {
                out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            }
            return (at, Step::Continue);
        }
        let body = &buf[head.len..head.len + body_len];
        at += head.len + body_len;
        match app.start(&head, body, peer, now, out) {
            Started::Done(true) => {}
            Started::Done(false) => return (data.len(), Step::Close),
            Started::Verify(p) => return (at, Step::Verify(p)),
        }
    }
    (at, Step::Continue)
}
