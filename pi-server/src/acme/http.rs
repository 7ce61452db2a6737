//! A small HTTPS/1.1 client for the ACME server: one request per connection
//! (`Connection: close`), `Content-Length`, chunked or until-close bodies, every size and wait
//! bounded. The server is verified against the bundled web roots (webpki-roots) plus
//! `acme-ca-root`.

use async_io::{Async, Timer};
use futures_lite::{AsyncReadExt as _, AsyncWriteExt as _, FutureExt as _};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io;
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Longest one exchange (connect, TLS, request, answer) may take.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer accepted, head and body (a certificate chain is a few KiB).
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// Largest answer head.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;

/// An answer.
#[derive(Debug, Clone, Default)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Location`.
    pub location: Option<String>,
    /// `Replay-Nonce`.
    pub nonce: Option<String>,
    /// `Retry-After`, in seconds (the date form is not used by ACME servers we know).
    pub retry_after: Option<u64>,
    /// The body (chunked encoding removed).
    pub body: Vec<u8>,
}

/// The client: a TLS configuration that trusts the web roots and the extra root.
#[derive(Clone)]
pub struct Client {
    tls: futures_rustls::TlsConnector,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

impl Client {
    /// A client trusting the bundled web roots and the PEM certificates in `extra_root`.
    pub fn new(extra_root: Option<&Path>) -> io::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = extra_root {
            let bad = |m: String| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("acme-ca-root {}: {m}", path.display()),
                )
            };
            let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
            let mut n = 0;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|_| bad("not PEM".into()))?;
                roots
                    .add(cert)
                    .map_err(|e| bad(format!("not a usable root certificate ({e})")))?;
                n += 1;
            }
            if n == 0 {
                return Err(bad("holds no PEM certificate".into()));
            }
        }
        let config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(io::Error::other)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            tls: futures_rustls::TlsConnector::from(Arc::new(config)),
        })
    }

    /// One exchange with `url` (`https://host[:port]/path`), bounded by [`EXCHANGE_TIMEOUT`].
    pub async fn request(
        &self,
        method: &str,
        url: &str,
        body: Option<&[u8]>,
    ) -> io::Result<Response> {
        self.exchange(method, url, body)
            .or(async {
                Timer::after(EXCHANGE_TIMEOUT).await;
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer within {} s", EXCHANGE_TIMEOUT.as_secs()),
                ))
            })
            .await
    }

    async fn exchange(&self, method: &str, url: &str, body: Option<&[u8]>) -> io::Result<Response> {
        let (host, port, path) = split_url(url)?;
        let addrs = smol::net::resolve((host.as_str(), port)).await?;
        let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"));
        let mut tcp = None;
        for a in addrs {
            match Async::<TcpStream>::connect(a).await {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let tcp = tcp.ok_or(last)?;
        let name = ServerName::try_from(host.clone()).map_err(|_| invalid("bad host name"))?;
        let mut tls = self.tls.connect(name, tcp).await?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: pi-server/{}\r\nAccept: */*\r\nConnection: close\r\n",
            if port == 443 {
                host.clone()
            } else {
                format!("{host}:{port}")
            },
            crate::cli::VERSION
        );
        if let Some(b) = body {
            req.push_str(&format!(
                "Content-Type: application/jose+json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        req.push_str("\r\n");
        let mut out = req.into_bytes();
        out.extend_from_slice(body.unwrap_or_default());
        tls.write_all(&out).await?;
        tls.flush().await?;
        let mut buf = Vec::with_capacity(8192);
        let mut chunk = [0u8; 8192];
        loop {
            let n = match tls.read(&mut chunk).await {
                Ok(n) => n,
                // A server that closes without close_notify: what we have must be complete.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
                Err(e) => return Err(e),
            };
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() > MAX_RESPONSE_BYTES {
                return Err(invalid("answer too large"));
            }
            if let Some(r) = parse_response(&buf, n == 0)? {
                return Ok(r);
            }
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }
}

/// `https://host[:port]/path` as (host, port, path).
pub fn split_url(url: &str) -> io::Result<(String, u16, String)> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| invalid(format!("not an https:// URL: {url}")))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.ends_with(']') => (
            h,
            p.parse()
                .map_err(|_| invalid(format!("bad port in {url}")))?,
        ),
        _ => (authority, 443),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || path.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(invalid(format!("bad URL {url}")));
    }
    Ok((host.to_owned(), port, path.to_owned()))
}

/// A complete response at the start of `buf`, `Ok(None)` if more is needed; `eof`: the
/// connection has closed (a body without length ends there).
pub fn parse_response(buf: &[u8], eof: bool) -> io::Result<Option<Response>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut headers);
    let head_len = match parsed
        .parse(buf)
        .map_err(|e| invalid(format!("malformed answer head: {e}")))?
    {
        httparse::Status::Complete(n) if n <= MAX_HEAD_BYTES => n,
        httparse::Status::Partial if buf.len() <= MAX_HEAD_BYTES => return Ok(None),
        _ => return Err(invalid("answer head too large")),
    };
    let mut r = Response {
        status: parsed.code.unwrap_or(0),
        ..Response::default()
    };
    let mut length = None;
    let mut chunked = false;
    for h in parsed.headers.iter() {
        let v = std::str::from_utf8(h.value)
            .map_err(|_| invalid("header not UTF-8"))?
            .trim();
        let name = h.name.to_ascii_lowercase();
        match name.as_str() {
            "location" => r.location = Some(v.to_owned()),
            "replay-nonce" => r.nonce = Some(v.to_owned()),
            "retry-after" => r.retry_after = v.parse().ok(),
            "content-length" => {
                length = Some(
                    v.parse::<usize>()
                        .map_err(|_| invalid("bad content-length"))?,
                )
            }
            "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
            _ => {}
        }
    }
    let rest = &buf[head_len..];
    if chunked {
        return Ok(dechunk(rest)?.map(|body| Response { body, ..r }));
    }
    match length {
        Some(n) if rest.len() >= n => Ok(Some(Response {
            body: rest[..n].to_vec(),
            ..r
        })),
        Some(_) => Ok(None),
        None if eof => Ok(Some(Response {
            body: rest.to_vec(),
            ..r
        })),
        None => Ok(None),
    }
}

/// The body of a complete chunked encoding at the start of `data`; `Ok(None)` if incomplete.
fn dechunk(mut data: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&data[..eol]).map_err(|_| invalid("bad chunk"))?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| invalid("bad chunk size"))?;
        if size > MAX_RESPONSE_BYTES {
            return Err(invalid("chunk too large"));
        }
        data = &data[eol + 2..];
        if size == 0 {
            // Trailers end with an empty line; none are used.
            return Ok(data.windows(2).any(|w| w == b"\r\n").then_some(body));
        }
        if data.len() < size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            split_url("https://localhost:14000/dir").unwrap(),
            ("localhost".into(), 14000, "/dir".into())
        );
        assert_eq!(
            split_url("https://acme-v02.api.letsencrypt.org/directory").unwrap(),
            (
                "acme-v02.api.letsencrypt.org".into(),
                443,
                "/directory".into()
            )
        );
        assert_eq!(
            split_url("https://[::1]:8443").unwrap(),
            ("::1".into(), 8443, "/".into())
        );
        assert!(split_url("http://a/b").is_err());
        assert!(split_url("https://a:x/b").is_err());
        assert!(split_url("https:///b").is_err());
    }

    #[test]
    fn responses() {
        let r = parse_response(
            b"HTTP/1.1 201 Created\r\nLocation: https://a/o/1\r\nReplay-Nonce: abc\r\nContent-Length: 2\r\n\r\n{}",
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.status, 201);
        assert_eq!(r.location.as_deref(), Some("https://a/o/1"));
        assert_eq!(r.nonce.as_deref(), Some("abc"));
        assert_eq!(r.body, b"{}");
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{}", false)
                .unwrap()
                .is_none()
        );
        let c = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(c, false).unwrap().unwrap().body, b"abcde");
        assert!(parse_response(&c[..c.len() - 2], false).unwrap().is_none());
        let e = b"HTTP/1.1 200 OK\r\n\r\nuntil close";
        assert!(parse_response(e, false).unwrap().is_none());
        assert_eq!(
            parse_response(e, true).unwrap().unwrap().body,
            b"until close"
        );
        assert!(parse_response(b"garbage\r\n\r\n", false).is_err());
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400), eof: bool) {
            let _ = parse_response(&bytes, eof);
        }
    }
}
