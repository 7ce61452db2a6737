//! Content addresses: the name an application gives a file.

use std::fmt;
use std::str::FromStr;

/// The hash that names a file. The plugin world uses SHA-1 of the whole file today.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum FileHash {
    /// SHA-1 of the file's bytes.
    Sha1([u8; 20]),
}

impl FileHash {
    /// Kind byte on the wire.
    pub(crate) const KIND_SHA1: u8 = 1;

    /// The raw digest bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Sha1(b) => b,
        }
    }
}

impl fmt::Display for FileHash {
    /// Lowercase hex, as the plugin world writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for FileHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileHash({self})")
    }
}

/// A string that is not 40 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseHashError;

impl fmt::Display for ParseHashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a file hash is 40 hex digits (SHA-1)")
    }
}

impl std::error::Error for ParseHashError {}

impl FromStr for FileHash {
    type Err = ParseHashError;

    /// Parses 40 hex digits, either case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.as_bytes();
        if s.len() != 40 {
            return Err(ParseHashError);
        }
        let mut out = [0u8; 20];
        for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
            let hi = (pair[0] as char).to_digit(16).ok_or(ParseHashError)?;
            let lo = (pair[1] as char).to_digit(16).ok_or(ParseHashError)?;
            *o = (hi * 16 + lo) as u8;
        }
        Ok(Self::Sha1(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn hex_round_trips(bytes in any::<[u8; 20]>()) {
            let h = FileHash::Sha1(bytes);
            prop_assert_eq!(h.to_string().parse::<FileHash>(), Ok(h));
            prop_assert_eq!(h.to_string().to_uppercase().parse::<FileHash>(), Ok(h));
        }

        #[test]
        fn parse_never_panics(s in ".{0,50}") {
            let _ = s.parse::<FileHash>();
        }
    }
}
