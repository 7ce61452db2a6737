//! A minimal blocking HTTP/1.1 client (std `TcpStream` + `httparse`, rustls for `https://`) for
//! tools and smoke tests: one request at a time on a keep-alive connection, `Content-Length`
//! bodies only.

use core::fmt;
use rustls::pki_types::ServerName;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Largest response head accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest response body accepted.
pub const MAX_BODY: usize = 1 << 20;
/// Most response headers parsed.
const MAX_HEADERS: usize = 32;

/// An `http://HOST:PORT` or `https://HOST:PORT` base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// Host as written (name, IPv4, or IPv6 without brackets).
    pub host: String,
    /// TCP port (80, or 443 for `https://`, if not written).
    pub port: u16,
    /// `https://`: TLS, verified against the web's roots and any `--ca` file.
    pub tls: bool,
}

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UrlError {
    /// Not `http://` or `https://`.
    Scheme,
    /// No host.
    Host,
    /// Port not a number in 1..=65535.
    Port,
    /// A path other than `/` (the API paths are fixed).
    Path,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UrlError::Scheme => {
                "URL must start with http:// or https:// (e.g. http://127.0.0.1:8080)"
            }
            UrlError::Host => "URL has no host (e.g. http://127.0.0.1:8080)",
            UrlError::Port => "URL port must be a number from 1 to 65535",
            UrlError::Path => "URL must not have a path: give only http://HOST:PORT",
        })
    }
}

impl std::error::Error for UrlError {}

impl Url {
    /// Parses `http://HOST[:PORT][/]` or `https://HOST[:PORT][/]`.
    pub fn parse(text: &str) -> Result<Url, UrlError> {
        let (rest, tls) = match (text.strip_prefix("http://"), text.strip_prefix("https://")) {
            (Some(r), _) => (r, false),
            (_, Some(r)) => (r, true),
            _ => return Err(UrlError::Scheme),
        };
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if !(path.is_empty() || path == "/") {
            return Err(UrlError::Path);
        }
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let end = v6.find(']').ok_or(UrlError::Host)?;
            let after = &v6[end + 1..];
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(UrlError::Port),
            };
            (&v6[..end], port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(UrlError::Host);
        }
        let port = match port {
            None if tls => 443,
            None => 80,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => return Err(UrlError::Port),
            },
        };
        Ok(Url {
            host: host.to_owned(),
            port,
            tls,
        })
    }

    /// The value of the `Host` header.
    pub fn host_header(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Resolves to the first socket address.
    pub fn resolve(&self) -> Result<SocketAddr, HttpError> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| HttpError::Resolve(self.host.clone(), e))?
            .next()
            .ok_or_else(|| {
                HttpError::Resolve(self.host.clone(), io::Error::other("no address found"))
            })
    }
}

/// What went wrong talking to the server.
#[derive(Debug)]
#[non_exhaustive]
pub enum HttpError {
    /// The host name did not resolve.
    Resolve(String, io::Error),
    /// Could not connect (refused, unreachable, timed out).
    Connect(SocketAddr, io::Error),
    /// Reading or writing failed.
    Io(io::Error),
    /// The server closed the connection before a whole answer came.
    Closed,
    /// The answer is not HTTP/1.x as expected.
    Malformed(String),
    /// The answer is larger than [`MAX_HEAD`] / [`MAX_BODY`].
    TooLarge,
    /// `https://`: a CA file, the host name or the TLS handshake (the certificate) failed.
    Tls(String),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Resolve(h, e) => write!(f, "cannot resolve host {h}: {e}"),
            HttpError::Connect(a, e) if e.kind() == io::ErrorKind::ConnectionRefused => write!(
                f,
                "connection refused by {a}: is the phone book running there? (check --url)"
            ),
            HttpError::Connect(a, e) => write!(f, "cannot connect to {a}: {e}"),
            HttpError::Io(e) => write!(f, "network error: {e}"),
            HttpError::Closed => f.write_str("the server closed the connection without answering"),
            HttpError::Malformed(why) => write!(f, "malformed HTTP answer: {why}"),
            HttpError::TooLarge => f.write_str("HTTP answer too large"),
            HttpError::Tls(e) => write!(f, "HTTPS: {e}"),
        }
    }
}

impl std::error::Error for HttpError {}

impl From<io::Error> for HttpError {
    fn from(e: io::Error) -> Self {
        HttpError::Io(e)
    }
}

/// One HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header of that name (ignoring case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the server will close the connection after this answer.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Writes a request head (and body) into `out`.
pub fn write_request(
    out: &mut Vec<u8>,
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) {
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (k, v) in headers {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(b) = body {
        out.extend_from_slice(b"Content-Type: application/json\r\nContent-Length: ");
        out.extend_from_slice(b.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(b);
    } else {
        out.extend_from_slice(b"\r\n");
    }
}

/// Reads one answer from `stream`; `buf` keeps bytes between calls (none are expected beyond
/// one answer, since one request is in flight at a time).
pub fn read_response(stream: &mut impl Read, buf: &mut Vec<u8>) -> Result<Response, HttpError> {
    let mut chunk = [0u8; 8192];
    loop {
        let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut r = httparse::Response::new(&mut hs);
        match r.parse(buf) {
            Ok(httparse::Status::Complete(head)) => {
                let status = r.code.unwrap_or(0);
                let headers: Vec<(String, String)> = r
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_owned(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                let len = match headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                {
                    Some((_, v)) => v
                        .trim()
                        .parse::<usize>()
                        .map_err(|_| HttpError::Malformed("bad Content-Length".into()))?,
                    None if headers
                        .iter()
                        .any(|(k, _)| k.eq_ignore_ascii_case("transfer-encoding")) =>
                    {
                        return Err(HttpError::Malformed("chunked answers not supported".into()));
                    }
                    None => 0,
                };
                if len > MAX_BODY {
                    return Err(HttpError::TooLarge);
                }
                while buf.len() < head + len {
                    let n = stream.read(&mut chunk)?;
                    if n == 0 {
                        return Err(HttpError::Closed);
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let body = buf[head..head + len].to_vec();
                buf.drain(..head + len);
                return Ok(Response {
                    status,
                    headers,
                    body,
                });
            }
            Ok(httparse::Status::Partial) => {
                if buf.len() > MAX_HEAD {
                    return Err(HttpError::TooLarge);
                }
                let n = stream.read(&mut chunk)?;
                if n == 0 {
                    return Err(HttpError::Closed);
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(e) => return Err(HttpError::Malformed(e.to_string())),
        }
    }
}

/// The rustls client config of `https://` URLs: the peer library's phone-book client config
/// (the web's roots, plus the CA certificates of the PEM file `extra_ca`).
pub fn tls_config(extra_ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    peer::phonebook::http_client::tls_config(extra_ca).map_err(|e| e.to_string())
}

/// A connection: plain TCP, or TLS over it.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// A blocking client on one keep-alive connection, reconnecting when the server closed it.
pub struct Client {
    addr: SocketAddr,
    host: String,
    /// For `https://`: the config and the name the certificate must hold.
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    timeout: Duration,
    stream: Option<Stream>,
    buf: Vec<u8>,
    out: Vec<u8>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Resolves `url` and connects; `https://` trusts the web's roots only.
    pub fn connect(url: &Url, timeout: Duration) -> Result<Client, HttpError> {
        Self::connect_with_ca(url, timeout, None)
    }

    /// Resolves `url` and connects; `https://` also trusts the CA certificates in `ca`.
    pub fn connect_with_ca(
        url: &Url,
        timeout: Duration,
        ca: Option<&Path>,
    ) -> Result<Client, HttpError> {
        let tls = match url.tls {
            false => None,
            true => {
                let config = tls_config(ca).map_err(HttpError::Tls)?;
                let name = ServerName::try_from(url.host.clone())
                    .map_err(|e| HttpError::Tls(format!("host {}: {e}", url.host)))?;
                Some((config, name))
            }
        };
        let mut c = Client {
            addr: url.resolve()?,
            host: url.host_header(),
            tls,
            timeout,
            stream: None,
            buf: Vec::new(),
            out: Vec::new(),
        };
        c.ensure()?;
        Ok(c)
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn ensure(&mut self) -> Result<&mut Stream, HttpError> {
        if self.stream.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, self.timeout)
                .map_err(|e| HttpError::Connect(self.addr, e))?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(self.timeout))?;
            s.set_write_timeout(Some(self.timeout))?;
            self.buf.clear();
            self.stream = Some(match &self.tls {
                None => Stream::Plain(s),
                Some((config, name)) => {
                    let conn = rustls::ClientConnection::new(config.clone(), name.clone())
                        .map_err(|e| HttpError::Tls(e.to_string()))?;
                    let mut tls = rustls::StreamOwned::new(conn, s);
                    // Handshake now, so a bad certificate is its own error.
                    while tls.conn.is_handshaking() {
                        tls.conn
                            .complete_io(&mut tls.sock)
                            .map_err(|e| HttpError::Tls(e.to_string()))?;
                    }
                    Stream::Tls(Box::new(tls))
                }
            });
        }
        Ok(self.stream.as_mut().expect("just connected"))
    }

    /// Sends one request and reads its answer. A reused connection that the server had closed
    /// is reopened once.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Response, HttpError> {
        self.out.clear();
        write_request(&mut self.out, method, path, &self.host, headers, body);
        let fresh = self.stream.is_none();
        match self.try_once() {
            Err(HttpError::Closed | HttpError::Io(_)) if !fresh => {
                self.stream = None;
                self.try_once()
            }
            r => r,
        }
    }

    fn try_once(&mut self) -> Result<Response, HttpError> {
        let out = std::mem::take(&mut self.out);
        let res = (|| {
            let s = self.ensure()?;
            s.write_all(&out)?;
            let s = self.stream.as_mut().expect("connected");
            read_response(s, &mut self.buf)
        })();
        self.out = out;
        match &res {
            Ok(r) if !r.closes() => {}
            _ => self.stream = None,
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            Url::parse("http://127.0.0.1:8080"),
            Ok(Url {
                host: "127.0.0.1".into(),
                port: 8080,
                tls: false,
            })
        );
        let https = Url::parse("https://pb.example.org").unwrap();
        assert_eq!((https.port, https.tls), (443, true));
        assert_eq!(Url::parse("http://localhost/").unwrap().port, 80);
        let v6 = Url::parse("http://[::1]:9/").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 9));
        assert_eq!(v6.host_header(), "[::1]:9");
        assert_eq!(Url::parse("ftp://x:1"), Err(UrlError::Scheme));
        assert_eq!(Url::parse("http://x:0"), Err(UrlError::Port));
        assert_eq!(Url::parse("http://x:y"), Err(UrlError::Port));
        assert_eq!(Url::parse("http://:80"), Err(UrlError::Host));
        assert_eq!(Url::parse("http://x:80/api"), Err(UrlError::Path));
    }

    #[test]
    fn reads_split_answers() {
        let text = b"HTTP/1.1 404 Not Found\r\ncontent-length: 5\r\nRetry-After: 1\r\n\r\nhello";
        let mut buf = Vec::new();
        let r = read_response(&mut &text[..], &mut buf).unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(r.body, b"hello");
        assert_eq!(r.header("retry-after"), Some("1"));
        let mut buf = Vec::new();
        assert!(matches!(
            read_response(&mut &text[..text.len() - 1], &mut buf),
            Err(HttpError::Closed)
        ));
    }
}
