//! Deterministic benchmark players: entry `i` of a namespace always has the same name and key
//! seed, so several runs against one server share its prefilled table.
//!
//! Names satisfy both the protocol's rule (docs/PROTOCOL.md "Player names") and the reference
//! server's regular expression: a capital letter, seven lowercase letters encoding `i` in base
//! 26, a fixed or salted surname, and the world `Gilgamesh`.

/// The world of every benchmark name.
pub const WORLD: &str = "Gilgamesh";

/// A set of benchmark players.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    /// The table prefilled before lookups (`Pxxxxxxx Bench@Gilgamesh`).
    Prefill,
    /// The requesters that look others up (`Rxxxxxxx Asker@Gilgamesh`).
    Requester,
    /// Fresh names for the registration scenario; the salt keeps runs apart
    /// (`Fxxxxxxx Nsssss@Gilgamesh`).
    Fresh(u32),
    /// Keys that fill the friend lists of friends-only benchmark players
    /// (`Kxxxxxxx Friend@Gilgamesh`; only their keys are used).
    Friend,
}

/// `i` in base 26 as exactly `width` lowercase letters (wrapping above 26^width).
pub fn letters(mut i: u64, width: usize) -> String {
    let mut b = vec![b'a'; width];
    for slot in b.iter_mut().rev() {
        *slot = b'a' + (i % 26) as u8;
        i /= 26;
    }
    String::from_utf8(b).expect("ASCII")
}

/// The name of entry `i` (unique for `i < 26^7`, about 8 billion).
pub fn name(space: Space, i: u64) -> String {
    match space {
        Space::Prefill => format!("P{} Bench@{WORLD}", letters(i, 7)),
        Space::Requester => format!("R{} Asker@{WORLD}", letters(i, 7)),
        Space::Fresh(salt) => format!("F{} N{}@{WORLD}", letters(i, 7), letters(salt as u64, 5)),
        Space::Friend => format!("K{} Friend@{WORLD}", letters(i, 7)),
    }
}

/// The Ed25519 seed of entry `i`.
pub fn seed(space: Space, i: u64) -> [u8; 32] {
    let (tag, salt) = match space {
        Space::Prefill => (1u8, 0u32),
        Space::Requester => (2, 0),
        Space::Fresh(s) => (3, s),
        Space::Friend => (4, 0),
    };
    let mut s = [0x5au8; 32];
    s[0] = tag;
    s[1..5].copy_from_slice(&salt.to_le_bytes());
    s[5..13].copy_from_slice(&i.to_le_bytes());
    s
}

/// The port registered for entry `i` (any valid port; spread for realism).
pub fn port(i: u64) -> u16 {
    (10_000 + i % 50_000) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use phonebook_proto::PlayerName;

    #[test]
    fn names_are_valid_and_distinct() {
        for space in [
            Space::Prefill,
            Space::Requester,
            Space::Fresh(12345),
            Space::Friend,
        ] {
            for i in [0, 1, 25, 26, 999_999, 26u64.pow(7) - 1] {
                let n = name(space, i);
                PlayerName::parse(&n).unwrap_or_else(|e| panic!("{n}: {e}"));
            }
            assert_ne!(name(space, 1), name(space, 2));
            assert_ne!(seed(space, 1), seed(space, 2));
        }
        assert_ne!(name(Space::Fresh(1), 0), name(Space::Fresh(2), 0));
        assert_ne!(seed(Space::Friend, 0), seed(Space::Requester, 0));
        assert_eq!(name(Space::Prefill, 27), "Paaaaabb Bench@Gilgamesh");
    }
}
