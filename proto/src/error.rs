//! Error codes of the HTTP API: the `error` field of every non-2xx answer.

use nanoserde::SerJson;

/// Every error the phone book answers with (docs/PROTOCOL.md "Errors").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// 400: the body or path is malformed; `message` names the field and the rule.
    BadRequest,
    /// 400: the signed timestamp is further from the server's clock than the allowed skew.
    ClockSkew,
    /// 401: the signature does not verify.
    BadSignature,
    /// 401: a lookup without a valid bearer token (re-register to get a fresh one).
    Unauthorized,
    /// 404: no such player, or the player does not allow you: the two are indistinguishable.
    NotFound,
    /// 405: wrong method for this path (see the `Allow` header).
    MethodNotAllowed,
    /// 409: the name is bound to another key.
    KeyConflict,
    /// 409: the signed timestamp is not newer than the last one accepted for this name.
    Replayed,
    /// 411: a body without `Content-Length` (chunked bodies are not accepted).
    LengthRequired,
    /// 413: the body is larger than the server accepts.
    BodyTooLarge,
    /// 431: the request head is larger than the server accepts.
    HeadersTooLarge,
    /// 429: too many requests; wait `Retry-After` seconds.
    RateLimited,
    /// 429: the registration would exceed a quota of your address or key (live records, or
    /// friend keys they hold); no `Retry-After`: it frees when one of your own records is
    /// unregistered or expires.
    QuotaExceeded,
    /// 503: the table is full; wait `Retry-After` seconds.
    CapacityFull,
    /// 503: too many connections.
    Overloaded,
    /// 503: the shared store (Redis) that registrations are written to cannot be reached;
    /// wait `Retry-After` seconds. Lookups are still answered.
    StoreUnavailable,
    /// 505: only HTTP/1.0 and 1.1 are spoken.
    VersionNotSupported,
}

impl ErrorCode {
    /// The stable machine-readable code.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::ClockSkew => "clock_skew",
            ErrorCode::BadSignature => "bad_signature",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::KeyConflict => "key_conflict",
            ErrorCode::Replayed => "replayed",
            ErrorCode::LengthRequired => "length_required",
            ErrorCode::BodyTooLarge => "body_too_large",
            ErrorCode::HeadersTooLarge => "headers_too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::QuotaExceeded => "quota_exceeded",
            ErrorCode::CapacityFull => "capacity_full",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::StoreUnavailable => "store_unavailable",
            ErrorCode::VersionNotSupported => "version_not_supported",
        }
    }

    /// The HTTP status that carries this code.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::BadRequest | ErrorCode::ClockSkew => 400,
            ErrorCode::BadSignature | ErrorCode::Unauthorized => 401,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::KeyConflict | ErrorCode::Replayed => 409,
            ErrorCode::LengthRequired => 411,
            ErrorCode::BodyTooLarge => 413,
            ErrorCode::RateLimited | ErrorCode::QuotaExceeded => 429,
            ErrorCode::HeadersTooLarge => 431,
            ErrorCode::CapacityFull | ErrorCode::Overloaded | ErrorCode::StoreUnavailable => 503,
            ErrorCode::VersionNotSupported => 505,
        }
    }

    /// Parses the machine-readable code.
    pub fn parse(s: &str) -> Option<Self> {
        ALL.iter().copied().find(|c| c.as_str() == s)
    }
}

/// Every code, for documentation and tests.
pub const ALL: [ErrorCode; 17] = [
    ErrorCode::BadRequest,
    ErrorCode::ClockSkew,
    ErrorCode::BadSignature,
    ErrorCode::Unauthorized,
    ErrorCode::NotFound,
    ErrorCode::MethodNotAllowed,
    ErrorCode::KeyConflict,
    ErrorCode::Replayed,
    ErrorCode::LengthRequired,
    ErrorCode::BodyTooLarge,
    ErrorCode::HeadersTooLarge,
    ErrorCode::RateLimited,
    ErrorCode::QuotaExceeded,
    ErrorCode::CapacityFull,
    ErrorCode::Overloaded,
    ErrorCode::StoreUnavailable,
    ErrorCode::VersionNotSupported,
];

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, SerJson)]
pub struct ErrorBody {
    /// Machine-readable code ([`ErrorCode::as_str`]).
    pub error: String,
    /// Human-readable explanation.
    pub message: String,
    /// Seconds to wait before retrying (429, 503 and absent lookups), same as `Retry-After`.
    #[nserde(rename = "retryAfter")]
    pub retry_after: Option<u64>,
    /// The server's clock in Unix milliseconds (only with `clock_skew`).
    #[nserde(rename = "serverTime")]
    pub server_time: Option<u64>,
}

impl ErrorBody {
    /// Builds a body for `code`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            error: code.as_str().to_owned(),
            message: message.into(),
            retry_after: None,
            server_time: None,
        }
    }

    /// Parses an error answer (client side); unknown extra fields are ignored.
    pub fn from_json(body: &[u8]) -> Result<Self, crate::BodyError> {
        let mut f = crate::json::Fields::parse(body, crate::json::Limits::default())?;
        let b = ErrorBody {
            error: f.str("error")?,
            message: f.opt_str("message")?.unwrap_or_default(),
            retry_after: f.opt_int("retryAfter", 0..=crate::json::MAX_SAFE_INT)?,
            server_time: f.opt_int("serverTime", 0..=crate::json::MAX_SAFE_INT)?,
        };
        f.ignore_rest();
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_roundtrip_and_are_unique() {
        for c in ALL {
            assert_eq!(ErrorCode::parse(c.as_str()), Some(c));
            assert!((400..600).contains(&c.status()));
        }
        let mut b = ErrorBody::new(ErrorCode::RateLimited, "slow down");
        b.retry_after = Some(3);
        let text = b.serialize_json();
        assert_eq!(
            text,
            r#"{"error":"rate_limited","message":"slow down","retryAfter":3}"#
        );
        assert_eq!(ErrorBody::from_json(text.as_bytes()).unwrap(), b);
    }
}
