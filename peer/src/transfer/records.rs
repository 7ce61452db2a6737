//! Sealed records on QUIC streams (see `wire` for the layout).

use std::fmt;

use bytes::Bytes;

use crate::net::session::SessionKeys;
use crate::transfer::codec::DecodeError;
use crate::transfer::wire::{RECORD_HEADER_LEN, RecordHeader, RecordKind, TAG_LEN};

/// A stream-level failure while moving records.
#[derive(Debug)]
#[non_exhaustive]
pub enum StreamError {
    /// The connection is gone. On the first request of a new connection this is also how a
    /// peer that refused our identity shows itself.
    Lost(quinn::ConnectionError),
    /// The peer reset or stopped the stream.
    Reset,
    /// The stream ended in the middle of a record.
    Truncated,
    /// A header or message could not be decoded.
    Malformed(DecodeError),
    /// A record failed authentication (altered, or not from this session).
    Unauthentic,
    /// A record of a kind or size the exchange does not allow here.
    Unexpected,
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Lost(e) => write!(
                f,
                "connection lost: {e} (if this is the first request on a new connection, the peer may have refused our identity)"
            ),
            Self::Reset => f.write_str("peer reset the stream"),
            Self::Truncated => f.write_str("stream ended inside a record"),
            Self::Malformed(e) => write!(f, "malformed message: {e}"),
            Self::Unauthentic => f.write_str("record failed authentication"),
            Self::Unexpected => f.write_str("unexpected record"),
        }
    }
}

impl std::error::Error for StreamError {}

impl From<quinn::ReadExactError> for StreamError {
    fn from(e: quinn::ReadExactError) -> Self {
        match e {
            quinn::ReadExactError::FinishedEarly(_) => Self::Truncated,
            quinn::ReadExactError::ReadError(quinn::ReadError::ConnectionLost(c)) => Self::Lost(c),
            quinn::ReadExactError::ReadError(_) => Self::Reset,
        }
    }
}

impl From<quinn::WriteError> for StreamError {
    fn from(e: quinn::WriteError) -> Self {
        match e {
            quinn::WriteError::ConnectionLost(c) => Self::Lost(c),
            _ => Self::Reset,
        }
    }
}

/// Writes sealed records on one stream.
#[derive(Debug)]
pub(crate) struct RecordWriter<'a> {
    pub(crate) send: &'a mut quinn::SendStream,
    keys: &'a SessionKeys,
    stream: u64,
    seq: u32,
}

impl<'a> RecordWriter<'a> {
    pub(crate) fn new(send: &'a mut quinn::SendStream, keys: &'a SessionKeys) -> Self {
        let stream = u64::from(send.id());
        Self {
            send,
            keys,
            stream,
            seq: 0,
        }
    }

    /// A buffer with room for the header in front and the tag behind `len` plaintext bytes.
    pub(crate) fn buffer(len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(RECORD_HEADER_LEN + len + TAG_LEN);
        v.resize(RECORD_HEADER_LEN + len, 0);
        v
    }

    /// Seals `buf[RECORD_HEADER_LEN..]` (made by [`Self::buffer`]) and sends it; returns the
    /// bytes put on the stream.
    pub(crate) async fn send(
        &mut self,
        kind: RecordKind,
        mut buf: Vec<u8>,
    ) -> Result<usize, StreamError> {
        let len = (buf.len() - RECORD_HEADER_LEN + TAG_LEN) as u32;
        let header = RecordHeader { kind, len }.encode();
        buf[..RECORD_HEADER_LEN].copy_from_slice(&header);
        let tag = self.keys.seal(
            self.stream,
            self.seq,
            &header,
            &mut buf[RECORD_HEADER_LEN..],
        );
        self.seq += 1;
        buf.extend_from_slice(&tag);
        let n = buf.len();
        self.send.write_chunk(Bytes::from(buf)).await?;
        Ok(n)
    }
}

/// Reads and opens sealed records from one stream.
#[derive(Debug)]
pub(crate) struct RecordReader<'a> {
    pub(crate) recv: &'a mut quinn::RecvStream,
    keys: &'a SessionKeys,
    stream: u64,
    seq: u32,
}

impl<'a> RecordReader<'a> {
    pub(crate) fn new(recv: &'a mut quinn::RecvStream, keys: &'a SessionKeys) -> Self {
        let stream = u64::from(recv.id());
        Self {
            recv,
            keys,
            stream,
            seq: 0,
        }
    }

    /// Reads the next header; `None` at a clean end of stream.
    pub(crate) async fn header(&mut self) -> Result<Option<RecordHeader>, StreamError> {
        let mut h = [0u8; RECORD_HEADER_LEN];
        match self.recv.read_exact(&mut h).await {
            Ok(()) => RecordHeader::decode(&h)
                .map(Some)
                .map_err(StreamError::Malformed),
            Err(quinn::ReadExactError::FinishedEarly(0)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads the body of a record whose header was just read into `buf` (which must hold
    /// `header.len` bytes) and opens it in place; returns the plaintext length.
    pub(crate) async fn body(
        &mut self,
        header: RecordHeader,
        buf: &mut [u8],
    ) -> Result<usize, StreamError> {
        let ct = &mut buf[..header.len as usize];
        self.recv.read_exact(ct).await?;
        let plain = self
            .keys
            .open(self.stream, self.seq, &header.encode(), ct)
            .map_err(|_| StreamError::Unauthentic)?;
        self.seq += 1;
        Ok(plain.len())
    }
}
