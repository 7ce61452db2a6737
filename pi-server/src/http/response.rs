//! Response heads and bodies, written into a reusable buffer.

use std::io::Write as _;

/// The reason phrase of a status code.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// One response being built.
#[derive(Debug, Clone, Copy)]
pub struct Response<'a> {
    /// Status code.
    pub status: u16,
    /// Content type of `body`.
    pub content_type: &'a str,
    /// Seconds for `Retry-After`.
    pub retry_after: Option<u32>,
    /// Value of `Allow` (405).
    pub allow: Option<&'a str>,
    /// Add `WWW-Authenticate: Bearer` (401 on lookups).
    pub bearer_challenge: bool,
    /// Whether the connection stays open.
    pub keep_alive: bool,
    /// Omit the body (HEAD requests) but keep its length.
    pub head_only: bool,
}

impl Response<'_> {
    /// A JSON response with the given status.
    pub fn json(status: u16, keep_alive: bool) -> Self {
        Response {
            status,
            content_type: "application/json",
            retry_after: None,
            allow: None,
            bearer_challenge: false,
            keep_alive,
            head_only: false,
        }
    }

    /// Appends head and body to `out`.
    pub fn write(&self, body: &[u8], out: &mut Vec<u8>) {
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            body.len()
        );
        if let Some(s) = self.retry_after {
            let _ = write!(out, "Retry-After: {s}\r\n");
        }
        if let Some(a) = self.allow {
            let _ = write!(out, "Allow: {a}\r\n");
        }
        if self.bearer_challenge {
            out.extend_from_slice(b"WWW-Authenticate: Bearer\r\n");
        }
        if !self.keep_alive {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !self.head_only {
            out.extend_from_slice(body);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_headers() {
        let mut out = Vec::new();
        let mut r = Response::json(429, false);
        r.retry_after = Some(3);
        r.write(b"{}", &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 429 Too Many Requests\r\n"));
        assert!(text.contains("Content-Length: 2\r\n"));
        assert!(text.contains("Retry-After: 3\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\n{}"));
    }
}
