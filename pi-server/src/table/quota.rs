//! Per-address and per-key accounting of what live records hold, so that one client cannot
//! take the whole table or the whole friend-key pool (issue 9).
//!
//! A live record is charged to the address it hands out (the client address the server saw,
//! unless the operator allows claimed addresses on a LAN) under its [`source key`](source_key):
//! IPv4 per address, IPv6 per prefix of [`QuotaLimits::ipv6_prefix`] bits (48 by default). It
//! counts one record there, and its friend keys count there and under its public key. The
//! charge is released when the record stops being live (unregistration, expiry, eviction) or is
//! replaced by a renewal, so space is reclaimed exactly as records go.
//!
//! Why IPv6 is counted per /48 and not per /64 (the rate limiter's unit): a subscriber often
//! gets a /56 or a /48, and a hosting customer a /48; counted per /64, one /48 holds 65,536
//! quotas, which with the default limits is the whole table and 16 times the friend-key pool.
//! Per /48 it holds one. The price is that a site sharing one /48 (a household, a mobile
//! operator's pool) shares one quota, as players behind one carrier-grade NAT share an IPv4
//! address; the defaults leave room for that, and `quota-ipv6-prefix` widens or narrows it.
//!
//! Both maps hold an entry only while some live record is charged to it, so each has at most
//! as many entries as the table has live records (bounded by `capacity`).

use std::collections::HashMap;
use std::net::IpAddr;

/// The limits. A limit of `u32::MAX` is effectively off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaLimits {
    /// Most live records charged to one source.
    pub records_per_source: u32,
    /// Most friend keys held by the live records of one source.
    pub friend_keys_per_source: u32,
    /// Most friend keys held by the live records of one public key.
    pub friend_keys_per_key: u32,
    /// Prefix length an IPv6 source is counted under.
    pub ipv6_prefix: u8,
}

impl QuotaLimits {
    /// No quota at all (tests, tools).
    pub const NONE: QuotaLimits = QuotaLimits {
        records_per_source: u32::MAX,
        friend_keys_per_source: u32::MAX,
        friend_keys_per_key: u32::MAX,
        ipv6_prefix: 64,
    };
}

/// Which quota a registration would break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaError {
    /// Too many live records from this address (or IPv6 prefix).
    Records,
    /// Too many friend keys held by the records of this address (or IPv6 prefix).
    SourceFriendKeys,
    /// Too many friend keys held by the records of this public key.
    KeyFriendKeys,
}

/// What one live record is charged: its source, its key and its friend-key count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    /// [`source_key`] of the record's address.
    pub source: u128,
    /// The record's public key.
    pub key: [u8; 32],
    /// Friend keys it holds.
    pub friend_keys: u32,
}

#[derive(Debug, Default, Clone, Copy)]
struct SourceUse {
    records: u32,
    friend_keys: u32,
}

/// The accounting. See the module docs.
#[derive(Debug)]
pub struct Quotas {
    limits: QuotaLimits,
    sources: HashMap<u128, SourceUse>,
    keys: HashMap<[u8; 32], u32>,
}

/// The key an address is counted under: IPv4 whole, IPv6 by its first `ipv6_prefix` bits.
pub fn source_key(ip: IpAddr, ipv6_prefix: u8) -> u128 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => {
            let keep = u128::MAX
                .checked_shl(128 - u32::from(ipv6_prefix.min(128)))
                .unwrap_or(0);
            // The low bit tells an IPv6 prefix from an IPv4 address (prefixes are <= 64 bits).
            (u128::from(v6) & keep) | 1
        }
    }
}

impl Quotas {
    /// Empty accounting under `limits`.
    pub fn new(limits: QuotaLimits) -> Self {
        Quotas {
            limits,
            sources: HashMap::new(),
            keys: HashMap::new(),
        }
    }

    /// The limits.
    pub fn limits(&self) -> QuotaLimits {
        self.limits
    }

    /// The source key of `ip` under these limits.
    pub fn source_of(&self, ip: IpAddr) -> u128 {
        source_key(ip, self.limits.ipv6_prefix)
    }

    /// Live records and friend keys charged to `source`.
    pub fn source_use(&self, source: u128) -> (u32, u32) {
        self.sources
            .get(&source)
            .map_or((0, 0), |u| (u.records, u.friend_keys))
    }

    /// Friend keys charged to `key`.
    pub fn key_use(&self, key: &[u8; 32]) -> u32 {
        self.keys.get(key).copied().unwrap_or(0)
    }

    /// Entries in the two maps (for tests: both empty when no record is live).
    pub fn entries(&self) -> (usize, usize) {
        (self.sources.len(), self.keys.len())
    }

    /// Whether replacing the charge `old` (the record's current one, if it is live) by `new`
    /// stays within the limits.
    pub fn check(&self, old: Option<&Charge>, new: &Charge) -> Result<(), QuotaError> {
        let (mut records, mut src_keys) = self.source_use(new.source);
        let mut key_keys = self.key_use(&new.key);
        if let Some(o) = old {
            if o.source == new.source {
                records -= 1;
                src_keys -= o.friend_keys;
            }
            if o.key == new.key {
                key_keys -= o.friend_keys;
            }
        }
        let l = &self.limits;
        if records >= l.records_per_source {
            return Err(QuotaError::Records);
        }
        if u64::from(src_keys) + u64::from(new.friend_keys) > u64::from(l.friend_keys_per_source) {
            return Err(QuotaError::SourceFriendKeys);
        }
        if u64::from(key_keys) + u64::from(new.friend_keys) > u64::from(l.friend_keys_per_key) {
            return Err(QuotaError::KeyFriendKeys);
        }
        Ok(())
    }

    /// Adds a live record's charge (no check: see [`Quotas::check`]).
    pub fn charge(&mut self, c: &Charge) {
        let u = self.sources.entry(c.source).or_default();
        u.records += 1;
        u.friend_keys += c.friend_keys;
        if c.friend_keys > 0 {
            *self.keys.entry(c.key).or_default() += c.friend_keys;
        }
    }

    /// Removes a charge added by [`Quotas::charge`]; entries that reach zero are dropped.
    pub fn release(&mut self, c: &Charge) {
        if let Some(u) = self.sources.get_mut(&c.source) {
            u.records = u.records.saturating_sub(1);
            u.friend_keys = u.friend_keys.saturating_sub(c.friend_keys);
            if u.records == 0 {
                self.sources.remove(&c.source);
            }
        }
        if c.friend_keys > 0
            && let Some(n) = self.keys.get_mut(&c.key)
        {
            *n = n.saturating_sub(c.friend_keys);
            if *n == 0 {
                self.keys.remove(&c.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_counts_by_prefix_ipv4_by_address() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:ff00::9".parse().unwrap();
        let c: IpAddr = "2001:db8:2::1".parse().unwrap();
        assert_eq!(source_key(a, 48), source_key(b, 48));
        assert_ne!(source_key(a, 64), source_key(b, 64));
        assert_ne!(source_key(a, 48), source_key(c, 48));
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(source_key(v4, 48), source_key(mapped, 48));
        assert_ne!(
            source_key(v4, 48),
            source_key("192.0.2.2".parse().unwrap(), 48)
        );
        // No IPv6 prefix collides with an IPv4 address (::/48 included).
        assert_ne!(
            source_key("::".parse().unwrap(), 48),
            source_key("0.0.0.0".parse().unwrap(), 48)
        );
    }

    #[test]
    fn check_charge_release() {
        let mut q = Quotas::new(QuotaLimits {
            records_per_source: 2,
            friend_keys_per_source: 100,
            friend_keys_per_key: 64,
            ipv6_prefix: 48,
        });
        let c = |source, key: u8, n| Charge {
            source,
            key: [key; 32],
            friend_keys: n,
        };
        assert_eq!(q.check(None, &c(1, 1, 64)), Ok(()));
        q.charge(&c(1, 1, 64));
        assert_eq!(q.check(None, &c(1, 1, 1)), Err(QuotaError::KeyFriendKeys));
        assert_eq!(
            q.check(None, &c(1, 2, 37)),
            Err(QuotaError::SourceFriendKeys)
        );
        // A renewal replaces its own charge.
        assert_eq!(q.check(Some(&c(1, 1, 64)), &c(1, 1, 64)), Ok(()));
        q.charge(&c(1, 2, 36));
        assert_eq!(q.check(None, &c(1, 3, 0)), Err(QuotaError::Records));
        assert_eq!(q.check(None, &c(2, 3, 0)), Ok(()));
        q.release(&c(1, 1, 64));
        q.release(&c(1, 2, 36));
        assert_eq!(q.entries(), (0, 0));
    }
}
