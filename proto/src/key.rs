//! Ed25519 keys and signatures, validated when built.

use crate::b64;
use core::fmt;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};

/// Bytes in a public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Bytes in a signature.
pub const SIGNATURE_LEN: usize = 64;

/// Why a key or signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// Not standard padded base64 of the right length.
    Encoding,
    /// Not a valid Ed25519 point, or a weak (small-order) key.
    InvalidKey,
    /// The signature does not verify (strict RFC 8032 verification).
    BadSignature,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyError::Encoding => "not standard padded base64 of the expected length",
            KeyError::InvalidKey => "not a valid Ed25519 public key",
            KeyError::BadSignature => "signature does not verify",
        })
    }
}

impl std::error::Error for KeyError {}

/// An Ed25519 public key: a valid, non-weak curve point. The decompressed point is kept, so
/// verifying costs no second decompression (measured: a registration paid for two).
#[derive(Clone, Copy)]
pub struct PublicKey([u8; PUBLIC_KEY_LEN], VerifyingKey);

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl Eq for PublicKey {}
impl core::hash::Hash for PublicKey {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}
impl PartialOrd for PublicKey {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for PublicKey {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

impl PublicKey {
    /// Checks the point; weak (small-order) keys are refused.
    pub fn from_bytes(bytes: &[u8; PUBLIC_KEY_LEN]) -> Result<Self, KeyError> {
        let vk = VerifyingKey::from_bytes(bytes).map_err(|_| KeyError::InvalidKey)?;
        if vk.is_weak() {
            return Err(KeyError::InvalidKey);
        }
        Ok(PublicKey(*bytes, vk))
    }

    /// Parses standard padded base64 (44 characters).
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let bytes = b64::decode_exact::<PUBLIC_KEY_LEN>(text).ok_or(KeyError::Encoding)?;
        Self::from_bytes(&bytes)
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.0
    }

    /// Standard padded base64.
    pub fn to_base64(&self) -> String {
        b64::encode(&self.0)
    }

    /// Strict Ed25519 verification of `sig` over `msg`.
    pub fn verify(&self, msg: &[u8], sig: &Signature) -> Result<(), KeyError> {
        let sig = ed25519_dalek::Signature::from_bytes(&sig.0);
        self.1
            .verify_strict(msg, &sig)
            .map_err(|_| KeyError::BadSignature)
    }

    /// Verifies many signatures at once, about twice as fast per signature as one by one
    /// when there are dozens (measured by `pb-verify-bench --batch`). `Ok` means every item
    /// verifies; on `Err` at least one does not, and the caller finds which with
    /// [`PublicKey::verify`].
    ///
    /// Agreement with [`PublicKey::verify`]: every signature that strict verification accepts
    /// is accepted here. The converse holds for every signature made by RFC 8032 signing; the
    /// one kind strict verification refuses and a batch may accept is a signature whose `R`
    /// its signer built with a small-order component (the batch equation is cofactorless with
    /// random weights). Only the holder of the secret key can make one, and since clients
    /// check records strictly, it only spoils that signer's own record. Keys are never weak
    /// here: [`PublicKey::from_bytes`] refuses them.
    pub fn verify_batch(items: &[(&PublicKey, &[u8], &Signature)]) -> Result<(), KeyError> {
        match items {
            [] => Ok(()),
            [(key, msg, sig)] => key.verify(msg, sig),
            _ => {
                let msgs: Vec<&[u8]> = items.iter().map(|i| i.1).collect();
                let sigs: Vec<ed25519_dalek::Signature> = items
                    .iter()
                    .map(|i| ed25519_dalek::Signature::from_bytes(&i.2.0))
                    .collect();
                let keys: Vec<VerifyingKey> = items.iter().map(|i| i.0.1).collect();
                ed25519_dalek::verify_batch(&msgs, &sigs, &keys).map_err(|_| KeyError::BadSignature)
            }
        }
    }

    /// A short form for logs: the first 8 base64 characters.
    pub fn short(&self) -> String {
        let mut s = self.to_base64();
        s.truncate(8);
        s
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.short())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

/// A key in a friend list: 32 bytes, compared as they are and not checked as a curve point.
/// Checking would cost a point decompression per key (measured: about 6 us each, so 0.4 ms
/// for a 64-key list, before the request's signature is even checked) and gains nothing: a
/// friend key that is not a valid key can never equal a requester's key, which is checked.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FriendKey(pub [u8; PUBLIC_KEY_LEN]);

impl FriendKey {
    /// Parses standard padded base64 (44 characters).
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        b64::decode_exact::<PUBLIC_KEY_LEN>(text)
            .map(FriendKey)
            .ok_or(KeyError::Encoding)
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.0
    }

    /// Standard padded base64.
    pub fn to_base64(&self) -> String {
        b64::encode(&self.0)
    }
}

impl From<PublicKey> for FriendKey {
    fn from(k: PublicKey) -> Self {
        FriendKey(k.0)
    }
}

impl From<&PublicKey> for FriendKey {
    fn from(k: &PublicKey) -> Self {
        FriendKey(k.0)
    }
}

impl fmt::Debug for FriendKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.to_base64();
        write!(f, "FriendKey({})", &s[..8])
    }
}

/// An Ed25519 signature (64 bytes). Only its encoding is checked when built.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature([u8; SIGNATURE_LEN]);

impl Signature {
    /// Wraps raw bytes.
    pub fn from_bytes(bytes: [u8; SIGNATURE_LEN]) -> Self {
        Signature(bytes)
    }

    /// Parses standard padded base64 (88 characters).
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        b64::decode_exact::<SIGNATURE_LEN>(text)
            .map(Signature)
            .ok_or(KeyError::Encoding)
    }

    /// The raw 64 bytes.
    pub fn as_bytes(&self) -> &[u8; SIGNATURE_LEN] {
        &self.0
    }

    /// Standard padded base64.
    pub fn to_base64(&self) -> String {
        b64::encode(&self.0)
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.to_base64();
        write!(f, "Signature({}..)", &s[..8])
    }
}

/// A key pair that signs phone-book requests. The secret zeroizes on drop and never prints.
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
}

impl Keypair {
    /// Builds a key pair from a 32-byte secret seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Keypair {
            signing: SigningKey::from_bytes(seed),
        }
    }

    /// The secret seed; handle with care (store with owner-only permissions).
    pub fn seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        let vk = self.signing.verifying_key();
        PublicKey(vk.to_bytes(), vk)
    }

    /// Signs `msg`.
    pub fn sign(&self, msg: &[u8]) -> Signature {
        Signature(self.signing.sign(msg).to_bytes())
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair({}, secret hidden)", self.public().short())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_reject() {
        let kp = Keypair::from_seed(&[1; 32]);
        let pk = kp.public();
        let sig = kp.sign(b"hello");
        assert_eq!(pk.verify(b"hello", &sig), Ok(()));
        assert_eq!(pk.verify(b"hellp", &sig), Err(KeyError::BadSignature));
        let back = PublicKey::from_base64(&pk.to_base64()).unwrap();
        assert_eq!(back, pk);
        assert_eq!(Signature::from_base64(&sig.to_base64()).unwrap(), sig);
        assert!(!format!("{kp:?}").contains(&crate::b64::encode(&[1; 32])));
    }

    #[test]
    fn weak_and_invalid_keys_refused() {
        // The identity point (small order).
        let mut id = [0u8; 32];
        id[0] = 1;
        assert_eq!(PublicKey::from_bytes(&id), Err(KeyError::InvalidKey));
        assert_eq!(PublicKey::from_base64("short"), Err(KeyError::Encoding));
    }

    fn batch_of(n: usize) -> Vec<(PublicKey, Vec<u8>, Signature)> {
        (0..n)
            .map(|i| {
                let kp = Keypair::from_seed(&[i as u8 + 7; 32]);
                let msg = format!("message {i}").into_bytes();
                let sig = kp.sign(&msg);
                (kp.public(), msg, sig)
            })
            .collect()
    }

    fn refs(b: &[(PublicKey, Vec<u8>, Signature)]) -> Vec<(&PublicKey, &[u8], &Signature)> {
        b.iter().map(|(k, m, s)| (k, &m[..], s)).collect()
    }

    proptest::proptest! {
        // 128 cases of up to 12 signatures (the curve crates are optimised in test builds).
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]
        /// A batch verifies exactly when every member verifies alone, whatever is corrupted
        /// (message, either half of the signature, or a swapped key).
        #[test]
        fn batch_agrees_with_strict(
            n in 0usize..12,
            bad in proptest::collection::vec((0usize..12, 0usize..4, 0usize..64, 1u8..=255), 0..3),
        ) {
            let mut b = batch_of(n);
            for (i, what, at, x) in bad {
                if n == 0 { break; }
                let e = &mut b[i % n];
                match what {
                    0 => { let l = e.1.len(); e.1[at % l] ^= x; }
                    1 => e.2.0[at % 32] ^= x,
                    2 => e.2.0[32 + at % 32] ^= x,
                    _ => e.0 = Keypair::from_seed(&[x; 32]).public(),
                }
            }
            let alone = b.iter().all(|(k, m, s)| k.verify(m, s).is_ok());
            proptest::prop_assert_eq!(PublicKey::verify_batch(&refs(&b)).is_ok(), alone);
        }
    }

    /// The one documented disagreement: a signer who knows the secret scalar can make a
    /// signature with the identity as `R`. Strict verification refuses it (small-order `R`);
    /// the batch equation holds. Nobody else can make one for this key.
    #[test]
    fn self_made_small_order_r_is_the_known_divergence() {
        use ed25519_dalek::Digest as _;
        let kp = Keypair::from_seed(&[9; 32]);
        let a = kp.signing.to_scalar();
        let mut r = [0u8; 32];
        r[0] = 1; // the identity, compressed
        let msg = b"self-made";
        let mut h = sha2::Sha512::new();
        h.update(r);
        h.update(kp.public().as_bytes());
        h.update(msg);
        let k = curve25519_dalek::Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&r);
        sig[32..].copy_from_slice((k * a).as_bytes());
        let sig = Signature(sig);
        let pk = kp.public();
        assert_eq!(pk.verify(msg, &sig), Err(KeyError::BadSignature));
        let mut b = batch_of(3);
        let honest = refs(&b);
        let mut items = honest.clone();
        items.push((&pk, msg, &sig));
        assert_eq!(PublicKey::verify_batch(&items), Ok(()));
        // An honest batch still fails when anyone else's signature is off.
        b[1].1.push(b'!');
        assert!(PublicKey::verify_batch(&refs(&b)).is_err());
    }
}
