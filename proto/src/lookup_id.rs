//! Blinded lookup ids: what the phone book stores and indexes instead of character names
//! (normative; docs/PROTOCOL.md "Lookup ids").
//!
//! `lookupId = HMAC-SHA-256(key = LOOKUP_ID_KEY, message = canonical name)`, 32 bytes, written as
//! unpadded URL-safe base64 (43 characters). The key is a fixed, public protocol constant: the id
//! is a pseudonym, not a secret. It keeps names out of the phone book's table, snapshots, Redis
//! and logs, so that a dump or a log line does not list who plays; someone who already has a
//! list of candidate names can still hash them and compare (docs/PROTOCOL.md "What the phone
//! book reveals" says what that means and what guards the players instead).

use crate::name::PlayerName;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use core::fmt;
use sha2::{Digest, Sha256};

/// The HMAC key of lookup ids (ASCII, 35 bytes).
pub const LOOKUP_ID_KEY: &[u8] = b"ffxiv-p2p-phonebook/1 lookup-id key";

/// Length of a lookup id's text form.
pub const LOOKUP_ID_TEXT_LEN: usize = 43;

/// A blinded player name. Two spellings of one name (any case) have the same id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LookupId(pub [u8; 32]);

/// Why a text is not a lookup id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LookupIdError;

impl fmt::Display for LookupIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a lookup id is 43 characters of unpadded URL-safe base64 (32 bytes)")
    }
}

impl std::error::Error for LookupIdError {}

/// HMAC-SHA-256 (RFC 2104) of `msg` under a key of at most 64 bytes.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    debug_assert!(key.len() <= 64);
    let mut k = [0u8; 64];
    k[..key.len()].copy_from_slice(key);
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

impl LookupId {
    /// The id of `name` (its canonical lowercase form is hashed).
    pub fn of(name: &PlayerName) -> Self {
        LookupId(hmac_sha256(LOOKUP_ID_KEY, name.canonical().as_bytes()))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The text form: unpadded URL-safe base64, 43 characters.
    pub fn to_text(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Parses the text form strictly (exactly 43 characters of the URL-safe alphabet, zero
    /// trailing bits).
    pub fn parse(text: &str) -> Result<Self, LookupIdError> {
        if text.len() != LOOKUP_ID_TEXT_LEN {
            return Err(LookupIdError);
        }
        let mut out = [0u8; 33];
        match URL_SAFE_NO_PAD.decode_slice(text, &mut out) {
            Ok(32) => Ok(LookupId(out[..32].try_into().expect("32 bytes"))),
            _ => Err(LookupIdError),
        }
    }

    /// The first 6 characters of the text form: enough to tell records apart in a debug log,
    /// too few to be matched against a list of names with any confidence.
    pub fn short(&self) -> String {
        self.to_text()[..6].to_owned()
    }
}

impl fmt::Debug for LookupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LookupId({})", self.to_text())
    }
}

impl fmt::Display for LookupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn id_ignores_case_and_matches_the_documented_vector() {
        let a = PlayerName::parse("Y'shtola Rhul@Gilgamesh").unwrap();
        let b = PlayerName::parse("y'SHTOLA rhul@gilgamesh").unwrap();
        assert_eq!(LookupId::of(&a), LookupId::of(&b));
        // docs/PROTOCOL.md "Lookup ids"; independently: python3 -c "import hmac,hashlib,base64;
        // print(base64.urlsafe_b64encode(hmac.new(b'ffxiv-p2p-phonebook/1 lookup-id key',
        // b\"y'shtola rhul@gilgamesh\", hashlib.sha256).digest()).decode().rstrip('='))"
        assert_eq!(
            LookupId::of(&a).to_text(),
            include_str!("lookup_id_ref.txt").trim()
        );
        let c = PlayerName::parse("Krile Baldesion@Gilgamesh").unwrap();
        assert_ne!(LookupId::of(&a), LookupId::of(&c));
    }

    #[test]
    fn parse_is_strict() {
        let id = LookupId([0xfb; 32]);
        let t = id.to_text();
        assert_eq!(t.len(), 43);
        assert_eq!(LookupId::parse(&t), Ok(id));
        assert!(LookupId::parse(&format!("{t}=")).is_err());
        assert!(LookupId::parse(&t.replace('-', "+")).is_err());
        assert!(LookupId::parse(&t[1..]).is_err());
        assert!(LookupId::parse("").is_err());
        // Non-zero trailing bits in the last symbol.
        let mut bad = t.into_bytes();
        bad[42] = b'9';
        assert!(LookupId::parse(std::str::from_utf8(&bad).unwrap()).is_err());
    }

    proptest! {
        #[test]
        fn roundtrip(bytes in proptest::array::uniform32(any::<u8>())) {
            let id = LookupId(bytes);
            prop_assert_eq!(LookupId::parse(&id.to_text()), Ok(id));
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,60}") {
            let _ = LookupId::parse(&s);
        }
    }
}
