//! SHA-1 split at chunk boundaries: the chaining value after each chunk lets any chunk be
//! checked on its own, in any order, and the chain ends in the file's ordinary SHA-1.
//!
//! SHA-1 is what the plugin world names mod files by. It is no longer collision resistant:
//! a publisher can make two files with one SHA-1, so the name binds data only as well as the
//! application's source of hashes does. Second preimages (forging data for someone else's
//! hash) remain out of reach, which is what a download from untrusted peers relies on.

/// The five 32-bit words of SHA-1's chaining value.
pub type ChainState = [u32; 5];

/// SHA-1's initial chaining value.
pub const SHA1_IV: ChainState = [
    0x6745_2301,
    0xEFCD_AB89,
    0x98BA_DCFE,
    0x1032_5476,
    0xC3D2_E1F0,
];

/// SHA-1 block size: chunk sizes are multiples of it.
pub const BLOCK: usize = 64;

/// Feeds whole blocks into `state`. `data.len()` must be a multiple of [`BLOCK`].
pub fn advance(state: &mut ChainState, data: &[u8]) {
    let (blocks, rest) = data.as_chunks::<BLOCK>();
    assert!(rest.is_empty(), "advance takes whole blocks");
    sha1::block_api::compress(state, blocks);
}

/// Finishes a hash whose last, possibly partial, piece is `tail`, started from `state`
/// (the chaining value after `total_len - tail.len()` bytes).
pub fn finish(mut state: ChainState, tail: &[u8], total_len: u64) -> [u8; 20] {
    let whole = tail.len() - tail.len() % BLOCK;
    advance(&mut state, &tail[..whole]);
    let rest = &tail[whole..];
    let mut last = [0u8; 2 * BLOCK];
    last[..rest.len()].copy_from_slice(rest);
    last[rest.len()] = 0x80;
    let end = if rest.len() + 9 <= BLOCK {
        BLOCK
    } else {
        2 * BLOCK
    };
    last[end - 8..end].copy_from_slice(&(total_len.wrapping_mul(8)).to_be_bytes());
    advance(&mut state, &last[..end]);
    state_to_bytes(&state)
}

/// The chaining value as 20 big-endian bytes (the same layout as a SHA-1 digest).
pub fn state_to_bytes(state: &ChainState) -> [u8; 20] {
    let mut out = [0u8; 20];
    for (o, w) in out.chunks_exact_mut(4).zip(state) {
        o.copy_from_slice(&w.to_be_bytes());
    }
    out
}

/// The inverse of [`state_to_bytes`].
pub fn state_from_bytes(bytes: &[u8; 20]) -> ChainState {
    let mut out = [0u32; 5];
    for (w, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *w = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    }
    out
}

/// The plain SHA-1 of `data`.
pub fn sha1(data: &[u8]) -> [u8; 20] {
    finish(SHA1_IV, data, data.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sha1::Digest;

    #[test]
    fn known_vectors() {
        assert_eq!(
            sha1(b""),
            *b"\xda\x39\xa3\xee\x5e\x6b\x4b\x0d\x32\x55\xbf\xef\x95\x60\x18\x90\xaf\xd8\x07\x09"
        );
        assert_eq!(
            sha1(b"abc"),
            *b"\xa9\x99\x3e\x36\x47\x06\x81\x6a\xba\x3e\x25\x71\x78\x50\xc2\x6c\x9c\xd0\xd8\x9d"
        );
    }

    proptest! {
        #[test]
        fn split_chain_equals_plain_sha1(data in proptest::collection::vec(any::<u8>(), 0..600), cut in 0usize..10) {
            let reference: [u8; 20] = sha1::Sha1::digest(&data).into();
            let cut = (cut * BLOCK).min(data.len() - data.len() % BLOCK);
            let mut state = SHA1_IV;
            advance(&mut state, &data[..cut]);
            prop_assert_eq!(finish(state, &data[cut..], data.len() as u64), reference);
            prop_assert_eq!(state_from_bytes(&state_to_bytes(&state)), state);
        }
    }
}
