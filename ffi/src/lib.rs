//! C ABI over [`peer::Node`] for game plugins (issue 12).
//!
//! Rules: every function returns an [`FfxpStatus`]; the message of the last failure on the
//! calling thread comes from [`ffxp_last_error`]. Strings are UTF-8, passed as pointer + length
//! (not NUL-terminated). Nodes are opaque `u64` handles (index + generation: a stale or forged
//! handle is [`FfxpStatus::InvalidHandle`], never undefined behaviour). Long work returns an
//! operation id; its progress and result come out of [`ffxp_node_poll_event`], which never
//! blocks and fills a caller-owned [`FfxpEvent`]. No panic crosses the boundary.
//!
//! Blocking calls, bounded: [`ffxp_node_create`] (binds a socket, reads the key file),
//! [`ffxp_node_share`] (hashes the folder) and [`ffxp_node_shutdown`] (waits at most
//! [`peer::node::DEFAULT_SHUTDOWN_BOUND`] for the phone book).

pub mod event;
pub mod handles;
pub mod status;

use std::panic::{AssertUnwindSafe, catch_unwind};

pub use event::{FFXP_MESSAGE_MAX, FfxpEvent, FfxpEventKind};
use peer::{FileHash, NodeConfig, Visibility};
pub use status::FfxpStatus;
use status::fail;

/// The ABI version this library implements (also in the library's file name).
pub const FFXP_ABI_VERSION: u32 = 1;

/// Runs `f`, turning a panic into [`FfxpStatus::Internal`].
fn guard(f: impl FnOnce() -> FfxpStatus) -> FfxpStatus {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(s) => s,
        Err(_) => fail(FfxpStatus::Internal, "internal error (panic caught)"),
    }
}

/// Reads a UTF-8 string argument. A null pointer with length 0 is the empty string.
///
/// # Safety
/// `ptr` must be null or point to `len` readable bytes.
unsafe fn text<'a>(ptr: *const u8, len: usize, what: &str) -> Result<&'a str, FfxpStatus> {
    if ptr.is_null() {
        return if len == 0 {
            Ok("")
        } else {
            Err(fail(
                FfxpStatus::NullPointer,
                format!("{what}: null pointer"),
            ))
        };
    }
    // SAFETY: the caller promises `len` readable bytes at non-null `ptr`.
    let bytes = unsafe { std::slice::from_raw_parts(ptr, len) };
    std::str::from_utf8(bytes)
        .map_err(|e| fail(FfxpStatus::InvalidUtf8, format!("{what}: not UTF-8 ({e})")))
}

/// Writes `value` through `out`, or fails if `out` is null.
///
/// # Safety
/// `out` must be null or valid for a write of `T`.
unsafe fn put<T>(out: *mut T, value: T) -> FfxpStatus {
    if out.is_null() {
        return fail(FfxpStatus::NullPointer, "output pointer is null");
    }
    // SAFETY: non-null, and the caller promises it is valid for writes.
    unsafe { out.write(value) };
    FfxpStatus::Ok
}

fn node(handle: u64) -> Result<std::sync::Arc<peer::Node>, FfxpStatus> {
    handles::get(handle).ok_or_else(|| {
        fail(
            FfxpStatus::InvalidHandle,
            "unknown handle (never created, or already shut down)",
        )
    })
}

/// Copies this thread's last error message into `buf` (`cap` bytes, not NUL-terminated) and
/// its full length into `*out_len`. Too small a buffer gets [`FfxpStatus::BufferTooSmall`] and
/// the length needed.
///
/// # Safety
/// `buf` must be null or valid for `cap` bytes of writes; `out_len` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ffxp_last_error(
    buf: *mut u8,
    cap: usize,
    out_len: *mut usize,
) -> FfxpStatus {
    guard(|| {
        let message = status::last();
        // SAFETY: forwarded from the caller's promise on `out_len`.
        let s = unsafe { put(out_len, message.len()) };
        if s != FfxpStatus::Ok {
            return s;
        }
        if message.len() > cap || (buf.is_null() && !message.is_empty()) {
            return FfxpStatus::BufferTooSmall;
        }
        if !message.is_empty() {
            // SAFETY: `buf` is non-null and holds `cap >= message.len()` bytes (caller's promise).
            unsafe { std::ptr::copy_nonoverlapping(message.as_ptr(), buf, message.len()) };
        }
        FfxpStatus::Ok
    })
}

/// Starts a node. `identity` is the key file (created if missing), `data_dir` holds downloads
/// and pins, `phonebook` one phone-book URL (empty: none), `name` our player name ("First
/// Last@World"; needed with a phone book), `listen` a socket address ("0.0.0.0:0" if empty).
///
/// # Safety
/// Each string pointer must be null (with length 0) or point to its length in readable bytes;
/// `out_handle` must be valid for a write.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn ffxp_node_create(
    identity: *const u8,
    identity_len: usize,
    data_dir: *const u8,
    data_dir_len: usize,
    phonebook: *const u8,
    phonebook_len: usize,
    name: *const u8,
    name_len: usize,
    listen: *const u8,
    listen_len: usize,
    out_handle: *mut u64,
) -> FfxpStatus {
    guard(|| {
        let run = || -> Result<u64, FfxpStatus> {
            if out_handle.is_null() {
                return Err(fail(FfxpStatus::NullPointer, "out_handle is null"));
            }
            // SAFETY (all five): forwarded from the caller's promise on each pointer + length.
            let identity = unsafe { text(identity, identity_len, "identity") }?;
            let data_dir = unsafe { text(data_dir, data_dir_len, "data_dir") }?;
            let phonebook = unsafe { text(phonebook, phonebook_len, "phonebook") }?;
            let name = unsafe { text(name, name_len, "name") }?;
            let listen = unsafe { text(listen, listen_len, "listen") }?;
            if identity.is_empty() || data_dir.is_empty() {
                return Err(fail(
                    FfxpStatus::InvalidArgument,
                    "identity and data_dir are required",
                ));
            }
            // Friends-only with no friends until ffxp_node_set_friends or
            // ffxp_node_set_visibility says otherwise: nobody can find a new node.
            let mut config = NodeConfig::new(identity, data_dir);
            if !phonebook.is_empty() {
                config.phonebooks = vec![phonebook.to_owned()];
            }
            config.name = (!name.is_empty()).then(|| name.to_owned());
            if !listen.is_empty() {
                config.listen = listen
                    .parse()
                    .map_err(|e| fail(FfxpStatus::InvalidArgument, format!("listen: {e}")))?;
            }
            let node = peer::Node::start(config)
                .map_err(|e| fail(FfxpStatus::StartFailed, e.to_string()))?;
            handles::insert(node).ok_or_else(|| {
                fail(
                    FfxpStatus::StartFailed,
                    format!("more than {} nodes", handles::MAX_NODES),
                )
            })
        };
        match run() {
            // SAFETY: checked non-null above; the caller promises it is valid for a write.
            Ok(h) => unsafe { put(out_handle, h) },
            Err(s) => s,
        }
    })
}

/// Shares the files of folder `dir` (blocks while it is hashed; the index makes a restart fast).
///
/// # Safety
/// `dir` must be null (with length 0) or point to `dir_len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ffxp_node_share(
    handle: u64,
    dir: *const u8,
    dir_len: usize,
) -> FfxpStatus {
    guard(|| {
        let node = match node(handle) {
            Ok(n) => n,
            Err(s) => return s,
        };
        // SAFETY: forwarded from the caller's promise on `dir`.
        let dir = match unsafe { text(dir, dir_len, "dir") } {
            Ok(d) => d,
            Err(s) => return s,
        };
        match node.share(dir.as_ref()) {
            Ok(()) => FfxpStatus::Ok,
            Err(e) => fail(FfxpStatus::InvalidArgument, format!("share: {e}")),
        }
    })
}

/// Starts looking player `name` up; [`FfxpEventKind::Found`] or [`FfxpEventKind::Failed`]
/// follows with the id written to `*out_op`.
///
/// # Safety
/// `name` must point to `name_len` readable bytes; `out_op` must be valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ffxp_node_lookup(
    handle: u64,
    name: *const u8,
    name_len: usize,
    out_op: *mut u64,
) -> FfxpStatus {
    guard(|| {
        let node = match node(handle) {
            Ok(n) => n,
            Err(s) => return s,
        };
        if out_op.is_null() {
            return fail(FfxpStatus::NullPointer, "out_op is null");
        }
        // SAFETY: forwarded from the caller's promise on `name`.
        match unsafe { text(name, name_len, "name") } {
            // SAFETY: checked non-null; the caller promises it is valid for a write.
            Ok(n) => unsafe { put(out_op, node.start_lookup(n)) },
            Err(s) => s,
        }
    })
}

/// Starts fetching the file whose hash is `hash` (hex text) from player `player`; progress,
/// then done or failed, follow with the id written to `*out_op`. The file lands in
/// `<data_dir>/downloads/<hash>`.
///
/// # Safety
/// Both strings must point to their length in readable bytes; `out_op` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ffxp_node_fetch(
    handle: u64,
    hash: *const u8,
    hash_len: usize,
    player: *const u8,
    player_len: usize,
    out_op: *mut u64,
) -> FfxpStatus {
    guard(|| {
        let node = match node(handle) {
            Ok(n) => n,
            Err(s) => return s,
        };
        if out_op.is_null() {
            return fail(FfxpStatus::NullPointer, "out_op is null");
        }
        // SAFETY: forwarded from the caller's promise on each string.
        let (hash, player) = match unsafe {
            (
                text(hash, hash_len, "hash"),
                text(player, player_len, "player"),
            )
        } {
            (Ok(h), Ok(p)) => (h, p),
            (Err(s), _) | (_, Err(s)) => return s,
        };
        let hash: FileHash = match hash.parse() {
            Ok(h) => h,
            Err(e) => return fail(FfxpStatus::InvalidArgument, format!("hash: {e}")),
        };
        let op = node.fetch(hash, vec![player.to_owned()], vec![]);
        // SAFETY: checked non-null; the caller promises it is valid for a write.
        unsafe { put(out_op, op) }
    })
}

/// Cancels operation `op`; a [`FfxpEventKind::Failed`] event ("cancelled") follows.
#[unsafe(no_mangle)]
pub extern "C" fn ffxp_node_cancel(handle: u64, op: u64) -> FfxpStatus {
    guard(|| match node(handle) {
        Ok(n) if n.cancel(op) => FfxpStatus::Ok,
        Ok(_) => fail(
            FfxpStatus::UnknownOperation,
            format!("operation {op} is not running"),
        ),
        Err(s) => s,
    })
}

/// Changes who may find us: 0 public (anyone registered), 1 friends only (the keys of the last
/// [`ffxp_node_set_friends`]; none: nobody). A new node is friends-only with no friends.
#[unsafe(no_mangle)]
pub extern "C" fn ffxp_node_set_visibility(handle: u64, visibility: u32) -> FfxpStatus {
    guard(|| {
        let node = match node(handle) {
            Ok(n) => n,
            Err(s) => return s,
        };
        let v = match visibility {
            0 => Visibility::Public,
            1 => Visibility::Friends,
            other => return fail(FfxpStatus::InvalidArgument, format!("visibility {other}")),
        };
        let (_, friends) = node.visibility();
        node.set_visibility(v, friends);
        FfxpStatus::Ok
    })
}

/// Makes us friends-only, visible to exactly `count` keys of 32 bytes each, packed at `keys`
/// (at most [`peer::MAX_FRIENDS`]; `count` 0: nobody, and `keys` may be null). The keys are
/// what [`ffxp_node_key`] gives on each friend's machine.
///
/// # Safety
/// `keys` must be null (only with `count` 0) or point to `count * 32` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ffxp_node_set_friends(
    handle: u64,
    keys: *const u8,
    count: usize,
) -> FfxpStatus {
    guard(|| {
        let node = match node(handle) {
            Ok(n) => n,
            Err(s) => return s,
        };
        if count > peer::MAX_FRIENDS {
            return fail(
                FfxpStatus::InvalidArgument,
                format!("{count} friends; at most {}", peer::MAX_FRIENDS),
            );
        }
        if keys.is_null() && count > 0 {
            return fail(FfxpStatus::NullPointer, "keys is null");
        }
        let bytes = if count == 0 {
            &[][..]
        } else {
            // SAFETY: non-null; the caller promises `count * 32` readable bytes.
            unsafe { std::slice::from_raw_parts(keys, count * 32) }
        };
        let mut friends = Vec::with_capacity(count);
        for (i, k) in bytes.chunks_exact(32).enumerate() {
            let raw: [u8; 32] = k.try_into().expect("32 bytes");
            match peer::PeerId::from_bytes(raw) {
                Ok(id) if !friends.contains(&id) => friends.push(id),
                Ok(_) => {
                    return fail(
                        FfxpStatus::InvalidArgument,
                        format!("friend {i} listed twice"),
                    );
                }
                Err(e) => {
                    return fail(FfxpStatus::InvalidArgument, format!("friend {i}: {e}"));
                }
            }
        }
        node.set_visibility(Visibility::Friends, friends);
        FfxpStatus::Ok
    })
}

/// Writes our key (32 bytes) to `out`: what friends pass to [`ffxp_node_set_friends`].
///
/// # Safety
/// `out` must be null or valid for a write of 32 bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ffxp_node_key(handle: u64, out: *mut [u8; 32]) -> FfxpStatus {
    guard(|| {
        let node = match node(handle) {
            Ok(n) => n,
            Err(s) => return s,
        };
        // SAFETY: `put` checks for null; the caller promises room for 32 bytes.
        unsafe { put(out, *node.id().as_bytes()) }
    })
}

/// Takes the oldest event into `*out` without blocking: [`FfxpStatus::Ok`], or
/// [`FfxpStatus::NoEvent`] when none is queued.
///
/// # Safety
/// `out` must be valid for a write of an [`FfxpEvent`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ffxp_node_poll_event(handle: u64, out: *mut FfxpEvent) -> FfxpStatus {
    guard(|| {
        let node = match node(handle) {
            Ok(n) => n,
            Err(s) => return s,
        };
        if out.is_null() {
            return fail(FfxpStatus::NullPointer, "out is null");
        }
        match node.poll_event() {
            // SAFETY: checked non-null; the caller promises it is valid for a write.
            Some(e) => unsafe { put(out, FfxpEvent::from(e)) },
            None => FfxpStatus::NoEvent,
        }
    })
}

/// Stops the node: cancels its operations, unregisters (waiting at most the shutdown bound),
/// closes its socket. The handle is dead afterwards: a second call is
/// [`FfxpStatus::InvalidHandle`].
#[unsafe(no_mangle)]
pub extern "C" fn ffxp_node_shutdown(handle: u64) -> FfxpStatus {
    guard(|| match handles::remove(handle) {
        Some(node) => {
            smol::block_on(node.shutdown());
            FfxpStatus::Ok
        }
        None => fail(
            FfxpStatus::InvalidHandle,
            "unknown handle (never created, or already shut down)",
        ),
    })
}
