//! The exact bytes that are signed (normative; docs/PROTOCOL.md "Signed messages").
//!
//! Each message is ASCII text: a domain line naming the protocol version and the operation, then
//! `field:value` lines in a fixed order, each ending in `\n`. No field can contain a newline, so
//! the encoding is unambiguous; the domain line keeps a signature for one operation from being
//! valid for another or for any other protocol.

use crate::b64;
use crate::candidate::{Candidate, signed_text};
use crate::key::{FriendKey, PublicKey};
use crate::lookup_id::LookupId;
use crate::name::PlayerName;
use sha2::{Digest, Sha256};

/// Domain line of a registration.
pub const REGISTER_DOMAIN: &str = "ffxiv-p2p-phonebook/1 register";
/// Domain line of a registration that carries candidates (record version 2).
pub const REGISTER_DOMAIN_V2: &str = "ffxiv-p2p-phonebook/2 register";
/// Domain line of an unregistration.
pub const UNREGISTER_DOMAIN: &str = "ffxiv-p2p-phonebook/1 unregister";
/// Domain line of a registration by lookup id (record version 3): the name never travels.
pub const REGISTER_DOMAIN_V3: &str = "ffxiv-p2p-phonebook/3 register";
/// Domain line of an unregistration by lookup id.
pub const UNREGISTER_DOMAIN_V3: &str = "ffxiv-p2p-phonebook/3 unregister";

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

/// Prefix of the bytes hashed into a friends-only record's `friendsDigest`: keeps the digest
/// from meaning anything to another protocol (docs/PROTOCOL.md "Signed messages").
pub const FRIENDS_DIGEST_DOMAIN: &[u8] = b"ffxiv-p2p-phonebook/1 friends\n";

/// Bytes of a [`FriendsSalt`].
pub const FRIENDS_SALT_LEN: usize = 32;

/// The random value a friends-only registration mixes into its `friendsDigest`, fresh for each
/// registration, so that nobody who sees the digest can test a guessed friend list. It travels
/// in the register body only; the server checks it and forgets it.
pub type FriendsSalt = [u8; FRIENDS_SALT_LEN];

/// The `friendsDigest` of every public record: SHA-256 of nothing.
pub fn public_digest() -> [u8; 32] {
    Sha256::digest(b"").into()
}

/// The `friendsDigest` of a friends-only record: SHA-256 over [`FRIENDS_DIGEST_DOMAIN`], the
/// 32-byte `salt`, then the friend keys sorted bytewise and concatenated (possibly none).
pub fn friends_digest(salt: &FriendsSalt, friends: &[FriendKey]) -> [u8; 32] {
    let mut sorted: Vec<&FriendKey> = friends.iter().collect();
    sorted.sort_unstable();
    let mut h = Sha256::new();
    h.update(FRIENDS_DIGEST_DOMAIN);
    h.update(salt);
    for k in sorted {
        h.update(k.as_bytes());
    }
    h.finalize().into()
}

/// The fields of a registration that the owner signs and that every lookup answer carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFields<'a> {
    /// The player's blinded name: what a version-3 message signs.
    pub id: &'a LookupId,
    /// The player's name, for the messages of versions 1 and 2, which sign its canonical
    /// lowercase form (`None`: version 3, by id).
    pub name: Option<&'a PlayerName>,
    /// The owner's key.
    pub key: &'a PublicKey,
    /// The owner's QUIC port.
    pub port: u16,
    /// Who may look the owner up.
    pub visibility: Visibility,
    /// [`public_digest`] for a public record, else [`friends_digest`] of the salted list.
    pub friends_digest: [u8; 32],
    /// The addresses at which the owner may be reached (none: a version-1 record).
    pub candidates: &'a [Candidate],
    /// Unix time in milliseconds when the owner signed.
    pub timestamp: u64,
}

impl RecordFields<'_> {
    /// The bytes a registration signs: by id, version 3 (an `id:` line instead of the name,
    /// and a `candidates:` line, empty or not); by name, version 1 without candidates,
    /// version 2 (another domain line, and a `candidates:` line before the timestamp) with them.
    pub fn message(&self) -> Vec<u8> {
        let Some(name) = self.name else {
            return format!(
                "{REGISTER_DOMAIN_V3}\nid:{}\nkey:{}\nport:{}\nvisibility:{}\nfriends:{}\ncandidates:{}\ntimestamp:{}\n",
                self.id.to_text(),
                self.key.to_base64(),
                self.port,
                self.visibility.as_str(),
                b64::encode(&self.friends_digest),
                signed_text(self.candidates),
                self.timestamp
            )
            .into_bytes();
        };
        if !self.candidates.is_empty() {
            return format!(
                "{REGISTER_DOMAIN_V2}\nname:{}\nkey:{}\nport:{}\nvisibility:{}\nfriends:{}\ncandidates:{}\ntimestamp:{}\n",
                name.canonical(),
                self.key.to_base64(),
                self.port,
                self.visibility.as_str(),
                b64::encode(&self.friends_digest),
                signed_text(self.candidates),
                self.timestamp
            )
            .into_bytes();
        }
        format!(
            "{REGISTER_DOMAIN}\nname:{}\nkey:{}\nport:{}\nvisibility:{}\nfriends:{}\ntimestamp:{}\n",
            name.canonical(),
            self.key.to_base64(),
            self.port,
            self.visibility.as_str(),
            b64::encode(&self.friends_digest),
            self.timestamp
        )
        .into_bytes()
    }
}

/// The bytes an unregistration by id (version 3) signs.
pub fn unregister_message_id(id: &LookupId, key: &PublicKey, timestamp: u64) -> Vec<u8> {
    format!(
        "{UNREGISTER_DOMAIN_V3}\nid:{}\nkey:{}\ntimestamp:{}\n",
        id.to_text(),
        key.to_base64(),
        timestamp
    )
    .into_bytes()
}

/// The bytes an unregistration by name (version 1) signs.
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
    fn digest_ignores_order_and_depends_on_the_salt() {
        let a: FriendKey = crate::Keypair::from_seed(&[1; 32]).public().into();
        let b: FriendKey = crate::Keypair::from_seed(&[2; 32]).public().into();
        let salt = [7; 32];
        assert_eq!(
            friends_digest(&salt, &[a, b]),
            friends_digest(&salt, &[b, a])
        );
        assert_ne!(friends_digest(&salt, &[a]), friends_digest(&salt, &[b]));
        assert_ne!(friends_digest(&salt, &[a]), friends_digest(&[8; 32], &[a]));
        assert_eq!(
            b64::encode(&public_digest()),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }

    proptest::proptest! {
        /// Without the salt, a guessed list can't be confirmed: any change of salt changes
        /// the digest, and no salted digest equals the old unsalted one.
        #[test]
        fn digest_depends_on_the_salt(
            s1 in proptest::prelude::any::<[u8; 32]>(),
            s2 in proptest::prelude::any::<[u8; 32]>(),
            keys in proptest::collection::vec(proptest::prelude::any::<[u8; 32]>(), 0..8),
        ) {
            let keys: Vec<FriendKey> = keys.into_iter().map(FriendKey).collect();
            let mut sorted = keys.clone();
            sorted.sort_unstable();
            let unsalted: [u8; 32] = Sha256::digest(sorted.iter().flat_map(|k| *k.as_bytes()).collect::<Vec<u8>>()).into();
            proptest::prop_assert_ne!(friends_digest(&s1, &keys), unsalted);
            if s1 != s2 {
                proptest::prop_assert_ne!(friends_digest(&s1, &keys), friends_digest(&s2, &keys));
            }
        }
    }
}
