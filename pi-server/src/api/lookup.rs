//! `GET /api/lookup/{name}` and `POST /api/lookup`: authenticated by token, scoped by the
//! owner's visibility. "Absent" and "not allowed" give the same answer.

use super::{Answer, App, Now};
use crate::http::Head;
use crate::metrics::Reject;
use crate::table::Slot;
use phonebook_proto::lookup_id::LOOKUP_ID_TEXT_LEN;
use phonebook_proto::name::decode_path_name;
use phonebook_proto::{BatchLookup, ErrorCode, LookupId, MAX_BATCH, PlayerName, b64};
use std::io::Write as _;

/// Lookups in a batch that cost one rate-limit token.
pub const BATCH_NAMES_PER_TOKEN: u32 = 4;

const NOT_FOUND: &str = "no such player, or not visible to you";

impl App {
    /// The requester's key, from a token minted by a registration that is still live.
    fn requester(&mut self, head: &Head<'_>, now: Now) -> Result<[u8; 32], Answer> {
        let unauthorized = |app: &mut App| {
            app.metrics.reject(Reject::Unauthorized);
            Answer::error(
                ErrorCode::Unauthorized,
                "lookups need Authorization: Bearer <token from your registration>",
            )
        };
        // The token's tag covers the key of the registration it was minted for; it checks only
        // against the key its slot holds now, live and with the same timestamp.
        let (table, t) = (&self.table, now.secs());
        let mut holder = None;
        let checked = head.bearer.and_then(|token| {
            self.tokens.check(token, |claim| {
                holder = table
                    .live_by_handle(claim.slot, claim.timestamp, t)
                    .map(|(_, s)| s.key);
                holder
            })
        });
        match (checked, holder) {
            (Some(_), Some(key)) => Ok(key),
            _ => Err(unauthorized(self)),
        }
    }

    fn miss(&mut self, requester: &[u8; 32], now: Now) -> Answer {
        self.metrics.reject(Reject::NotAllowed);
        let wait = self.key_limit.miss(requester, now.mono_ms);
        Answer::error_retry(ErrorCode::NotFound, NOT_FOUND, wait)
    }

    pub(super) fn lookup_one(&mut self, head: &Head<'_>, now: Now) -> Answer {
        let requester = match self.requester(head, now) {
            Ok(k) => k,
            Err(a) => return a,
        };
        if let Err(a) = self.key_limit(&requester, 1, now) {
            return a;
        }
        let segment = &head.path[b"/api/lookup/".len()..];
        // A lookup id (43 characters of base64url) or a percent-encoded name, which always
        // holds a space and an `@`, neither of which is in the base64url alphabet.
        let by_id = (segment.len() == LOOKUP_ID_TEXT_LEN)
            .then(|| core::str::from_utf8(segment).ok())
            .flatten()
            .and_then(|s| LookupId::parse(s).ok());
        let (id, name) = match by_id {
            Some(id) => (id, None),
            None => match decode_path_name(segment) {
                Ok(n) => (LookupId::of(&n), Some(n)),
                Err(e) => {
                    self.metrics.reject(Reject::BadRequest);
                    return Answer::error(
                        ErrorCode::BadRequest,
                        format!("invalid lookup id or playerName: {e}"),
                    );
                }
            },
        };
        let t = now.secs();
        match self.table.lookup(&id, &requester, t) {
            Some((slot_id, slot, left)) => {
                let mut body = Vec::with_capacity(400);
                self.write_record(slot_id, slot, left, name.as_ref(), &mut body);
                Answer::ok(body)
            }
            None => self.miss(&requester, now),
        }
    }

    pub(super) fn lookup_batch(&mut self, head: &Head<'_>, body: &[u8], now: Now) -> Answer {
        let requester = match self.requester(head, now) {
            Ok(k) => k,
            Err(a) => return a,
        };
        let req = match BatchLookup::from_json(body) {
            Ok(r) if !r.asked.is_empty() => r,
            Ok(_) => {
                self.metrics.reject(Reject::BadRequest);
                return Answer::error(
                    ErrorCode::BadRequest,
                    format!("invalid names: give 1 to {MAX_BATCH} names"),
                );
            }
            Err(e) => {
                self.metrics.reject(Reject::BadRequest);
                return Answer::error(ErrorCode::BadRequest, e.to_string());
            }
        };
        let cost = (req.asked.len() as u32).div_ceil(BATCH_NAMES_PER_TOKEN);
        if let Err(a) = self.key_limit(&requester, cost, now) {
            return a;
        }
        let t = now.secs();
        let mut out = Vec::with_capacity(64 + 400 * req.asked.len());
        out.extend_from_slice(b"{\"found\":[");
        let mut found = 0;
        for asked in &req.asked {
            if let Some((slot_id, slot, left)) = self.table.lookup(&asked.id, &requester, t) {
                if found > 0 {
                    out.push(b',');
                }
                self.write_record(slot_id, slot, left, asked.name.as_ref(), &mut out);
                found += 1;
            }
        }
        out.extend_from_slice(b"]}");
        let mut a = Answer::ok(out);
        if found == 0 {
            let wait = self.key_limit.miss(&requester, now.mono_ms);
            a.retry_after = Some(wait);
        }
        a
    }

    /// Writes a record as JSON (docs/PROTOCOL.md "GET /api/lookup"). `name` is the name the
    /// request asked by, echoed (the table holds none). Names are validated ASCII without
    /// quotes or backslashes, and base64 needs no escaping, so no escaping is needed. A record
    /// with candidates adds `"candidates":[...]` before the timestamp; candidate text is ASCII
    /// without quotes either.
    fn write_record(
        &self,
        id: u32,
        s: &Slot,
        left: u32,
        name: Option<&PlayerName>,
        out: &mut Vec<u8>,
    ) {
        const EMPTY_DIGEST: &str = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
        let digest = match self.table.friends_of(s) {
            Some((_, d)) => b64::encode(d),
            None => EMPTY_DIGEST.to_owned(),
        };
        let _ = write!(out, "{{\"lookupId\":\"{}\",", s.id);
        if let Some(n) = name {
            let _ = write!(out, "\"playerName\":\"{n}\",");
        }
        let _ = write!(
            out,
            "\"ip\":\"{}\",\"port\":{},\"publicKey\":\"{}\",\"visibility\":\"{}\",\"friendsDigest\":\"{}\",",
            s.ip(),
            s.port,
            b64::encode(&s.key),
            s.visibility.as_str(),
            digest,
        );
        let candidates = self.table.candidates_of(id);
        if !candidates.is_empty() {
            out.extend_from_slice(b"\"candidates\":[");
            for (i, c) in candidates.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let _ = write!(out, "\"{c}\"");
            }
            out.extend_from_slice(b"],");
        }
        let _ = write!(
            out,
            "\"timestamp\":{},\"signature\":\"{}\",\"expiresIn\":{}}}",
            s.timestamp,
            b64::encode(&s.signature),
            left
        );
    }
}
