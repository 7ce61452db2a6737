//! Request heads, parsed with httparse under fixed limits.

use crate::config::ProxyHeader;
use core::fmt;

/// Most header lines in a request (431 above).
pub const MAX_HEADERS: usize = 32;
/// Most lines of one forwarding header kept; more make that header unusable (the request is
/// refused if it is the configured one, see [`crate::addr`]).
pub const MAX_FORWARD_LINES: usize = 4;

/// The lines of the three forwarding headers (`X-Forwarded-For`, `Forwarded`, `X-Real-IP`),
/// in the order they came. Several lines of one name form one comma-separated list
/// (RFC 9110 section 5.3), so every line is kept, up to [`MAX_FORWARD_LINES`] per name.
#[derive(Debug, Clone, Copy, Default)]
pub struct Forwarding<'a> {
    lines: [[&'a [u8]; MAX_FORWARD_LINES]; 3],
    counts: [u8; 3],
}

impl<'a> Forwarding<'a> {
    /// Records one line of `which`.
    pub fn push(&mut self, which: ProxyHeader, value: &'a [u8]) {
        let k = which.index();
        let n = usize::from(self.counts[k]);
        if n < MAX_FORWARD_LINES {
            self.lines[k][n] = value;
        }
        self.counts[k] = self.counts[k].saturating_add(1);
    }

    /// The lines of `which` in order, or `None` if there were more than [`MAX_FORWARD_LINES`].
    pub fn lines(&self, which: ProxyHeader) -> Option<&[&'a [u8]]> {
        let k = which.index();
        let n = usize::from(self.counts[k]);
        (n <= MAX_FORWARD_LINES).then(|| &self.lines[k][..n])
    }
}

/// Request methods the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD` (answered like GET without a body)
    Head,
    /// `POST`
    Post,
    /// `DELETE`
    Delete,
    /// Anything else.
    Other,
}

/// The parts of a request head the server uses, borrowed from the read buffer.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    /// Method.
    pub method: Method,
    /// Path without the query string.
    pub path: &'a [u8],
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    /// Bytes of the head, including the final empty line.
    pub len: usize,
    /// `Content-Length`, if present.
    pub content_length: Option<usize>,
    /// Whether the client wants the connection kept open.
    pub keep_alive: bool,
    /// The credentials of `Authorization: Bearer <token>`.
    pub bearer: Option<&'a [u8]>,
    /// The forwarding headers' lines (believed only from a trusted proxy).
    pub forwarding: Forwarding<'a>,
    /// `Expect: 100-continue` was sent: the client may wait for `100 Continue` before the body.
    pub expect_continue: bool,
}

/// Why a head could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Not complete yet: read more.
    Partial,
    /// Larger than the limit, or too many header lines (431).
    TooLarge,
    /// Not HTTP/1.x syntax (400).
    Malformed,
    /// A request line of another HTTP version than 1.0 and 1.1, such as `HTTP/2.0` or the
    /// HTTP/2 preface `PRI * HTTP/2.0` (505).
    Version,
    /// A bad or repeated `Content-Length` (400).
    BadLength,
    /// `Transfer-Encoding` on a request (411: send `Content-Length`).
    Chunked,
    /// A `POST` or `DELETE` without `Content-Length` (411): every such request of the API
    /// has a body, and without a length it cannot be framed.
    LengthRequired,
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HeadError::Partial => "incomplete request head",
            HeadError::TooLarge => "request head too large",
            HeadError::Malformed => "malformed request head",
            HeadError::Version => "only HTTP/1.0 and HTTP/1.1 are supported",
            HeadError::BadLength => "invalid Content-Length",
            HeadError::Chunked => "Transfer-Encoding is not accepted; send Content-Length",
            HeadError::LengthRequired => "POST and DELETE need a Content-Length header",
        })
    }
}

impl std::error::Error for HeadError {}

/// Parses the head at the start of `buf`, allowing at most `max_bytes` for it.
pub fn parse_head(buf: &[u8], max_bytes: usize) -> Result<Head<'_>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return Err(if buf.len() >= max_bytes {
                HeadError::TooLarge
            } else {
                HeadError::Partial
            });
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(httparse::Error::Version) if other_http_version(buf) => {
            return Err(HeadError::Version);
        }
        Err(_) => return Err(HeadError::Malformed),
    };
    if len > max_bytes {
        return Err(HeadError::TooLarge);
    }
    let minor = req.version.unwrap_or(1);
    let method = match req.method.unwrap_or("") {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "DELETE" => Method::Delete,
        _ => Method::Other,
    };
    let target = req.path.unwrap_or("").as_bytes();
    let path = match target.iter().position(|b| *b == b'?') {
        Some(q) => &target[..q],
        None => target,
    };
    let mut head = Head {
        method,
        path,
        minor,
        len,
        content_length: None,
        keep_alive: minor >= 1,
        bearer: None,
        forwarding: Forwarding::default(),
        expect_continue: false,
    };
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            if head.content_length.is_some() {
                return Err(HeadError::BadLength);
            }
            let v = h.value;
            if v.is_empty() || v.len() > 9 || !v.iter().all(u8::is_ascii_digit) {
                return Err(HeadError::BadLength);
            }
            head.content_length = Some(v.iter().fold(0, |n, d| n * 10 + usize::from(d - b'0')));
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HeadError::Chunked);
        } else if name.eq_ignore_ascii_case("connection") {
            for tok in h.value.split(|b| *b == b',') {
                let tok = tok.trim_ascii();
                if tok.eq_ignore_ascii_case(b"close") {
                    head.keep_alive = false;
                } else if tok.eq_ignore_ascii_case(b"keep-alive") {
                    head.keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("authorization") {
            let v = h.value;
            if v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ") {
                head.bearer = Some(v[7..].trim_ascii());
            }
        } else if let Some(which) = ProxyHeader::parse(name) {
            head.forwarding.push(which, h.value);
        } else if name.eq_ignore_ascii_case("expect") {
            head.expect_continue = h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        }
    }
    if head.content_length.is_none() && matches!(method, Method::Post | Method::Delete) {
        return Err(HeadError::LengthRequired);
    }
    Ok(head)
}

/// Whether the request line is `method SP target SP HTTP/<digits and dots>` (as far as it
/// arrived): a well-formed line of an HTTP version other than 1.0 and 1.1.
fn other_http_version(buf: &[u8]) -> bool {
    let line = buf.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut parts = line.split(|b| *b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let number = version.strip_prefix(b"HTTP/").unwrap_or_default();
    !method.is_empty()
        && method.iter().all(u8::is_ascii_alphabetic)
        && !target.is_empty()
        && !number.is_empty()
        && number.iter().all(|b| b.is_ascii_digit() || *b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_what_the_api_needs() {
        let r = b"GET /api/lookup/Aa%20Bb@W?x=1 HTTP/1.1\r\nAuthorization: Bearer abc\r\nX-Forwarded-For: 1.2.3.4\r\n\r\nrest";
        let h = parse_head(r, 8192).unwrap();
        assert_eq!(h.method, Method::Get);
        assert_eq!(h.path, b"/api/lookup/Aa%20Bb@W");
        assert_eq!(h.bearer, Some(&b"abc"[..]));
        let xff = h.forwarding.lines(ProxyHeader::XForwardedFor);
        assert_eq!(xff, Some(&[&b"1.2.3.4"[..]][..]));
        assert_eq!(h.forwarding.lines(ProxyHeader::Forwarded), Some(&[][..]));
        assert!(h.keep_alive);
        assert_eq!(&r[h.len..], b"rest");
        let h = parse_head(b"POST / HTTP/1.0\r\nContent-Length: 12\r\n\r\n", 8192).unwrap();
        assert_eq!(
            (h.content_length, h.keep_alive, h.minor),
            (Some(12), false, 0)
        );
    }

    #[test]
    fn refuses_bad_framing() {
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nHost: x", 8192).err(),
            Some(HeadError::Partial)
        );
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nHost: x", 10).err(),
            Some(HeadError::TooLarge)
        );
        assert_eq!(
            parse_head(b"GARBAGE\r\n\r\n", 8192).err(),
            Some(HeadError::Malformed)
        );
        for bad in ["-1", "1 2", "", "99999999999", "+5"] {
            let r = format!("POST / HTTP/1.1\r\nContent-Length: {bad}\r\n\r\n");
            assert_eq!(
                parse_head(r.as_bytes(), 8192).err(),
                Some(HeadError::BadLength),
                "{bad}"
            );
        }
        let two = b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n";
        assert_eq!(parse_head(two, 8192).err(), Some(HeadError::BadLength));
        let te = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse_head(te, 8192).err(), Some(HeadError::Chunked));
        for no_length in ["POST / HTTP/1.1\r\n\r\n", "DELETE / HTTP/1.0\r\n\r\n"] {
            assert_eq!(
                parse_head(no_length.as_bytes(), 8192).err(),
                Some(HeadError::LengthRequired)
            );
        }
        for version in [
            "HTTP/2.0",
            "HTTP/2",
            "HTTP/3",
            "HTTP/0.9",
            "HTTP/1.2",
            "HTTP/10.1",
        ] {
            let r = format!("GET / {version}\r\n\r\n");
            assert_eq!(
                parse_head(r.as_bytes(), 8192).err(),
                Some(HeadError::Version),
                "{version}"
            );
        }
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        assert_eq!(parse_head(preface, 8192).err(), Some(HeadError::Version));
        for not_http in [
            "GET /\r\n\r\n",
            "GET / SPDY/3\r\n\r\n",
            "GET / http/1.1\r\n\r\n",
        ] {
            assert_eq!(
                parse_head(not_http.as_bytes(), 8192).err(),
                Some(HeadError::Malformed),
                "{not_http:?}"
            );
        }
        let e = b"POST / HTTP/1.1\r\nContent-Length: 1\r\nExpect: 100-Continue\r\n\r\n";
        assert!(parse_head(e, 8192).unwrap().expect_continue);
        let many: String = (0..40).map(|i| format!("X-{i}: y\r\n")).collect();
        let r = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(
            parse_head(r.as_bytes(), 8192).err(),
            Some(HeadError::TooLarge)
        );
    }

    #[test]
    fn repeated_forwarding_lines_are_all_kept_in_order() {
        let mut r = String::from("GET / HTTP/1.1\r\n");
        for i in 0..MAX_FORWARD_LINES {
            r.push_str(&format!(
                "x-forwarded-for: 192.0.2.{i}\r\nX-Real-IP: 1.1.1.{i}\r\n"
            ));
        }
        let full = format!("{r}\r\n");
        let h = parse_head(full.as_bytes(), 8192).unwrap();
        let lines = h.forwarding.lines(ProxyHeader::XForwardedFor).unwrap();
        assert_eq!(lines.len(), MAX_FORWARD_LINES);
        assert_eq!(lines[1], b"192.0.2.1");
        r.push_str("X-Forwarded-For: 192.0.2.99\r\n\r\n");
        let h = parse_head(r.as_bytes(), 8192).unwrap();
        assert_eq!(h.forwarding.lines(ProxyHeader::XForwardedFor), None);
        assert_eq!(
            h.forwarding.lines(ProxyHeader::XRealIp).map(<[_]>::len),
            Some(MAX_FORWARD_LINES)
        );
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(h) = parse_head(&bytes, 200) {
                prop_assert!(h.len <= bytes.len());
            }
        }
    }
}
