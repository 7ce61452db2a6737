//! A bounded reader for the NAT-PMP and PCP messages: every read fails on short input and
//! [`Reader::finish`] rejects trailing bytes.

use std::fmt;

/// Why a datagram from the gateway could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The datagram ended before the message did.
    Truncated,
    /// Bytes were left after the message.
    TrailingBytes,
    /// Longer than the protocol's largest message.
    TooLong,
    /// Not the protocol version this codec speaks.
    BadVersion,
    /// A request where a response was expected, or the reverse.
    BadDirection,
    /// An opcode (or transport protocol) this codec does not handle.
    BadOpcode,
    /// Fields that contradict each other (a success without its body, a malformed option).
    Inconsistent,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Truncated => "message truncated",
            Self::TrailingBytes => "trailing bytes after message",
            Self::TooLong => "message longer than the protocol allows",
            Self::BadVersion => "unknown protocol version",
            Self::BadDirection => "request and response confused",
            Self::BadOpcode => "unsupported opcode",
            Self::Inconsistent => "inconsistent fields",
        })
    }
}

impl std::error::Error for DecodeError {}

/// A cursor over a datagram.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let (head, tail) = self
            .buf
            .split_first_chunk::<N>()
            .ok_or(DecodeError::Truncated)?;
        self.buf = tail;
        Ok(*head)
    }

    pub(crate) fn skip(&mut self, n: usize) -> Result<(), DecodeError> {
        self.buf = self.buf.get(n..).ok_or(DecodeError::Truncated)?;
        Ok(())
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes)
        }
    }
}
