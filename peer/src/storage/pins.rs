//! Keys pinned on first use: a player's key, once seen, must not change.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::identity::PeerId;
use crate::storage::fs_util::write_durable;

/// Most players a pin store holds.
pub const MAX_PINS: usize = 100_000;
/// Longest player name stored.
pub const MAX_NAME_LEN: usize = 64;

/// A pin check failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PinError {
    /// The player's key differs from the one pinned earlier.
    KeyChanged {
        /// The player.
        name: String,
        /// The key seen first.
        pinned: PeerId,
        /// The key offered now.
        offered: PeerId,
    },
    /// The store holds [`MAX_PINS`] players.
    Full,
    /// The name is empty, too long or has a tab or newline.
    BadName,
}

impl fmt::Display for PinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::KeyChanged {
                name,
                pinned,
                offered,
            } => write!(
                f,
                "the key of {name} changed: pinned {pinned}, offered {offered}; refusing (remove the pin if the player really made a new key)"
            ),
            Self::Full => write!(f, "pin store full ({MAX_PINS} players)"),
            Self::BadName => f.write_str("player name cannot be pinned"),
        }
    }
}

impl std::error::Error for PinError {}

/// Player name (compared case-insensitively) to pinned key, optionally saved to a file.
#[derive(Debug, Default)]
pub struct PinStore {
    pins: BTreeMap<String, PeerId>,
    path: Option<PathBuf>,
}

fn normalize(name: &str) -> Result<String, PinError> {
    let n = name.trim().to_lowercase();
    if n.is_empty() || n.len() > MAX_NAME_LEN || n.contains(['\t', '\n', '\r']) {
        return Err(PinError::BadName);
    }
    Ok(n)
}

impl PinStore {
    /// An empty store kept in memory only.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// Loads the store at `path` (an absent file is an empty store); later pins are saved there.
    pub fn open(path: &Path) -> io::Result<Self> {
        let mut store = match std::fs::read_to_string(path) {
            Ok(text) => Self::from_text(&text)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Self::default(),
            Err(e) => return Err(e),
        };
        store.path = Some(path.to_owned());
        Ok(store)
    }

    /// Parses the file format (`name TAB key` lines; at most [`MAX_PINS`] are read) into a
    /// store kept in memory.
    pub fn from_text(text: &str) -> io::Result<Self> {
        let mut pins = BTreeMap::new();
        for line in text.lines().filter(|l| !l.is_empty()).take(MAX_PINS) {
            let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed pin line");
            let (name, key) = line.split_once('\t').ok_or_else(bad)?;
            pins.insert(
                normalize(name).map_err(|_| bad())?,
                key.parse().map_err(|_| bad())?,
            );
        }
        Ok(Self { pins, path: None })
    }

    /// The key pinned for `name`.
    pub fn get(&self, name: &str) -> Option<PeerId> {
        self.pins.get(&normalize(name).ok()?).copied()
    }

    /// Checks `key` against the pin for `name`, pinning it if there is none.
    pub fn check_and_pin(&mut self, name: &str, key: PeerId) -> Result<(), PinError> {
        let n = normalize(name)?;
        match self.pins.get(&n) {
            Some(&pinned) if pinned == key => Ok(()),
            Some(&pinned) => Err(PinError::KeyChanged {
                name: name.to_owned(),
                pinned,
                offered: key,
            }),
            None => {
                if self.pins.len() >= MAX_PINS {
                    return Err(PinError::Full);
                }
                self.pins.insert(n, key);
                self.save();
                Ok(())
            }
        }
    }

    /// Forgets `name`'s pin (the player made a new key and the user accepted it).
    pub fn unpin(&mut self, name: &str) -> bool {
        let removed = normalize(name)
            .ok()
            .and_then(|n| self.pins.remove(&n))
            .is_some();
        if removed {
            self.save();
        }
        removed
    }

    fn save(&self) {
        let Some(path) = &self.path else { return };
        let text: String = self
            .pins
            .iter()
            .map(|(n, k)| format!("{n}\t{k}\n"))
            .collect();
        if let Err(e) = write_durable(path, text.as_bytes(), 0o600) {
            log::warn!("could not save pin store: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn from_text_never_panics(text in "[a-zA-Z '@\t\n+/=0-9-]{0,200}") {
            let _ = PinStore::from_text(&text);
        }
    }

    #[test]
    fn first_key_is_pinned_and_a_changed_key_refused_across_restarts() {
        let path = crate::test_dir("pins").join("pins");
        let (a, b) = (
            Identity::from_seed(&[1; 32]).id(),
            Identity::from_seed(&[2; 32]).id(),
        );
        let mut s = PinStore::open(&path).unwrap();
        s.check_and_pin("Cid Garlond@Balmung", a).unwrap();
        s.check_and_pin("cid garlond@balmung", a).unwrap();
        let mut s = PinStore::open(&path).unwrap();
        assert!(
            matches!(s.check_and_pin("CID GARLOND@Balmung", b), Err(PinError::KeyChanged { pinned, .. }) if pinned == a)
        );
        assert!(s.unpin("Cid Garlond@Balmung"));
        s.check_and_pin("Cid Garlond@Balmung", b).unwrap();
        assert_eq!(s.get("cid garlond@balmung"), Some(b));
    }
}
