//! A minimal HTTP/1.1 client for the phone book: one keep-alive connection per server,
//! `Content-Length` bodies only, every size bounded; `http://` in the clear or `https://`
//! with rustls (TLS 1.3, ring), the certificate verified against the bundled web roots
//! ([`webpki_roots`], the same on every OS) plus an optional extra CA ([`tls_config`]).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use smol::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use smol::net::TcpStream;

/// Largest response head accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest response body accepted (a full batch lookup answer fits).
pub const MAX_BODY: usize = 256 * 1024;
const MAX_HEADERS: usize = 32;

/// A URL that this client cannot use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadUrl;

impl fmt::Display for BadUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("phone-book URL must be http://HOST[:PORT] or https://HOST[:PORT]")
    }
}

impl std::error::Error for BadUrl {}

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Retry-After` in seconds, if present.
    pub retry_after: Option<u64>,
    /// The body.
    pub body: Vec<u8>,
}

/// The extra CA file could not be used.
#[derive(Debug)]
pub struct BadCaFile(pub String);

impl fmt::Display for BadCaFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "phone-book CA file: {}", self.0)
    }
}

impl std::error::Error for BadCaFile {}

/// Largest extra CA file read, in bytes.
pub const MAX_CA_FILE_BYTES: u64 = 1024 * 1024;

/// The TLS client configuration for `https://` phone books: the bundled web roots and, if
/// given, every certificate of the PEM file `extra_ca` (a private CA, or pebble's in tests).
pub fn tls_config(extra_ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, BadCaFile> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_ca {
        let bad = |m: String| BadCaFile(format!("{}: {m}", path.display()));
        let len = std::fs::metadata(path)
            .map_err(|e| bad(e.to_string()))?
            .len();
        if len > MAX_CA_FILE_BYTES {
            return Err(bad(format!("larger than {MAX_CA_FILE_BYTES} bytes")));
        }
        let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let mut n = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|_| bad("not PEM".into()))?;
            roots
                .add(cert)
                .map_err(|e| bad(format!("not a usable CA certificate ({e})")))?;
            n += 1;
        }
        if n == 0 {
            return Err(bad("holds no PEM certificate".into()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // TLS 1.3 only: every phone book (pi-server, or a current proxy in front of one) speaks
    // it, and the peer crate does not build rustls's TLS 1.2 code.
    let mut c = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| BadCaFile(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(c))
}

/// A connection: plain TCP or TLS over it.
enum Stream {
    Plain(TcpStream),
    Tls(Box<futures_rustls::client::TlsStream<TcpStream>>),
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stream::Plain(_) => "Plain",
            Stream::Tls(_) => "Tls",
        })
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_close(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}

/// One server's connection.
#[derive(Debug)]
pub struct HttpClient {
    host: String,
    port: u16,
    /// `Some` for `https://` URLs.
    tls: Option<Arc<rustls::ClientConfig>>,
    stream: Option<Stream>,
    remote: Option<SocketAddr>,
}

/// `http://` or `https://` URL: (https, host, port).
fn parse_url(url: &str) -> Result<(bool, String, u16), BadUrl> {
    let (https, rest) = match url.strip_prefix("https://") {
        Some(r) => (true, r),
        None => (false, url.strip_prefix("http://").ok_or(BadUrl)?),
    };
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() || rest.len() > authority.len() + 1 {
        return Err(BadUrl);
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            (h, p.parse().map_err(|_| BadUrl)?)
        }
        _ => (authority, if https { 443 } else { 80 }),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(BadUrl);
    }
    if https && ServerName::try_from(host).is_err() {
        return Err(BadUrl);
    }
    Ok((https, host.to_owned(), port))
}

impl HttpClient {
    /// A client for `url` (`http://host:port` or `https://host:port`, the latter verified
    /// against the bundled web roots only); connects on first use.
    pub fn new(url: &str) -> Result<Self, BadUrl> {
        let https = url.starts_with("https://");
        let tls = if https {
            Some(tls_config(None).map_err(|_| BadUrl)?)
        } else {
            None
        };
        Self::with_tls(url, tls)
    }

    /// A client for `url`; `https://` URLs use `tls` (see [`tls_config`]), which they need.
    pub fn with_tls(url: &str, tls: Option<Arc<rustls::ClientConfig>>) -> Result<Self, BadUrl> {
        let (https, host, port) = parse_url(url)?;
        Ok(Self {
            host,
            port,
            tls: if https {
                Some(tls.ok_or(BadUrl)?)
            } else {
                None
            },
            stream: None,
            remote: None,
        })
    }

    /// Whether the URL is `https://`.
    pub fn is_https(&self) -> bool {
        self.tls.is_some()
    }

    /// The host of the URL.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port of the URL.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address of the connected phone book (after a successful request).
    pub fn remote_ip(&self) -> Option<std::net::IpAddr> {
        self.stream.as_ref()?;
        self.remote.map(|a| a.ip().to_canonical())
    }

    /// Sends one request and reads its response; reconnects once if a kept-alive connection
    /// turned out to be closed.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<&[u8]>,
    ) -> io::Result<Response> {
        let reused = self.stream.is_some();
        match self.try_request(method, path, bearer, body).await {
            Err(_) if reused => {
                self.stream = None;
                self.try_request(method, path, bearer, body).await
            }
            r => r,
        }
    }

    async fn try_request(
        &mut self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<&[u8]>,
    ) -> io::Result<Response> {
        // The stream is taken out while the exchange runs and put back only after a complete
        // answer: a request cancelled half-way (a timeout, Ctrl-C) drops its connection, so the
        // next request never reads the answer meant for the cancelled one.
        let mut stream = match self.stream.take() {
            Some(s) => s,
            None => {
                let s = TcpStream::connect((self.host.as_str(), self.port)).await?;
                s.set_nodelay(true)?;
                self.remote = s.peer_addr().ok();
                match &self.tls {
                    None => Stream::Plain(s),
                    Some(config) => {
                        let name = ServerName::try_from(self.host.clone())
                            .map_err(|_| invalid("host is not a DNS name or address"))?;
                        let tls = futures_rustls::TlsConnector::from(config.clone())
                            .connect(name, s)
                            .await?;
                        Stream::Tls(Box::new(tls))
                    }
                }
            }
        };
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}:{}\r\n",
            self.host, self.port
        );
        if let Some(t) = bearer {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        let body = body.unwrap_or_default();
        if !body.is_empty() || method != "GET" {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        req.push_str("\r\n");
        let mut out = req.into_bytes();
        out.extend_from_slice(body);
        stream.write_all(&out).await?;
        let (resp, keep) = read_response(&mut stream).await?;
        if keep {
            self.stream = Some(stream);
        }
        Ok(resp)
    }
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// A parsed response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Bytes of the head, blank line included.
    pub len: usize,
    /// Status code.
    pub status: u16,
    /// `Content-Length` (at most [`MAX_BODY`]).
    pub content_length: usize,
    /// `Retry-After` seconds.
    pub retry_after: Option<u64>,
    /// Whether the connection may be reused.
    pub keep_alive: bool,
}

/// Parses a response head at the start of `buf`: `Ok(None)` if more bytes are needed.
pub fn parse_head(buf: &[u8]) -> io::Result<Option<Head>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut headers);
    let len = match parsed
        .parse(buf)
        .map_err(|_| invalid("malformed response head"))?
    {
        httparse::Status::Partial if buf.len() > MAX_HEAD => {
            return Err(invalid("response head too large"));
        }
        httparse::Status::Partial => return Ok(None),
        httparse::Status::Complete(n) if n > MAX_HEAD => {
            return Err(invalid("response head too large"));
        }
        httparse::Status::Complete(n) => n,
    };
    let status = parsed.code.ok_or_else(|| invalid("no status"))?;
    let mut length = None;
    let mut retry_after = None;
    let mut keep_alive = parsed.version == Some(1);
    for h in parsed.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            if length.is_some() {
                return Err(invalid("repeated content-length"));
            }
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| invalid("bad content-length"))?,
            );
        } else if h.name.eq_ignore_ascii_case("retry-after") {
            retry_after = value.parse().ok();
        } else if h.name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            keep_alive = false;
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(invalid("transfer-encoding not supported"));
        }
    }
    let content_length = length.ok_or_else(|| invalid("no content-length"))?;
    if content_length > MAX_BODY {
        return Err(invalid("response body too large"));
    }
    Ok(Some(Head {
        len,
        status,
        content_length,
        retry_after,
        keep_alive,
    }))
}

/// Reads one response; returns it and whether the connection may be reused.
async fn read_response(stream: &mut Stream) -> io::Result<(Response, bool)> {
    let mut buf = Vec::with_capacity(4096);
    let mut tmp = [0u8; 4096];
    loop {
        let n = stream.read(&mut tmp).await?;
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        buf.extend_from_slice(&tmp[..n]);
        let Some(head) = parse_head(&buf)? else {
            continue;
        };
        let mut body = buf.split_off(head.len);
        if body.len() > head.content_length {
            return Err(invalid("unexpected bytes after response"));
        }
        let have = body.len();
        body.resize(head.content_length, 0);
        stream.read_exact(&mut body[have..]).await?;
        let resp = Response {
            status: head.status,
            retry_after: head.retry_after,
            body,
        };
        return Ok((resp, head.keep_alive));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("http://127.0.0.1:8080"),
            Ok((false, "127.0.0.1".into(), 8080))
        );
        assert_eq!(
            parse_url("http://pb.example/"),
            Ok((false, "pb.example".into(), 80))
        );
        assert_eq!(parse_url("http://[::1]:81"), Ok((false, "::1".into(), 81)));
        assert_eq!(
            parse_url("https://pb.example"),
            Ok((true, "pb.example".into(), 443))
        );
        assert_eq!(
            parse_url("https://pb.example:8443/"),
            Ok((true, "pb.example".into(), 8443))
        );
        assert_eq!(parse_url("ftp://pb.example"), Err(BadUrl));
        assert_eq!(parse_url("https://bad_name!:1"), Err(BadUrl));
        assert!(HttpClient::with_tls("https://pb.example", None).is_err());
        assert!(HttpClient::new("https://pb.example").unwrap().is_https());
        assert_eq!(parse_url("http://pb.example/api"), Err(BadUrl));
        assert_eq!(parse_url("http://:80"), Err(BadUrl));
    }

    #[test]
    fn heads() {
        let h =
            parse_head(b"HTTP/1.1 429 Too Many\r\nRetry-After: 7\r\nContent-Length: 2\r\n\r\n{}")
                .unwrap()
                .unwrap();
        assert_eq!(
            (h.status, h.content_length, h.retry_after, h.keep_alive),
            (429, 2, Some(7), true)
        );
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Le").unwrap(), None);
        assert!(parse_head(b"HTTP/1.1 200 OK\r\n\r\n").is_err(), "no length");
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 999999999\r\n\r\n").is_err());
        assert!(parse_head(&vec![b'a'; MAX_HEAD + 1]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn parse_head_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = parse_head(&bytes);
        }
    }
}
