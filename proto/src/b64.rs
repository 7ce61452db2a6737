//! Standard padded base64 (RFC 4648 section 4), strict: C#'s `Convert.ToBase64String` output.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Encodes bytes as standard padded base64.
pub fn encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes exactly `N` bytes of standard padded base64; anything else (other length, missing
/// padding, URL-safe alphabet, whitespace, non-zero trailing bits) is `None`.
pub fn decode_exact<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N.div_ceil(3) * 4 {
        return None;
    }
    let mut out = [0u8; N];
    match STANDARD.decode_slice(text, &mut out) {
        Ok(n) if n == N => Some(out),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rejects_non_canonical_forms() {
        let k = [7u8; 32];
        let good = encode(&k);
        assert_eq!(good.len(), 44);
        assert_eq!(decode_exact::<32>(&good), Some(k));
        assert_eq!(decode_exact::<32>(good.trim_end_matches('=')), None);
        assert_eq!(decode_exact::<32>(&good.replace('B', "-")), None);
        assert_eq!(decode_exact::<32>(&format!(" {}", &good[1..])), None);
        assert_eq!(decode_exact::<31>(&good), None);
        // Same length, but the last symbol carries non-zero padding bits.
        let mut bad = good.clone().into_bytes();
        bad[42] = b'x';
        assert_eq!(decode_exact::<32>(std::str::from_utf8(&bad).unwrap()), None);
    }

    proptest! {
        #[test]
        fn roundtrip(bytes in proptest::array::uniform32(any::<u8>())) {
            prop_assert_eq!(decode_exact::<32>(&encode(&bytes)), Some(bytes));
        }

        #[test]
        fn never_panics(s in "\\PC{0,100}") {
            let _ = decode_exact::<32>(&s);
            let _ = decode_exact::<64>(&s);
        }
    }
}
