//! The requesting side of one exchange: a manifest or a chunk from one peer.

use std::fmt;

use crate::net::endpoint::{CLOSE_FULL, CLOSE_REFUSED, PeerConnection};
use crate::transfer::codec::DecodeError;
use crate::transfer::hash::FileHash;
use crate::transfer::manifest::{MAX_MANIFEST_LEN, Manifest};
use crate::transfer::records::{RecordReader, RecordWriter, StreamError};
use crate::transfer::wire::{
    MAX_RECORD_CIPHERTEXT, RECORD_HEADER_LEN, RECORD_SIZE, RecordHeader, RecordKind, Request,
    Status, TAG_LEN,
};

/// A request to a peer failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum FetchError {
    /// The peer answered with a status other than Ok.
    Status(Status),
    /// Moving the records failed.
    Stream(StreamError),
    /// The manifest could not be decoded.
    BadManifest(DecodeError),
    /// The manifest is for another file than the one asked for.
    WrongManifest,
    /// The peer sent more or less data than the chunk holds.
    WrongLength,
    /// No complete answer before the request's deadline.
    TimedOut,
    /// The peer closed the connection with a refusal code: [`CLOSE_REFUSED`] (its owner's
    /// visibility does not include our key) or [`CLOSE_FULL`] (it serves its maximum of peers).
    Refused(u32),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status(s) => write!(f, "peer answered {s:?}"),
            Self::Stream(e) => e.fmt(f),
            Self::BadManifest(e) => write!(f, "bad manifest: {e}"),
            Self::WrongManifest => f.write_str("peer sent the manifest of another file"),
            Self::WrongLength => f.write_str("peer sent a chunk of the wrong length"),
            Self::TimedOut => f.write_str("no answer before the deadline"),
            Self::Refused(CLOSE_REFUSED) => f.write_str(
                "peer refused our key (its owner shares with friends only, and our key is not on the list)",
            ),
            Self::Refused(CLOSE_FULL) => f.write_str("peer is serving its maximum of peers: try later"),
            Self::Refused(code) => write!(f, "peer closed the connection (code {code})"),
        }
    }
}

impl std::error::Error for FetchError {}

impl FetchError {
    /// Whether the peer refused to serve us (our key, or it is full), rather than failing.
    pub fn is_refusal(&self) -> bool {
        matches!(self, Self::Refused(_))
    }
}

impl From<StreamError> for FetchError {
    /// A connection the peer closed with a refusal code becomes [`FetchError::Refused`]: a
    /// server refuses a key right after the handshake, so the requester meets the refusal on
    /// its first request.
    fn from(e: StreamError) -> Self {
        if let StreamError::Lost(quinn::ConnectionError::ApplicationClosed(c)) = &e {
            let code = c.error_code.into_inner();
            if code == u64::from(CLOSE_REFUSED) || code == u64::from(CLOSE_FULL) {
                return Self::Refused(code as u32);
            }
        }
        Self::Stream(e)
    }
}

impl From<quinn::ReadExactError> for FetchError {
    fn from(e: quinn::ReadExactError) -> Self {
        StreamError::from(e).into()
    }
}

struct Exchange {
    _send: quinn::SendStream,
    recv: quinn::RecvStream,
}

impl PeerConnection {
    async fn exchange(&self, request: &Request) -> Result<Exchange, FetchError> {
        let (mut send, mut recv) = self
            .conn
            .open_bi()
            .await
            .map_err(|e| FetchError::from(StreamError::Lost(e)))?;
        let enc = request.encode();
        let mut buf = RecordWriter::buffer(enc.len());
        buf[RECORD_HEADER_LEN..].copy_from_slice(&enc);
        RecordWriter::new(&mut send, &self.keys)
            .send(RecordKind::Request, buf)
            .await?;
        let _ = send.finish();
        let mut status = [0u8; 1];
        recv.read_exact(&mut status).await?;
        match Status::from_u8(status[0])
            .map_err(|e| FetchError::Stream(StreamError::Malformed(e)))?
        {
            Status::Ok => Ok(Exchange { _send: send, recv }),
            other => Err(FetchError::Status(other)),
        }
    }

    /// Asks the peer for the manifest of `hash`.
    pub async fn fetch_manifest(&self, hash: FileHash) -> Result<Manifest, FetchError> {
        Ok(self.fetch_manifest_inner(hash, None, false).await?.0)
    }

    /// Asks for the manifest of `hash` and, in the same exchange, the file's last chunk, which
    /// is put in `last_chunk` (unverified: `Transfer::handle_data` checks it). Returns whether
    /// the chunk came (an empty file has none).
    pub async fn fetch_manifest_and_last_chunk(
        &self,
        hash: FileHash,
        accept_lz4: bool,
        last_chunk: &mut Vec<u8>,
    ) -> Result<(Manifest, bool), FetchError> {
        self.fetch_manifest_inner(hash, Some(last_chunk), accept_lz4)
            .await
    }

    async fn fetch_manifest_inner(
        &self,
        hash: FileHash,
        last_chunk: Option<&mut Vec<u8>>,
        accept_lz4: bool,
    ) -> Result<(Manifest, bool), FetchError> {
        let request = Request::Manifest {
            hash,
            with_last_chunk: last_chunk.is_some(),
            accept_lz4,
        };
        let mut ex = self.exchange(&request).await?;
        let mut reader = RecordReader::new(&mut ex.recv, &self.keys);
        let mut encoded = Vec::new();
        let mut buf = vec![0u8; MAX_RECORD_CIPHERTEXT];
        let mut data_header = None;
        while let Some(h) = reader.header().await? {
            if h.kind != RecordKind::Manifest {
                data_header = Some(h);
                break;
            }
            let n = reader.body(h, &mut buf).await?;
            if encoded.len() + n > MAX_MANIFEST_LEN {
                return Err(FetchError::BadManifest(DecodeError::TooLarge));
            }
            encoded.extend_from_slice(&buf[..n]);
        }
        let m = Manifest::decode(&encoded).map_err(FetchError::BadManifest)?;
        if m.hash() != hash {
            return Err(FetchError::WrongManifest);
        }
        match (data_header, last_chunk, m.chunk_count().checked_sub(1)) {
            (None, _, _) => Ok((m, false)),
            (Some(h), Some(out), Some(last)) => {
                let len = m.chunk_range(last).1;
                read_chunk(&mut reader, Some(h), len, accept_lz4, out).await?;
                Ok((m, true))
            }
            _ => Err(StreamError::Unexpected.into()),
        }
    }

    /// Fetches chunk `index` of `manifest`'s file into `out` (resized to the chunk's length).
    /// The bytes are not verified here: `Transfer::handle_data` does that.
    pub async fn fetch_chunk(
        &self,
        manifest: &Manifest,
        index: u32,
        accept_lz4: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), FetchError> {
        let request = Request::Chunks {
            hash: manifest.hash(),
            first: index,
            count: 1,
            accept_lz4,
        };
        let mut ex = self.exchange(&request).await?;
        let mut reader = RecordReader::new(&mut ex.recv, &self.keys);
        read_chunk(
            &mut reader,
            None,
            manifest.chunk_range(index).1,
            accept_lz4,
            out,
        )
        .await
    }
}

/// Reads the records of one chunk of `len` bytes into `out`, then the end of the stream.
/// `first` is a header already read.
async fn read_chunk(
    reader: &mut RecordReader<'_>,
    mut first: Option<RecordHeader>,
    len: usize,
    accept_lz4: bool,
    out: &mut Vec<u8>,
) -> Result<(), FetchError> {
    // Room for the last record's tag, which is decrypted in place.
    out.resize(len + TAG_LEN, 0);
    let mut scratch = Vec::new();
    let mut pos = 0;
    while pos < len {
        let expect = (len - pos).min(RECORD_SIZE);
        let h = match first.take() {
            Some(h) => h,
            None => reader.header().await?.ok_or(FetchError::WrongLength)?,
        };
        match h.kind {
            RecordKind::Data => {
                if h.len as usize != expect + TAG_LEN {
                    return Err(FetchError::WrongLength);
                }
                reader.body(h, &mut out[pos..]).await?;
            }
            RecordKind::DataLz4 if accept_lz4 => {
                scratch.resize(h.len as usize, 0);
                let n = reader.body(h, &mut scratch).await?;
                let got =
                    lz4_flex::block::decompress_into(&scratch[..n], &mut out[pos..pos + expect]);
                if got.ok() != Some(expect) {
                    return Err(FetchError::WrongLength);
                }
            }
            _ => return Err(StreamError::Unexpected.into()),
        }
        pos += expect;
    }
    out.truncate(len);
    if reader.header().await?.is_some() {
        return Err(FetchError::WrongLength);
    }
    Ok(())
}
