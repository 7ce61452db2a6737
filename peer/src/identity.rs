//! A player's identity: an Ed25519 key pair made once, saved owner-only, loaded on start.
//! The public key ([`PeerId`]) is the identity; the secret zeroizes on drop and never prints.

use std::fmt;
use std::io;
use std::path::Path;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use zeroize::Zeroizing;

use crate::storage::fs_util::write_durable;

/// A player's public key: a validated Ed25519 point.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId([u8; 32]);

impl PeerId {
    /// Checks that the bytes are a valid Ed25519 point.
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, BadKey> {
        VerifyingKey::from_bytes(&bytes).map_err(|_| BadKey)?;
        Ok(Self(bytes))
    }

    /// The 32 key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The key as an ed25519-dalek key.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey::from_bytes(&self.0).expect("checked when built")
    }

    /// Strict Ed25519 verification of `sig` over `msg` by this key.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Ok(sig) = Signature::from_slice(sig) else {
            return false;
        };
        self.verifying_key().verify_strict(msg, &sig).is_ok()
    }

    /// A short form for logs: the first 8 base64 characters.
    pub fn short(&self) -> String {
        let mut s = self.to_string();
        s.truncate(8);
        s
    }
}

impl fmt::Display for PeerId {
    /// Standard padded base64, as the phone book writes keys.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&STANDARD.encode(self.0))
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", self.short())
    }
}

/// Bytes or text that are not an Ed25519 public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadKey;

impl fmt::Display for BadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not an Ed25519 public key (standard padded base64 of 32 bytes)")
    }
}

impl std::error::Error for BadKey {}

impl FromStr for PeerId {
    type Err = BadKey;
    fn from_str(s: &str) -> Result<Self, BadKey> {
        let bytes = STANDARD.decode(s.trim()).map_err(|_| BadKey)?;
        Self::from_bytes(bytes.try_into().map_err(|_| BadKey)?)
    }
}

/// The key pair. `Debug` shows the public key only.
pub struct Identity {
    secret: SigningKey,
    id: PeerId,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

const FILE_TAG: &str = "ffxiv-p2p-identity-v1";

/// Loading or saving the identity failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum IdentityError {
    /// Reading or writing the file failed.
    Io(io::Error),
    /// The file is not an identity file.
    Malformed,
    /// The file can be read by others than its owner (the secret may have leaked).
    Permissions(u32),
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "identity file: {e}"),
            Self::Malformed => f.write_str("identity file is malformed"),
            Self::Permissions(m) => {
                write!(
                    f,
                    "identity file has mode {m:o}: it must be readable by its owner only (chmod 600)"
                )
            }
        }
    }
}

impl std::error::Error for IdentityError {}

impl From<io::Error> for IdentityError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl Identity {
    /// A new random key pair from the OS's generator.
    pub fn generate() -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut *seed).expect("OS random generator");
        Self::from_seed(&seed)
    }

    /// The key pair of a 32-byte seed (tests and test vectors).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let secret = SigningKey::from_bytes(seed);
        let id = PeerId(secret.verifying_key().to_bytes());
        Self { secret, id }
    }

    /// The public key.
    pub fn id(&self) -> PeerId {
        self.id
    }

    /// Signs `msg`.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.secret.sign(msg).to_bytes()
    }

    /// The same key pair in the phone-book protocol crate's form (signs requests).
    pub fn phonebook_keypair(&self) -> phonebook_proto::Keypair {
        phonebook_proto::Keypair::from_seed(self.secret.as_bytes())
    }

    /// The secret as PKCS#8 v1 DER (for TLS); zeroized when dropped.
    pub(crate) fn pkcs8_der(&self) -> Zeroizing<Vec<u8>> {
        const PREFIX: [u8; 16] = [
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        let mut der = Zeroizing::new(Vec::with_capacity(48));
        der.extend_from_slice(&PREFIX);
        der.extend_from_slice(self.secret.as_bytes());
        der
    }

    /// Loads the identity at `path`, or makes one and saves it there (mode 0600) if the file
    /// does not exist. A file readable by group or others is refused.
    pub fn load_or_create(path: &Path) -> Result<Self, IdentityError> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let text = Zeroizing::new(text);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
                    if mode & 0o077 != 0 {
                        return Err(IdentityError::Permissions(mode));
                    }
                }
                Self::from_file_text(&text)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let id = Self::generate();
                id.save(path)?;
                Ok(id)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Saves the identity durably with mode 0600.
    pub fn save(&self, path: &Path) -> Result<(), IdentityError> {
        let text = Zeroizing::new(format!(
            "{FILE_TAG}\n{}\n",
            STANDARD.encode(self.secret.as_bytes())
        ));
        write_durable(path, text.as_bytes(), 0o600)?;
        Ok(())
    }

    /// Parses the key file's text (what [`Identity::save`] writes).
    pub fn from_file_text(text: &str) -> Result<Self, IdentityError> {
        let mut lines = text.lines();
        if lines.next() != Some(FILE_TAG) {
            return Err(IdentityError::Malformed);
        }
        let b64 = lines.next().ok_or(IdentityError::Malformed)?;
        if lines.next().is_some() {
            return Err(IdentityError::Malformed);
        }
        let bytes = Zeroizing::new(STANDARD.decode(b64).map_err(|_| IdentityError::Malformed)?);
        let seed: &[u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| IdentityError::Malformed)?;
        Ok(Self::from_seed(seed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn save_load_round_trip_with_owner_only_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = crate::test_dir("identity");
        let path = dir.join("id.key");
        let a = Identity::load_or_create(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let b = Identity::load_or_create(&path).unwrap();
        assert_eq!(a.id(), b.id());
        let sig = a.sign(b"msg");
        assert!(b.id().verify(b"msg", &sig));
        assert!(!b.id().verify(b"msh", &sig));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            Identity::load_or_create(&path),
            Err(IdentityError::Permissions(0o644))
        ));
    }

    proptest::proptest! {
        #[test]
        fn from_file_text_never_panics(text in "(ffxiv-p2p-identity-v1\n)?[A-Za-z0-9+/=\n]{0,80}") {
            let _ = Identity::from_file_text(&text);
        }
    }

    #[test]
    fn key_file_text_round_trips() {
        let id = Identity::from_seed(&[5; 32]);
        let text = format!("{FILE_TAG}\n{}\n", STANDARD.encode([5u8; 32]));
        assert_eq!(Identity::from_file_text(&text).unwrap().id(), id.id());
        assert!(matches!(
            Identity::from_file_text("nope"),
            Err(IdentityError::Malformed)
        ));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let id = Identity::from_seed(&[7; 32]);
        let shown = format!("{id:?}");
        assert!(!shown.contains(&STANDARD.encode([7u8; 32])));
        assert!(shown.contains(&id.id().short()));
    }

    #[test]
    fn peer_id_text_round_trips_and_refuses_junk() {
        let id = Identity::from_seed(&[1; 32]).id();
        assert_eq!(id.to_string().parse::<PeerId>(), Ok(id));
        assert_eq!(id.to_string().len(), 44);
        assert_eq!("AAAA".parse::<PeerId>(), Err(BadKey));
    }
}
