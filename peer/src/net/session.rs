//! Per-session encryption of mod data, inside QUIC's own.
//!
//! QUIC already encrypts every packet between the two endpoints. This second layer is for the
//! paths a later issue adds (a relay, a TCP fallback) that may terminate or carry the transport:
//! whatever carries the records can never read them. Keys come from the TLS exporter of the
//! mutually authenticated handshake with both public keys as context, one key per direction.
//! The cipher is negotiated through ALPN: AES-256-GCM where the CPU has AES instructions,
//! ChaCha20-Poly1305 otherwise (a Pi 4); the server's preference wins.
//!
//! Since the relay carries QUIC packets end to end (it never terminates QUIC, see
//! [`crate::net::relay`]), nothing between the peers can read the records without this layer,
//! and peers now offer [`Cipher::QuicOnly`] first: the same records, unsealed, with an
//! all-zero tag. The README ("Transfer speed") gives what the layer cost.

use std::fmt;

use ring::aead::{AES_256_GCM, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};

use crate::identity::PeerId;
use crate::transfer::wire::TAG_LEN;

/// ALPN of the transfer protocol with AES-256-GCM records.
pub const ALPN_AES: &[u8] = b"ffxiv-p2p/1+aes256gcm";
/// ALPN of the transfer protocol with ChaCha20-Poly1305 records.
pub const ALPN_CHACHA: &[u8] = b"ffxiv-p2p/1+chacha20poly1305";
/// ALPN of the transfer protocol whose records rely on QUIC's encryption alone: the same
/// record format, the tag all zeros.
pub const ALPN_QUIC_ONLY: &[u8] = b"ffxiv-p2p/1+quic-only";
const EXPORTER_LABEL: &[u8] = b"EXPORTER-ffxiv-p2p session keys v1";

/// The record cipher of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cipher {
    /// AES-256-GCM.
    Aes256Gcm,
    /// ChaCha20-Poly1305.
    ChaCha20Poly1305,
    /// No second layer: QUIC's own packet encryption, end to end between the two
    /// authenticated peers also through a relay (which carries QUIC packets and never holds
    /// their keys). Records keep their format with an all-zero tag.
    QuicOnly,
}

impl Cipher {
    /// AES-256-GCM if this CPU has AES instructions, else ChaCha20-Poly1305.
    pub fn preferred() -> Self {
        #[cfg(target_arch = "x86_64")]
        let aes = std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq");
        #[cfg(target_arch = "aarch64")]
        let aes = std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull");
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        let aes = false;
        if aes {
            Self::Aes256Gcm
        } else {
            Self::ChaCha20Poly1305
        }
    }

    /// ALPN list in this side's order of preference: `first`, then the others (QUIC alone
    /// before the record ciphers, the CPU's faster cipher before the other), so that a peer
    /// that knows only the record ciphers still agrees on one.
    pub fn alpn_preference(first: Self) -> Vec<Vec<u8>> {
        let aead = match Self::preferred() {
            Self::ChaCha20Poly1305 => [Self::ChaCha20Poly1305, Self::Aes256Gcm],
            _ => [Self::Aes256Gcm, Self::ChaCha20Poly1305],
        };
        let mut order = vec![first];
        for c in [Self::QuicOnly].into_iter().chain(aead) {
            if !order.contains(&c) {
                order.push(c);
            }
        }
        order.into_iter().map(|c| c.alpn().to_vec()).collect()
    }

    /// This cipher's ALPN.
    pub fn alpn(self) -> &'static [u8] {
        match self {
            Self::Aes256Gcm => ALPN_AES,
            Self::ChaCha20Poly1305 => ALPN_CHACHA,
            Self::QuicOnly => ALPN_QUIC_ONLY,
        }
    }

    /// The cipher an agreed ALPN names.
    pub fn from_alpn(alpn: &[u8]) -> Option<Self> {
        match alpn {
            ALPN_AES => Some(Self::Aes256Gcm),
            ALPN_CHACHA => Some(Self::ChaCha20Poly1305),
            ALPN_QUIC_ONLY => Some(Self::QuicOnly),
            _ => None,
        }
    }
}

/// A record failed authentication: it was altered or not sealed with this session's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenError;

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("record failed authentication")
    }
}

impl std::error::Error for OpenError {}

/// The two directional keys of one session.
pub struct SessionKeys {
    cipher: Cipher,
    /// `None` with [`Cipher::QuicOnly`].
    keys: Option<(LessSafeKey, LessSafeKey)>,
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionKeys")
            .field("cipher", &self.cipher)
            .finish_non_exhaustive()
    }
}

impl SessionKeys {
    /// The exporter's label and context: both identities, client first.
    pub fn exporter_input(client: &PeerId, server: &PeerId) -> (&'static [u8], [u8; 64]) {
        let mut ctx = [0u8; 64];
        ctx[..32].copy_from_slice(client.as_bytes());
        ctx[32..].copy_from_slice(server.as_bytes());
        (EXPORTER_LABEL, ctx)
    }

    /// Keys from 64 bytes of exporter output: the first half seals client-to-server records.
    pub fn from_exported(cipher: Cipher, exported: &[u8; 64], is_client: bool) -> Self {
        let alg = match cipher {
            Cipher::Aes256Gcm => &AES_256_GCM,
            Cipher::ChaCha20Poly1305 => &CHACHA20_POLY1305,
            Cipher::QuicOnly => return Self { cipher, keys: None },
        };
        let key = |k: &[u8]| LessSafeKey::new(UnboundKey::new(alg, k).expect("32-byte key"));
        let (c2s, s2c) = (key(&exported[..32]), key(&exported[32..]));
        let keys = if is_client { (c2s, s2c) } else { (s2c, c2s) };
        Self {
            cipher,
            keys: Some(keys),
        }
    }

    /// The session's cipher.
    pub fn cipher(&self) -> Cipher {
        self.cipher
    }

    fn nonce(stream: u64, seq: u32) -> Nonce {
        let mut n = [0u8; 12];
        n[..8].copy_from_slice(&stream.to_be_bytes());
        n[8..].copy_from_slice(&seq.to_be_bytes());
        Nonce::assume_unique_for_key(n)
    }

    /// Encrypts `buf` in place and returns the tag. `(stream, seq)` must never repeat for
    /// this direction: the stream id is unique in a connection and `seq` counts records on it.
    pub fn seal(&self, stream: u64, seq: u32, header: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
        let Some((send, _)) = &self.keys else {
            return [0; TAG_LEN];
        };
        let tag = send
            .seal_in_place_separate_tag(Self::nonce(stream, seq), Aad::from(header), buf)
            .expect("record within AEAD limits");
        tag.as_ref().try_into().expect("16-byte tag")
    }

    /// Authenticates and decrypts `buf` (ciphertext and tag) in place; returns the plaintext.
    pub fn open<'b>(
        &self,
        stream: u64,
        seq: u32,
        header: &[u8],
        buf: &'b mut [u8],
    ) -> Result<&'b mut [u8], OpenError> {
        if buf.len() < TAG_LEN {
            return Err(OpenError);
        }
        let Some((_, recv)) = &self.keys else {
            // QUIC authenticated the bytes; the tag must still be the zeros sent.
            let (plain, tag) = buf.split_at_mut(buf.len() - TAG_LEN);
            return if tag.iter().all(|&b| b == 0) {
                Ok(plain)
            } else {
                Err(OpenError)
            };
        };
        recv.open_in_place(Self::nonce(stream, seq), Aad::from(header), buf)
            .map_err(|_| OpenError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quic_only_records_pass_unsealed_with_a_zero_tag_and_refuse_any_other() {
        let ex = [9u8; 64];
        let (client, server) = (
            SessionKeys::from_exported(Cipher::QuicOnly, &ex, true),
            SessionKeys::from_exported(Cipher::QuicOnly, &ex, false),
        );
        let mut rec = b"mod bytes".to_vec();
        let tag = client.seal(4, 0, b"h", &mut rec);
        assert_eq!(tag, [0; TAG_LEN]);
        assert_eq!(&rec, b"mod bytes");
        rec.extend_from_slice(&tag);
        assert_eq!(
            server.open(4, 0, b"h", &mut rec.clone()).unwrap(),
            b"mod bytes"
        );
        let last = rec.len() - 1;
        rec[last] = 1;
        assert_eq!(server.open(4, 0, b"h", &mut rec), Err(OpenError));
        assert_eq!(server.open(4, 0, b"h", &mut [0u8; 3]), Err(OpenError));
    }

    #[test]
    fn the_preference_lists_every_cipher_once_first_as_asked() {
        for first in [
            Cipher::QuicOnly,
            Cipher::Aes256Gcm,
            Cipher::ChaCha20Poly1305,
        ] {
            let list = Cipher::alpn_preference(first);
            assert_eq!(list.len(), 3);
            assert_eq!(list[0], first.alpn());
            for c in [
                Cipher::QuicOnly,
                Cipher::Aes256Gcm,
                Cipher::ChaCha20Poly1305,
            ] {
                assert!(list.contains(&c.alpn().to_vec()));
                assert_eq!(Cipher::from_alpn(c.alpn()), Some(c));
            }
        }
    }

    #[test]
    fn records_open_only_in_the_other_direction_with_the_same_nonce_and_header() {
        for cipher in [Cipher::Aes256Gcm, Cipher::ChaCha20Poly1305] {
            let ex: [u8; 64] = std::array::from_fn(|i| i as u8);
            let (client, server) = (
                SessionKeys::from_exported(cipher, &ex, true),
                SessionKeys::from_exported(cipher, &ex, false),
            );
            let mut rec = b"mod bytes".to_vec();
            let tag = client.seal(4, 0, b"h", &mut rec);
            rec.extend_from_slice(&tag);
            assert_ne!(&rec[..9], b"mod bytes");
            assert_eq!(
                server.open(4, 0, b"h", &mut rec.clone()).unwrap(),
                b"mod bytes"
            );
            assert_eq!(server.open(4, 1, b"h", &mut rec.clone()), Err(OpenError));
            assert_eq!(server.open(8, 0, b"h", &mut rec.clone()), Err(OpenError));
            assert_eq!(server.open(4, 0, b"x", &mut rec.clone()), Err(OpenError));
            assert_eq!(
                client.open(4, 0, b"h", &mut rec.clone()),
                Err(OpenError),
                "a side cannot open its own records"
            );
        }
    }

    #[test]
    fn alpn_names_map_back() {
        for c in [Cipher::Aes256Gcm, Cipher::ChaCha20Poly1305] {
            let list = Cipher::alpn_preference(c);
            assert_eq!(Cipher::from_alpn(&list[0]), Some(c));
        }
    }
}
