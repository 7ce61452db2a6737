//! The wire format of the FFXIV peer-to-peer phone book, shared by the server, the peer library
//! and the load generator: player-name rules, Ed25519 keys, the exact signed bytes, and strict
//! JSON request and answer bodies.
//!
//! It does no I/O and reads no clock: callers pass timestamps in. docs/PROTOCOL.md is the
//! normative description; this crate is its reference implementation.
//!
//! ```
//! use phonebook_proto::{Keypair, PlayerName, Register, Visibility};
//!
//! let me = Keypair::from_seed(&[7; 32]);
//! let name = PlayerName::parse("Alice Smith@Gilgamesh").unwrap();
//! let req = Register::sign_public(&me, name, 5000, 1_764_000_000_000);
//! let body = req.to_json(); // POST this to /api/register
//! let parsed = Register::from_json(body.as_bytes()).unwrap();
//! assert!(parsed.verify().is_ok());
//! ```
#![forbid(unsafe_code)]

pub mod b64;
pub mod candidate;
pub mod error;
pub mod json;
pub mod key;
pub mod lookup_id;
pub mod name;
pub mod relay;
pub mod relay_hub;
pub mod request;
pub mod response;
pub mod signed;
pub mod udp;

pub use candidate::{Candidate, CandidateKind, MAX_CANDIDATES};
pub use error::{ErrorBody, ErrorCode};
pub use json::BodyError;
pub use key::{FriendKey, KeyError, Keypair, PublicKey, Signature};
pub use lookup_id::{LookupId, LookupIdError};
pub use name::{NameError, PlayerName};
pub use request::{Asked, BatchLookup, MAX_BATCH, MAX_FRIENDS, Register, Unregister};
pub use response::{BatchAnswer, Health, LookupRecord, RecordError, RegisterAnswer};
pub use signed::{FriendsSalt, RecordFields, Visibility, friends_digest, public_digest};

/// HTTP paths of the API.
pub mod paths {
    /// `POST`: register or renew.
    pub const REGISTER: &str = "/api/register";
    /// `GET` + `/{name}`: one player; `POST`: a batch.
    pub const LOOKUP: &str = "/api/lookup";
    /// `DELETE`: unregister.
    pub const UNREGISTER: &str = "/api/unregister";
    /// `GET`: liveness and counts.
    pub const HEALTH: &str = "/api/health";
    /// `GET`: Prometheus metrics.
    pub const METRICS: &str = "/metrics";
}
