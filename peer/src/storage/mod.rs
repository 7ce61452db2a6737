//! What a peer keeps on disk: the files it serves, and the keys it pinned per player.

pub mod folder;
pub mod folder_index;
pub(crate) mod fs_util;
pub mod pins;
pub mod store;
