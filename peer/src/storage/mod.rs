//! What a peer keeps on disk: the files it serves, and the keys it pinned per player.

pub(crate) mod fs_util;
pub mod pins;
pub mod store;
