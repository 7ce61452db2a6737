//! `GET /api/lookup/{name}` and `POST /api/lookup`: authenticated by token, scoped by the
//! owner's visibility. "Absent" and "not allowed" give the same answer.

use super::{Answer, App, Now};
use crate::http::Head;
use crate::metrics::Reject;
use crate::table::Slot;
use phonebook_proto::name::decode_path_name;
use phonebook_proto::{BatchLookup, ErrorCode, MAX_BATCH, b64};
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
        let name = match decode_path_name(segment) {
            Ok(n) => n,
            Err(e) => {
                self.metrics.reject(Reject::BadRequest);
                return Answer::error(ErrorCode::BadRequest, format!("invalid playerName: {e}"));
            }
        };
        let t = now.secs();
        match self.table.lookup(name.as_str(), t) {
            Some((id, slot, left)) if self.table.allows(slot, &requester) => {
                let mut body = Vec::with_capacity(400);
                self.write_record(id, slot, left, &mut body);
                Answer::ok(body)
            }
            _ => self.miss(&requester, now),
        }
    }

    pub(super) fn lookup_batch(&mut self, head: &Head<'_>, body: &[u8], now: Now) -> Answer {
        let requester = match self.requester(head, now) {
            Ok(k) => k,
            Err(a) => return a,
        };
        let req = match BatchLookup::from_json(body) {
            Ok(r) if !r.names.is_empty() => r,
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
        let cost = (req.names.len() as u32).div_ceil(BATCH_NAMES_PER_TOKEN);
        if let Err(a) = self.key_limit(&requester, cost, now) {
            return a;
        }
        let t = now.secs();
        let mut out = Vec::with_capacity(64 + 400 * req.names.len());
        out.extend_from_slice(b"{\"found\":[");
        let mut found = 0;
        for name in &req.names {
            if let Some((id, slot, left)) = self.table.lookup(name.as_str(), t)
                && self.table.allows(slot, &requester)
            {
                if found > 0 {
                    out.push(b',');
                }
                self.write_record(id, slot, left, &mut out);
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

    /// Writes a record as JSON (docs/PROTOCOL.md "GET /api/lookup"). Names are validated ASCII
    /// without quotes or backslashes, and base64 needs no escaping, so no escaping is needed.
    /// A version-2 record (with candidates) adds `"candidates":[...]` before the timestamp;
    /// candidate text is ASCII without quotes either.
    fn write_record(&self, id: u32, s: &Slot, left: u32, out: &mut Vec<u8>) {
        const EMPTY_DIGEST: &str = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
        let digest = match self.table.friends_of(s) {
            Some((_, d)) => b64::encode(d),
            None => EMPTY_DIGEST.to_owned(),
        };
        let _ = write!(
            out,
            "{{\"playerName\":\"{}\",\"ip\":\"{}\",\"port\":{},\"publicKey\":\"{}\",\"visibility\":\"{}\",\"friendsDigest\":\"{}\",",
            s.name_str(),
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
