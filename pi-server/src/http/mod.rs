//! HTTP/1.1 framing: request heads (parsed with httparse, bounded) and responses.

mod request;
mod response;

pub use request::{
    Forwarding, Head, HeadError, MAX_FORWARD_LINES, MAX_HEADERS, Method, parse_head,
};
pub use response::{Response, reason};
