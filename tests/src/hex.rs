//! Hexadecimal text for seeds and keys.

use core::fmt;

/// Why a hex string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HexError {
    /// Wrong number of characters.
    Length {
        /// Characters expected.
        expected: usize,
        /// Characters given.
        got: usize,
    },
    /// A character that is not a hex digit, at this position.
    Digit(usize),
}

impl fmt::Display for HexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HexError::Length { expected, got } => {
                write!(f, "expected {expected} hex digits, got {got}")
            }
            HexError::Digit(i) => write!(f, "not a hex digit at position {}", i + 1),
        }
    }
}

impl std::error::Error for HexError {}

/// Decodes exactly `N` bytes from `2 * N` hex digits (either case).
pub fn decode<const N: usize>(text: &str) -> Result<[u8; N], HexError> {
    let b = text.as_bytes();
    if b.len() != 2 * N {
        return Err(HexError::Length {
            expected: 2 * N,
            got: b.len(),
        });
    }
    let digit = |i: usize| -> Result<u8, HexError> {
        match b[i] {
            c @ b'0'..=b'9' => Ok(c - b'0'),
            c @ b'a'..=b'f' => Ok(c - b'a' + 10),
            c @ b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => Err(HexError::Digit(i)),
        }
    };
    let mut out = [0u8; N];
    for (k, o) in out.iter_mut().enumerate() {
        *o = (digit(2 * k)? << 4) | digit(2 * k + 1)?;
    }
    Ok(out)
}

/// Lowercase hex.
pub fn encode(bytes: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &x in bytes {
        s.push(D[(x >> 4) as usize] as char);
        s.push(D[(x & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_errors() {
        let b: [u8; 4] = [0, 0xab, 0x1f, 0xff];
        assert_eq!(decode::<4>(&encode(&b)), Ok(b));
        assert_eq!(decode::<4>("00AB1FFF"), Ok(b));
        assert_eq!(
            decode::<4>("00ab1f"),
            Err(HexError::Length {
                expected: 8,
                got: 6
            })
        );
        assert_eq!(decode::<4>("00ab1fxf"), Err(HexError::Digit(6)));
    }
}
