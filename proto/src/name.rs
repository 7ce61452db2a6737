//! FFXIV character names: `Firstname Lastname@World`.
//!
//! The rule (normative, see docs/PROTOCOL.md "Player names"):
//! - forename and surname are each 2 to 15 characters, together at most 20;
//! - each is made of ASCII letters, apostrophes (`'`) and hyphens (`-`), starts with a letter,
//!   and never has two of `'`/`-` in a row;
//! - exactly one ASCII space separates them, exactly one `@` precedes the world;
//! - the world is 3 to 16 ASCII letters;
//! - names compare case-insensitively: the canonical form is the ASCII lowercase of the whole.

use core::fmt;

/// Longest forename or surname, in characters.
pub const PART_MAX: usize = 15;
/// Shortest forename or surname.
pub const PART_MIN: usize = 2;
/// Longest forename plus surname (the space not counted), as the game enforces.
pub const FULL_NAME_MAX: usize = 20;
/// Shortest world name.
pub const WORLD_MIN: usize = 3;
/// Longest world name.
pub const WORLD_MAX: usize = 16;
/// Longest valid player name in bytes: 20 letters, a space, `@` and a 16-letter world.
pub const NAME_MAX_LEN: usize = FULL_NAME_MAX + 1 + 1 + WORLD_MAX;

/// Why a string is not a valid player name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameError {
    /// Longer than [`NAME_MAX_LEN`] bytes.
    TooLong,
    /// No `@World` part, or more than one `@`.
    MissingWorld,
    /// No single space between forename and surname.
    MissingSurname,
    /// A forename or surname outside 2..=15 characters, or both together above 20.
    PartLength,
    /// A character other than letters, `'` and `-` in the name, or other than letters in the world.
    BadCharacter,
    /// A part that starts with `'` or `-`, or has two of them in a row.
    BadPunctuation,
    /// A world outside 3..=16 letters.
    WorldLength,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameError::TooLong => "player name is too long",
            NameError::MissingWorld => "player name must end in exactly one @World",
            NameError::MissingSurname => "player name must be 'Forename Surname@World' with one space",
            NameError::PartLength => {
                "forename and surname must be 2-15 letters each and 20 together"
            }
            NameError::BadCharacter => {
                "player name may contain only letters, apostrophes and hyphens; the world only letters"
            }
            NameError::BadPunctuation => {
                "a name part must start with a letter and not have two apostrophes or hyphens in a row"
            }
            NameError::WorldLength => "world name must be 3-16 letters",
        })
    }
}

impl std::error::Error for NameError {}

/// A validated player name. Keeps the spelling it was given; equality, hashing and
/// [`PlayerName::canonical`] ignore ASCII case.
#[derive(Clone)]
pub struct PlayerName {
    text: String,
}

impl PlayerName {
    /// Validates `s` against the name rule.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        validate(s.as_bytes())?;
        Ok(PlayerName { text: s.to_owned() })
    }

    /// The name as registered (original case).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The canonical form: ASCII lowercase. This is what signatures cover.
    pub fn canonical(&self) -> String {
        self.text.to_ascii_lowercase()
    }
}

impl PartialEq for PlayerName {
    fn eq(&self, other: &Self) -> bool {
        self.text.eq_ignore_ascii_case(&other.text)
    }
}
impl Eq for PlayerName {}

impl core::hash::Hash for PlayerName {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        for b in self.text.bytes() {
            state.write_u8(b.to_ascii_lowercase());
        }
    }
}

impl fmt::Debug for PlayerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PlayerName({:?})", self.text)
    }
}

impl fmt::Display for PlayerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl core::str::FromStr for PlayerName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        PlayerName::parse(s)
    }
}

/// Checks raw bytes against the name rule without allocating.
pub fn validate(s: &[u8]) -> Result<(), NameError> {
    if s.len() > NAME_MAX_LEN {
        return Err(NameError::TooLong);
    }
    let mut at = s.iter().enumerate().filter(|(_, b)| **b == b'@');
    let (at_pos, _) = at.next().ok_or(NameError::MissingWorld)?;
    if at.next().is_some() {
        return Err(NameError::MissingWorld);
    }
    let (full, world) = (&s[..at_pos], &s[at_pos + 1..]);
    let mut parts = full.split(|b| *b == b' ');
    let (first, last) = match (parts.next(), parts.next(), parts.next()) {
        (Some(f), Some(l), None) => (f, l),
        _ => return Err(NameError::MissingSurname),
    };
    for part in [first, last] {
        check_part(part)?;
    }
    if first.len() + last.len() > FULL_NAME_MAX {
        return Err(NameError::PartLength);
    }
    if !world.iter().all(u8::is_ascii_alphabetic) {
        return Err(NameError::BadCharacter);
    }
    if !(WORLD_MIN..=WORLD_MAX).contains(&world.len()) {
        return Err(NameError::WorldLength);
    }
    Ok(())
}

fn check_part(part: &[u8]) -> Result<(), NameError> {
    if !part
        .iter()
        .all(|b| b.is_ascii_alphabetic() || *b == b'\'' || *b == b'-')
    {
        return Err(NameError::BadCharacter);
    }
    if !(PART_MIN..=PART_MAX).contains(&part.len()) {
        return Err(NameError::PartLength);
    }
    if !part[0].is_ascii_alphabetic() {
        return Err(NameError::BadPunctuation);
    }
    let punct = |b: &u8| *b == b'\'' || *b == b'-';
    if part.windows(2).any(|w| punct(&w[0]) && punct(&w[1])) {
        return Err(NameError::BadPunctuation);
    }
    Ok(())
}

/// Why a lookup path segment could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathError {
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// The decoded bytes are not a valid name.
    Name(NameError),
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathError::BadEscape => f.write_str("malformed percent-escape in the path"),
            PathError::Name(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for PathError {}

/// Percent-decodes one path segment (`Alice%20Smith@Gilgamesh`) into a validated name.
///
/// `+` is not a space in a path and is rejected by the name rule. Work and output are
/// bounded: anything that decodes to more than [`NAME_MAX_LEN`] bytes fails early.
pub fn decode_path_name(segment: &[u8]) -> Result<PlayerName, PathError> {
    let mut out = [0u8; NAME_MAX_LEN];
    let mut n = 0;
    let mut i = 0;
    while i < segment.len() {
        if n == NAME_MAX_LEN {
            return Err(PathError::Name(NameError::TooLong));
        }
        let b = segment[i];
        if b == b'%' {
            let hi = segment.get(i + 1).and_then(|c| hex(*c));
            let lo = segment.get(i + 2).and_then(|c| hex(*c));
            match (hi, lo) {
                (Some(h), Some(l)) => out[n] = h << 4 | l,
                _ => return Err(PathError::BadEscape),
            }
            i += 3;
        } else {
            out[n] = b;
            i += 1;
        }
        n += 1;
    }
    validate(&out[..n]).map_err(PathError::Name)?;
    // validate() accepted only ASCII, so this cannot fail.
    let text =
        core::str::from_utf8(&out[..n]).map_err(|_| PathError::Name(NameError::BadCharacter))?;
    Ok(PlayerName {
        text: text.to_owned(),
    })
}

/// Percent-encodes a name for use as a path segment (space as `%20`, `'` as `%27`).
pub fn encode_path_name(name: &PlayerName) -> String {
    let mut s = String::with_capacity(name.as_str().len() + 8);
    for b in name.as_str().bytes() {
        match b {
            b' ' => s.push_str("%20"),
            b'\'' => s.push_str("%27"),
            _ => s.push(b as char),
        }
    }
    s
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_real_names() {
        for n in [
            "Y'shtola Rhul@Gilgamesh",
            "G'raha Tia@Exodus",
            "Alphinaud Leveilleur@Halicarnassus",
            "Aa Bb@Ultros",
            "Jean-Luc Picard@Cactuar",
            "Abcdefghijklmno Abcde@Sargatanas",
        ] {
            assert!(PlayerName::parse(n).is_ok(), "{n}");
        }
    }

    /// docs/PROTOCOL.md: a part must start with a letter but may end in `'` or `-` (the rule
    /// accepts a superset of the game's names rather than lock out a real one).
    #[test]
    fn parts_may_end_in_an_apostrophe_or_a_hyphen() {
        for n in [
            "Ab' Cd@World",
            "Ab- Cd-@World",
            "A' B'@World",
            "Ab Cd'@World",
        ] {
            assert!(PlayerName::parse(n).is_ok(), "{n}");
        }
        for n in [
            "'Ab Cd@World",
            "Ab -Cd@World",
            "Ab'' Cd@World",
            "Ab'- Cd@World",
        ] {
            assert_eq!(
                PlayerName::parse(n).unwrap_err(),
                NameError::BadPunctuation,
                "{n}"
            );
        }
    }

    #[test]
    fn rejects_each_rule() {
        use NameError::*;
        let cases = [
            ("Alice Smith", MissingWorld),
            ("Alice Smith@Gil@gamesh", MissingWorld),
            ("AliceSmith@Gilgamesh", MissingSurname),
            ("Alice  Smith@Gilgamesh", MissingSurname),
            ("Al Ice Smith@Gilgamesh", MissingSurname),
            ("A Smith@Gilgamesh", PartLength),
            ("Abcdefghijklmnop Ab@Gilgamesh", PartLength),
            ("Abcdefghijk Abcdefghijk@Gilgamesh", PartLength),
            ("Al1ce Smith@Gilgamesh", BadCharacter),
            ("Alice Smith@Gil-gamesh", BadCharacter),
            ("Alíce Smith@Gilgamesh", BadCharacter),
            ("'Alice Smith@Gilgamesh", BadPunctuation),
            ("Al''ice Smith@Gilgamesh", BadPunctuation),
            ("Al-'ice Smith@Gilgamesh", BadPunctuation),
            ("Alice Smith@Gi", WorldLength),
            ("Alice Smith@", WorldLength),
        ];
        for (s, e) in cases {
            assert_eq!(PlayerName::parse(s).err(), Some(e), "{s}");
        }
        assert_eq!(
            PlayerName::parse(&"A".repeat(NAME_MAX_LEN + 1)).err(),
            Some(TooLong)
        );
    }

    #[test]
    fn case_insensitive() {
        let a = PlayerName::parse("Alice Smith@Gilgamesh").unwrap();
        let b = PlayerName::parse("aLICE smith@GILGAMESH").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.canonical(), "alice smith@gilgamesh");
        assert_eq!(b.as_str(), "aLICE smith@GILGAMESH");
    }

    #[test]
    fn path_decoding() {
        let n = decode_path_name(b"Y%27shtola%20Rhul@Gilgamesh").unwrap();
        assert_eq!(n.as_str(), "Y'shtola Rhul@Gilgamesh");
        let n = decode_path_name(b"Y'shtola%20rhul%40Gilgamesh").unwrap();
        assert_eq!(n.as_str(), "Y'shtola rhul@Gilgamesh");
        assert_eq!(
            decode_path_name(b"Alice%2Smith@W").err(),
            Some(PathError::BadEscape)
        );
        assert_eq!(
            decode_path_name(b"Alice%").err(),
            Some(PathError::BadEscape)
        );
        assert_eq!(
            decode_path_name(b"Alice+Smith@Gilgamesh").err(),
            Some(PathError::Name(NameError::MissingSurname))
        );
        assert!(matches!(
            decode_path_name(&[b'a'; 500]).err(),
            Some(PathError::Name(NameError::TooLong))
        ));
    }

    fn part() -> impl Strategy<Value = String> {
        "[A-Za-z]([A-Za-z]|[A-Za-z]['-])[a-z]{0,6}"
    }

    proptest! {
        #[test]
        fn valid_names_roundtrip_through_paths(f in part(), l in part(), w in "[A-Za-z]{3,16}") {
            let s = format!("{f} {l}@{w}");
            let n = PlayerName::parse(&s).unwrap();
            let enc = encode_path_name(&n);
            let back = decode_path_name(enc.as_bytes()).unwrap();
            prop_assert_eq!(back.as_str(), n.as_str());
        }

        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(n) = decode_path_name(&bytes) {
                prop_assert!(n.as_str().len() <= NAME_MAX_LEN);
                prop_assert!(validate(n.as_str().as_bytes()).is_ok());
            }
        }
    }
}
