//! The exact bytes that are signed (normative; docs/PROTOCOL.md "Signed messages").
//!
//! Each message is ASCII text: a domain line naming the protocol version and the operation, then
//! `field:value` lines in a fixed order, each ending in `\n`. No field can contain a newline, so
//! the encoding is unambiguous; the domain line keeps a signature for one operation from being
//! valid for another or for any other protocol.

use crate::b64;
use crate::key::{FriendKey, PublicKey};
use crate::name::PlayerName;
use sha2::{Digest, Sha256};

/// Domain line of a registration.
pub const REGISTER_DOMAIN: &str = "ffxiv-p2p-phonebook/1 register";
/// Domain line of an unregistration.
pub const UNREGISTER_DOMAIN: &str = "ffxiv-p2p-phonebook/1 unregister";

/// Who may learn a registered player's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Visibility {
    /// Any currently registered player.
    Public,
    /// Only the listed keys (and the owner's own key).
    Friends,
}

impl Visibility {
    /// The wire spelling: `public` or `friends`.
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Friends => "friends",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "public" => Some(Visibility::Public),
            "friends" => Some(Visibility::Friends),
            _ => None,
        }
    }
}

/// SHA-256 over the friend keys sorted bytewise and concatenated (the digest of nothing for an
/// empty list, as for every public record).
pub fn friends_digest(friends: &[FriendKey]) -> [u8; 32] {
    let mut sorted: Vec<&FriendKey> = friends.iter().collect();
    sorted.sort_unstable();
    let mut h = Sha256::new();
    for k in sorted {
        h.update(k.as_bytes());
    }
    h.finalize().into()
}

/// The fields of a registration that the owner signs and that every lookup answer carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFields<'a> {
    /// The player (its canonical lowercase form is signed).
    pub name: &'a PlayerName,
    /// The owner's key.
    pub key: &'a PublicKey,
    /// The owner's QUIC port.
    pub port: u16,
    /// Who may look the owner up.
    pub visibility: Visibility,
    /// [`friends_digest`] of the friend list.
    pub friends_digest: [u8; 32],
    /// Unix time in milliseconds when the owner signed.
    pub timestamp: u64,
}

impl RecordFields<'_> {
    /// The bytes a registration signs.
    pub fn message(&self) -> Vec<u8> {
        format!(
            "{REGISTER_DOMAIN}\nname:{}\nkey:{}\nport:{}\nvisibility:{}\nfriends:{}\ntimestamp:{}\n",
            self.name.canonical(),
            self.key.to_base64(),
            self.port,
            self.visibility.as_str(),
            b64::encode(&self.friends_digest),
            self.timestamp
        )
        .into_bytes()
    }
}

/// The bytes an unregistration signs.
pub fn unregister_message(name: &PlayerName, key: &PublicKey, timestamp: u64) -> Vec<u8> {
    format!(
        "{UNREGISTER_DOMAIN}\nname:{}\nkey:{}\ntimestamp:{}\n",
        name.canonical(),
        key.to_base64(),
        timestamp
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_ignores_order() {
        let a: FriendKey = crate::Keypair::from_seed(&[1; 32]).public().into();
        let b: FriendKey = crate::Keypair::from_seed(&[2; 32]).public().into();
        assert_eq!(friends_digest(&[a, b]), friends_digest(&[b, a]));
        assert_ne!(friends_digest(&[a]), friends_digest(&[b]));
        assert_eq!(
            b64::encode(&friends_digest(&[])),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }
}
