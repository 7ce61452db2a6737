//! Answer bodies: what the server sends, parsed (and verified) on the client.

use crate::b64;
use crate::candidate::Candidate;
use crate::json::{BodyError, Fields, Limits, MAX_SAFE_INT};
use crate::key::{KeyError, PublicKey, Signature};
use crate::lookup_id::LookupId;
use crate::name::PlayerName;
use crate::request::{MAX_BATCH, candidates_field};
use crate::signed::{RecordFields, Visibility};
use nanoserde::SerJson;
use std::net::IpAddr;

fn limits() -> Limits {
    Limits {
        max_depth: 4,
        max_values: (16 + crate::candidate::MAX_CANDIDATES) * MAX_BATCH + 16,
        max_string: 256,
    }
}

/// `200` answer to a registration.
#[derive(Debug, Clone, PartialEq, Eq, SerJson)]
pub struct RegisterAnswer {
    /// Always true.
    pub success: bool,
    /// The address the server will hand out (the observed one, or an allowed claim).
    pub ip: String,
    /// The registered port.
    pub port: u16,
    /// Seconds until the record expires unless renewed.
    #[nserde(rename = "expiresIn")]
    pub expires_in: u64,
    /// Seconds after which the client should register again (before `expiresIn`, jittered).
    #[nserde(rename = "reregisterIn")]
    pub reregister_in: u64,
    /// Bearer token for lookups, valid while this registration lives.
    pub token: String,
    /// The phone book's UDP service port at the address the client reached (absent: the
    /// HTTP port; 0: no UDP service). See docs/PROTOCOL.md "UDP service".
    #[nserde(rename = "udpPort")]
    pub udp_port: Option<u16>,
    /// The TCP port of the phone book's relay (docs/PROTOCOL.md "Relay"), at `relayHost` or
    /// else the host the client reached; absent or 0: no relay.
    #[nserde(rename = "relayPort")]
    pub relay_port: Option<u16>,
    /// The relay's host name or address when it runs elsewhere.
    #[nserde(rename = "relayHost")]
    pub relay_host: Option<String>,
    /// Lowercase hex SHA-256 of the relay's TLS certificate (DER): the client accepts exactly
    /// that certificate.
    #[nserde(rename = "relayCert")]
    pub relay_cert: Option<String>,
}

impl RegisterAnswer {
    /// Parses the answer.
    pub fn from_json(body: &[u8]) -> Result<Self, BodyError> {
        let mut f = Fields::parse(body, limits())?;
        let a = RegisterAnswer {
            success: f.opt_bool("success")?.unwrap_or(false),
            ip: f.str("ip")?,
            port: f.int("port", 1..=65535)? as u16,
            expires_in: f.int("expiresIn", 0..=MAX_SAFE_INT)?,
            reregister_in: f.int("reregisterIn", 0..=MAX_SAFE_INT)?,
            token: f.str("token")?,
            udp_port: f.opt_int("udpPort", 0..=65535)?.map(|p| p as u16),
            relay_port: f.opt_int("relayPort", 0..=65535)?.map(|p| p as u16),
            relay_host: f.opt_str("relayHost")?,
            relay_cert: f.opt_str("relayCert")?,
        };
        f.ignore_rest();
        Ok(a)
    }
}

/// One player's record in a lookup answer: the address plus the owner's signed fields, so the
/// requester can check name -> key -> port without trusting the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupRecord {
    /// The player's blinded name.
    pub id: LookupId,
    /// The name, when the lookup asked by name (the server echoes it; it never stores it).
    pub name: Option<PlayerName>,
    /// The owner's address (observed by the server; not covered by the signature).
    pub ip: IpAddr,
    /// The owner's QUIC port.
    pub port: u16,
    /// The owner's key.
    pub key: PublicKey,
    /// The owner's visibility choice.
    pub visibility: Visibility,
    /// Digest of the owner's friend list (the list itself is never revealed).
    pub friends_digest: [u8; 32],
    /// The addresses at which the owner may be reached, signed (empty: a version-1 record).
    pub candidates: Vec<Candidate>,
    /// Unix milliseconds when the owner signed.
    pub timestamp: u64,
    /// The owner's signature.
    pub signature: Signature,
    /// Seconds until the record expires.
    pub expires_in: u64,
}

/// The JSON form of a [`LookupRecord`].
#[derive(Debug, SerJson)]
pub struct LookupRecordWire {
    /// See [`LookupRecord::id`].
    #[nserde(rename = "lookupId")]
    pub lookup_id: String,
    /// See [`LookupRecord::name`] (absent for a lookup by id).
    #[nserde(rename = "playerName")]
    pub player_name: Option<String>,
    /// See [`LookupRecord::ip`].
    pub ip: String,
    /// See [`LookupRecord::port`].
    pub port: u16,
    /// See [`LookupRecord::key`].
    #[nserde(rename = "publicKey")]
    pub public_key: String,
    /// See [`LookupRecord::visibility`].
    pub visibility: String,
    /// See [`LookupRecord::friends_digest`].
    #[nserde(rename = "friendsDigest")]
    pub friends_digest: String,
    /// See [`LookupRecord::candidates`] (absent when empty).
    pub candidates: Option<Vec<String>>,
    /// See [`LookupRecord::timestamp`].
    pub timestamp: u64,
    /// See [`LookupRecord::signature`].
    pub signature: String,
    /// See [`LookupRecord::expires_in`].
    #[nserde(rename = "expiresIn")]
    pub expires_in: u64,
}

/// Why a lookup answer was not accepted by a client.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordError {
    /// The body is malformed.
    Body(BodyError),
    /// The record is for another name than the one asked for.
    WrongName,
    /// The owner's signature does not verify: the phone book lied or the record was altered.
    Signature(KeyError),
}

impl core::fmt::Display for RecordError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RecordError::Body(e) => write!(f, "malformed lookup answer: {e}"),
            RecordError::WrongName => f.write_str("lookup answer is for another player"),
            RecordError::Signature(e) => write!(f, "lookup answer not signed by its owner: {e}"),
        }
    }
}

impl std::error::Error for RecordError {}

impl LookupRecord {
    /// The fields the owner signed, in the form of record version 3 (by id) or, given the
    /// name, of versions 1 and 2.
    pub fn fields<'a>(&'a self, name: Option<&'a PlayerName>) -> RecordFields<'a> {
        RecordFields {
            id: &self.id,
            name,
            key: &self.key,
            port: self.port,
            visibility: self.visibility,
            friends_digest: self.friends_digest,
            candidates: &self.candidates,
            timestamp: self.timestamp,
        }
    }

    /// Checks the owner's signature over id (or name), key, port, visibility, candidates and
    /// timestamp. A record registered by id signs the version-3 message; one registered by name
    /// (the original plan's form) signs the name, which only a client that knows it can check:
    /// `name` is tried when the id form fails.
    pub fn verify(&self, name: Option<&PlayerName>) -> Result<(), KeyError> {
        let by_id = self
            .key
            .verify(&self.fields(None).message(), &self.signature);
        match (by_id, name) {
            (Ok(()), _) => Ok(()),
            (Err(_), Some(n)) => self
                .key
                .verify(&self.fields(Some(n)).message(), &self.signature),
            (Err(e), None) => Err(e),
        }
    }

    /// The JSON form.
    pub fn to_wire(&self) -> LookupRecordWire {
        LookupRecordWire {
            lookup_id: self.id.to_text(),
            player_name: self.name.as_ref().map(|n| n.as_str().to_owned()),
            ip: self.ip.to_string(),
            port: self.port,
            public_key: self.key.to_base64(),
            visibility: self.visibility.as_str().to_owned(),
            friends_digest: b64::encode(&self.friends_digest),
            candidates: (!self.candidates.is_empty())
                .then(|| self.candidates.iter().map(Candidate::to_string).collect()),
            timestamp: self.timestamp,
            signature: self.signature.to_base64(),
            expires_in: self.expires_in,
        }
    }

    /// The JSON text.
    pub fn to_json(&self) -> String {
        self.to_wire().serialize_json()
    }

    fn from_fields(mut f: Fields) -> Result<Self, BodyError> {
        let inv = |field: &'static str, e: &dyn core::fmt::Display| {
            BodyError::Invalid(field, e.to_string())
        };
        let id = LookupId::parse(&f.str("lookupId")?).map_err(|e| inv("lookupId", &e))?;
        let name = f
            .opt_str("playerName")?
            .map(|t| PlayerName::parse(&t).map_err(|e| inv("playerName", &e)))
            .transpose()?;
        let ip = f
            .str("ip")?
            .parse()
            .map_err(|e: std::net::AddrParseError| inv("ip", &e))?;
        let port = f.int("port", 1..=65535)? as u16;
        let key = PublicKey::from_base64(&f.str("publicKey")?).map_err(|e| inv("publicKey", &e))?;
        let visibility = Visibility::parse(&f.str("visibility")?)
            .ok_or_else(|| inv("visibility", &"unknown visibility"))?;
        let friends_digest = b64::decode_exact::<32>(&f.str("friendsDigest")?)
            .ok_or_else(|| inv("friendsDigest", &"not base64 of 32 bytes"))?;
        let candidates = candidates_field(&mut f)?;
        let timestamp = f.int("timestamp", 0..=MAX_SAFE_INT)?;
        let signature =
            Signature::from_base64(&f.str("signature")?).map_err(|e| inv("signature", &e))?;
        let expires_in = f.int("expiresIn", 0..=MAX_SAFE_INT)?;
        f.ignore_rest();
        Ok(LookupRecord {
            id,
            name,
            ip,
            port,
            key,
            visibility,
            friends_digest,
            candidates,
            timestamp,
            signature,
            expires_in,
        })
    }

    /// Parses a `GET /api/lookup/{name}` answer without checking it.
    pub fn from_json(body: &[u8]) -> Result<Self, BodyError> {
        Self::from_fields(Fields::parse(body, limits())?)
    }

    /// Parses an answer for `asked` and checks the owner's signature: what a client should use.
    pub fn from_json_verified(body: &[u8], asked: &PlayerName) -> Result<Self, RecordError> {
        let r = Self::from_json(body).map_err(RecordError::Body)?;
        r.check(asked)?;
        Ok(r)
    }

    /// Checks that the record is for `asked` (its id, and its echoed name if any) and that the
    /// owner signed it.
    pub fn check(&self, asked: &PlayerName) -> Result<(), RecordError> {
        if self.id != LookupId::of(asked) || self.name.as_ref().is_some_and(|n| n != asked) {
            return Err(RecordError::WrongName);
        }
        self.verify(Some(asked)).map_err(RecordError::Signature)
    }
}

/// `200` answer to `POST /api/lookup`: the records found and visible to the requester, in the
/// order asked. Names absent or hidden are simply not listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchAnswer {
    /// The records.
    pub found: Vec<LookupRecord>,
}

#[derive(SerJson)]
struct BatchAnswerWire {
    found: Vec<LookupRecordWire>,
}

impl BatchAnswer {
    /// The JSON text.
    pub fn to_json(&self) -> String {
        BatchAnswerWire {
            found: self.found.iter().map(LookupRecord::to_wire).collect(),
        }
        .serialize_json()
    }

    /// Parses the answer (each record still needs [`LookupRecord::verify`]).
    pub fn from_json(body: &[u8]) -> Result<Self, BodyError> {
        let mut f = Fields::parse(body, limits())?;
        let items = f
            .opt_obj_array("found", MAX_BATCH)?
            .ok_or(BodyError::Missing("found"))?;
        f.ignore_rest();
        let found = items
            .into_iter()
            .map(LookupRecord::from_fields)
            .collect::<Result<_, _>>()?;
        Ok(BatchAnswer { found })
    }
}

/// `200` answer to `GET /api/health`.
#[derive(Debug, Clone, PartialEq, Eq, SerJson)]
pub struct Health {
    /// `"ok"`, or `"degraded"` when the shared store (Redis) is unreachable: lookups are
    /// answered, registrations get 503.
    pub status: String,
    /// With a shared store only: `"up"` or `"down"` (absent without one).
    pub redis: Option<String>,
    /// Live registrations.
    #[nserde(rename = "activeUsers")]
    pub active_users: u64,
    /// Most live registrations the server holds.
    pub capacity: u64,
    /// Seconds a registration lives unless renewed.
    pub ttl: u64,
    /// Seconds since the server started.
    pub uptime: u64,
    /// Server version.
    pub version: String,
}

impl Health {
    /// Parses the answer.
    pub fn from_json(body: &[u8]) -> Result<Self, BodyError> {
        let mut f = Fields::parse(body, limits())?;
        let h = Health {
            status: f.str("status")?,
            redis: f.opt_str("redis")?,
            active_users: f.int("activeUsers", 0..=MAX_SAFE_INT)?,
            capacity: f.int("capacity", 0..=MAX_SAFE_INT)?,
            ttl: f.int("ttl", 0..=MAX_SAFE_INT)?,
            uptime: f.int("uptime", 0..=MAX_SAFE_INT)?,
            version: f.str("version")?,
        };
        f.ignore_rest();
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Keypair, Register};
    use proptest::prelude::*;

    fn record() -> LookupRecord {
        let kp = Keypair::from_seed(&[5; 32]);
        let reg = Register::sign_friends(
            &kp,
            PlayerName::parse("Alice Smith@Gilgamesh").unwrap(),
            5000,
            vec![Keypair::from_seed(&[6; 32]).public()],
            [0x5a; 32],
            42,
        )
        .with_candidates(
            &kp,
            vec![
                Candidate::parse("lan 10.1.0.2:7000").unwrap(),
                Candidate::parse("v6 [2001:db8::2]:7000").unwrap(),
            ],
        );
        LookupRecord {
            id: reg.id,
            name: reg.name.clone(),
            ip: "2001:db8::1".parse().unwrap(),
            port: reg.port,
            key: reg.key,
            visibility: reg.visibility,
            friends_digest: reg.fields().friends_digest,
            candidates: reg.candidates.clone(),
            timestamp: reg.timestamp,
            signature: reg.signature,
            expires_in: 100,
        }
    }

    #[test]
    fn candidates_are_signed() {
        let r = record();
        assert!(
            r.fields(None)
                .message()
                .starts_with(b"ffxiv-p2p-phonebook/3 register\n")
        );
        assert_eq!(r.verify(None), Ok(()));
        let mut moved = r.clone();
        moved.candidates[0] = Candidate::parse("lan 10.1.0.3:7000").unwrap();
        assert!(
            moved.verify(None).is_err(),
            "a changed candidate must break the signature"
        );
        let mut fewer = r.clone();
        fewer.candidates.pop();
        assert!(
            fewer.verify(None).is_err(),
            "a dropped candidate must break the signature"
        );
        let mut none = r;
        none.candidates.clear();
        assert!(
            none.verify(None).is_err(),
            "a dropped candidate list must break the signature"
        );
    }

    #[test]
    fn records_signed_by_name_verify_only_with_the_name() {
        let kp = Keypair::from_seed(&[5; 32]);
        let name = PlayerName::parse("Alice Smith@Gilgamesh").unwrap();
        let reg =
            Register::sign_public(&kp, name.clone(), 5000, 42).signed_by_name(&kp, name.clone());
        let mut r = record();
        r.visibility = reg.visibility;
        r.friends_digest = reg.friends_digest();
        r.candidates.clear();
        r.signature = reg.signature;
        r.name = None;
        assert!(
            r.fields(Some(&name))
                .message()
                .starts_with(b"ffxiv-p2p-phonebook/1 register\n")
        );
        assert!(
            r.verify(None).is_err(),
            "a name-signed record needs the name"
        );
        assert_eq!(r.verify(Some(&name)), Ok(()));
        let other = PlayerName::parse("Bob Jones@Gilgamesh").unwrap();
        assert!(r.verify(Some(&other)).is_err());
        assert_eq!(
            LookupRecord::from_json_verified(r.to_json().as_bytes(), &name),
            Ok(r)
        );
    }

    #[test]
    fn record_roundtrip_and_verification() {
        let r = record();
        let asked = PlayerName::parse("alice smith@gilgamesh").unwrap();
        let json = r.to_json();
        assert!(
            !json.contains("playerName"),
            "a record by id carries no name: {json}"
        );
        // An echoed name must be the one asked for.
        let mut echoed = r.clone();
        echoed.name = Some(PlayerName::parse("Bob Jones@Gilgamesh").unwrap());
        assert_eq!(
            LookupRecord::from_json_verified(echoed.to_json().as_bytes(), &asked),
            Err(RecordError::WrongName)
        );
        assert_eq!(
            LookupRecord::from_json_verified(json.as_bytes(), &asked),
            Ok(r.clone())
        );
        let other = PlayerName::parse("Bob Jones@Gilgamesh").unwrap();
        assert_eq!(
            LookupRecord::from_json_verified(json.as_bytes(), &other),
            Err(RecordError::WrongName)
        );
        // A lying phone book changes the port: caught.
        let lie = json.replace("\"port\":5000", "\"port\":5001");
        assert!(matches!(
            LookupRecord::from_json_verified(lie.as_bytes(), &asked),
            Err(RecordError::Signature(_))
        ));
        let batch = BatchAnswer {
            found: vec![r.clone(), r],
        };
        assert_eq!(
            BatchAnswer::from_json(batch.to_json().as_bytes()),
            Ok(batch)
        );
    }

    #[test]
    fn health_and_register_answers_roundtrip() {
        let mut h = Health {
            status: "ok".into(),
            redis: None,
            active_users: 3,
            capacity: 10,
            ttl: 3600,
            uptime: 5,
            version: "0.1.0".into(),
        };
        assert!(!h.serialize_json().contains("redis"));
        assert_eq!(
            Health::from_json(h.serialize_json().as_bytes()),
            Ok(h.clone())
        );
        h.status = "degraded".into();
        h.redis = Some("down".into());
        assert_eq!(Health::from_json(h.serialize_json().as_bytes()), Ok(h));
        let a = RegisterAnswer {
            success: true,
            ip: "192.0.2.1".into(),
            port: 9,
            expires_in: 3600,
            reregister_in: 3000,
            token: "abc".into(),
            udp_port: None,
            relay_port: None,
            relay_host: None,
            relay_cert: None,
        };
        assert!(!a.serialize_json().contains("udpPort"));
        assert!(!a.serialize_json().contains("relay"));
        assert_eq!(
            RegisterAnswer::from_json(a.serialize_json().as_bytes()),
            Ok(a.clone())
        );
        let with_udp = RegisterAnswer {
            udp_port: Some(8080),
            relay_port: Some(443),
            relay_host: Some("relay.example.org".into()),
            relay_cert: Some("ab".repeat(32)),
            ..a
        };
        assert_eq!(
            RegisterAnswer::from_json(with_udp.serialize_json().as_bytes()),
            Ok(with_udp)
        );
    }

    proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let asked = PlayerName::parse("Alice Smith@Gilgamesh").unwrap();
            let _ = LookupRecord::from_json_verified(&bytes, &asked);
            let _ = BatchAnswer::from_json(&bytes);
            let _ = Health::from_json(&bytes);
            let _ = RegisterAnswer::from_json(&bytes);
        }
    }
}
