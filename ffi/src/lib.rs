//! C ABI over [`peer::Node`] for game plugins (issue 12).
//!
//! Rules: every function returns an [`FfxpStatus`]; the message of the last failure on the
//! calling thread comes from [`ffxp_last_error`]. Strings are UTF-8, passed as pointer + length
//! (not NUL-terminated). Nodes are opaque `u64` handles (index + generation: a stale or forged
//! handle is [`FfxpStatus::InvalidHandle`], never undefined behaviour). Long work returns an
//! operation id; its progress and result come out of [`ffxp_node_poll_event`], which never
//! blocks and fills a caller-owned [`FfxpEvent`]. No panic crosses the boundary.
//!
//! Phone books: [`ffxp_node_create`]'s `phonebook` takes several URLs separated by whitespace
//! (at most [`FFXP_MAX_PHONEBOOKS`]); [`ffxp_node_create_ex`] also takes [`FfxpNodeOptions`]
//! (a PEM CA file for `https://` phone books). Both are checked before the node starts.
//!
//! Blocking calls, bounded: [`ffxp_node_create`] and [`ffxp_node_create_ex`] (bind a socket, read
//! the key file),
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

/// Most phone books one node registers with (the URLs of `phonebook` in [`ffxp_node_create`]).
/// The peer library sets no limit of its own: a node registers with every phone book at each
/// renewal, so a few are redundancy and more are load; this bound keeps a typo from becoming a
/// registration storm.
pub const FFXP_MAX_PHONEBOOKS: usize = 8;

/// Largest `struct_size` of [`FfxpNodeOptions`] accepted (a sanity bound before the tail beyond
/// the fields this library knows is read to check that it is zero).
pub const FFXP_NODE_OPTIONS_MAX_SIZE: usize = 4096;

/// `sizeof(FfxpNodeOptions)` of this ABI's first version (its three fields), the smallest
/// `struct_size` accepted.
const FFXP_NODE_OPTIONS_V1_SIZE: usize = 3 * std::mem::size_of::<usize>();

/// Options of [`ffxp_node_create_ex`] beyond [`ffxp_node_create`]'s arguments. Zero it, set
/// `struct_size` to `sizeof(FfxpNodeOptions)`, then set the fields wanted; a zero field means
/// "default". Later versions of this ABI only append fields: a caller built against an older
/// header passes a smaller `struct_size` (the fields it lacks are defaults); one built against a
/// newer header may pass a larger one as long as every byte beyond the fields this library knows
/// is zero (otherwise [`FfxpStatus::InvalidArgument`]: it asked for something this library
/// cannot do).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct FfxpNodeOptions {
    /// `sizeof(FfxpNodeOptions)` as the caller was compiled with (24 on 64-bit targets).
    pub struct_size: usize,
    /// Path of a PEM file of extra certificate authorities trusted for `https://` phone books,
    /// beside the bundled web roots (a private CA, or a test CA such as pebble's). UTF-8,
    /// `phonebook_ca_len` bytes; null with length 0: none. The file is read and checked at
    /// create time: unreadable, over 1 MiB, not PEM or without a certificate is
    /// [`FfxpStatus::InvalidArgument`].
    pub phonebook_ca: *const u8,
    /// Length of `phonebook_ca` in bytes.
    pub phonebook_ca_len: usize,
}

/// The phone-book URLs of `phonebook`: separated by ASCII whitespace (spaces, tabs, newlines),
/// which no URL contains; empty or blank text: none. Each URL is checked by the peer library's
/// own parser (`http://HOST[:PORT]` or `https://HOST[:PORT]`), at most [`FFXP_MAX_PHONEBOOKS`],
/// none twice. The error names the bad entry.
fn phonebook_urls(text: &str) -> Result<Vec<String>, String> {
    let urls: Vec<&str> = text
        .split(|c: char| c.is_ascii_whitespace())
        .filter(|u| !u.is_empty())
        .collect();
    if urls.len() > FFXP_MAX_PHONEBOOKS {
        return Err(format!(
            "phonebook: {} URLs; at most {FFXP_MAX_PHONEBOOKS}",
            urls.len()
        ));
    }
    for (i, url) in urls.iter().enumerate() {
        let which = format!("phonebook URL {} of {} ({url:?})", i + 1, urls.len());
        if urls[..i].contains(url) {
            return Err(format!("{which}: listed twice"));
        }
        peer::phonebook::http_client::HttpClient::new(url).map_err(|e| format!("{which}: {e}"))?;
    }
    Ok(urls.into_iter().map(str::to_owned).collect())
}

/// Reads and checks the CA file the way the peer library will use it (same parser, same
/// bounds), so that a bad file fails at create time.
fn phonebook_ca(path: &str) -> Result<std::path::PathBuf, String> {
    let path = std::path::PathBuf::from(path);
    peer::phonebook::http_client::tls_config(Some(&path)).map_err(|e| e.to_string())?;
    Ok(path)
}

/// Reads `options` (null: defaults) following the rules of [`FfxpNodeOptions`].
///
/// # Safety
/// `options` must be null or point to `struct_size` readable bytes, aligned for a `usize`.
unsafe fn read_options(options: *const FfxpNodeOptions) -> Result<FfxpNodeOptions, FfxpStatus> {
    let known = std::mem::size_of::<FfxpNodeOptions>();
    let mut out = FfxpNodeOptions {
        struct_size: known,
        phonebook_ca: std::ptr::null(),
        phonebook_ca_len: 0,
    };
    if options.is_null() {
        return Ok(out);
    }
    // SAFETY: non-null; the caller promises at least the `struct_size` field is readable.
    let size = unsafe { std::ptr::addr_of!((*options).struct_size).read() };
    let bad = |m: String| fail(FfxpStatus::InvalidArgument, format!("options: {m}"));
    // The first version of the struct already had `phonebook_ca`: no caller passes less.
    if !(FFXP_NODE_OPTIONS_V1_SIZE..=FFXP_NODE_OPTIONS_MAX_SIZE).contains(&size) {
        return Err(bad(format!(
            "struct_size {size}; sizeof(FfxpNodeOptions) is {known} for this library"
        )));
    }
    // SAFETY: the fields lie within the `size >= FFXP_NODE_OPTIONS_V1_SIZE` readable bytes the
    // caller promised.
    unsafe {
        out.phonebook_ca = std::ptr::addr_of!((*options).phonebook_ca).read();
        out.phonebook_ca_len = std::ptr::addr_of!((*options).phonebook_ca_len).read();
    }
    if size > known {
        // SAFETY: the caller promised `size` readable bytes from `options`.
        let tail =
            unsafe { std::slice::from_raw_parts(options.cast::<u8>().add(known), size - known) };
        if let Some(at) = tail.iter().position(|&b| b != 0) {
            return Err(bad(format!(
                "struct_size {size}, and byte {} is set, beyond the {known} bytes of the fields \
                 this library knows (a newer header's option this library cannot honour)",
                known + at
            )));
        }
    }
    Ok(out)
}

/// Starts a node. `identity` is the key file (created if missing), `data_dir` holds downloads
/// and pins, `phonebook` the phone-book URLs (empty: none; see below), `name` our player name
/// ("First Last@World"; needed with a phone book), `listen` a socket address ("0.0.0.0:0" if
/// empty).
///
/// `phonebook` holds one URL or several separated by spaces, tabs or newlines (which URLs never
/// contain), at most [`FFXP_MAX_PHONEBOOKS`], each `http://HOST[:PORT]` or
/// `https://HOST[:PORT]`, none twice. The node registers with every one and looks players up in
/// order, so one phone book down does not stop it. A bad list is [`FfxpStatus::InvalidArgument`]
/// with the bad entry in [`ffxp_last_error`]'s message. For an `https://` phone book with a
/// private CA, see [`ffxp_node_create_ex`].
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
    // SAFETY: forwarded from the caller's promises; no options.
    unsafe {
        ffxp_node_create_ex(
            identity,
            identity_len,
            data_dir,
            data_dir_len,
            phonebook,
            phonebook_len,
            name,
            name_len,
            listen,
            listen_len,
            std::ptr::null(),
            out_handle,
        )
    }
}

/// [`ffxp_node_create`] with [`FfxpNodeOptions`] (null: the defaults, the same as
/// [`ffxp_node_create`]). Today the one option is `phonebook_ca`, a PEM file of extra CAs for
/// `https://` phone books; it is read and checked here (unreadable, not PEM, no certificate:
/// [`FfxpStatus::InvalidArgument`] with the path and the reason), whether or not a phone book
/// uses `https://`.
///
/// ```c
/// FfxpNodeOptions o = {0};
/// o.struct_size = sizeof o;
/// o.phonebook_ca = (const uint8_t *)"/etc/pebble/root.pem"; o.phonebook_ca_len = 20;
/// FfxpStatus s = ffxp_node_create_ex(id, id_len, dir, dir_len, urls, urls_len, name, name_len,
///                                    NULL, 0, &o, &handle);
/// ```
///
/// # Safety
/// As [`ffxp_node_create`]; `options` must be null or point to `options->struct_size` readable
/// bytes, and its `phonebook_ca` null (with length 0) or `phonebook_ca_len` readable bytes.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn ffxp_node_create_ex(
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
    options: *const FfxpNodeOptions,
    out_handle: *mut u64,
) -> FfxpStatus {
    guard(|| {
        let run = || -> Result<u64, FfxpStatus> {
            if out_handle.is_null() {
                return Err(fail(FfxpStatus::NullPointer, "out_handle is null"));
            }
            // SAFETY (all six): forwarded from the caller's promise on each pointer + length.
            let identity = unsafe { text(identity, identity_len, "identity") }?;
            let data_dir = unsafe { text(data_dir, data_dir_len, "data_dir") }?;
            let phonebook = unsafe { text(phonebook, phonebook_len, "phonebook") }?;
            let name = unsafe { text(name, name_len, "name") }?;
            let listen = unsafe { text(listen, listen_len, "listen") }?;
            let options = unsafe { read_options(options) }?;
            // SAFETY: forwarded from the caller's promise on `options->phonebook_ca`.
            let ca = unsafe {
                text(
                    options.phonebook_ca,
                    options.phonebook_ca_len,
                    "options.phonebook_ca",
                )
            }?;
            if identity.is_empty() || data_dir.is_empty() {
                return Err(fail(
                    FfxpStatus::InvalidArgument,
                    "identity and data_dir are required",
                ));
            }
            // Friends-only with no friends until ffxp_node_set_friends or
            // ffxp_node_set_visibility says otherwise: nobody can find a new node.
            let mut config = NodeConfig::new(identity, data_dir);
            config.phonebooks =
                phonebook_urls(phonebook).map_err(|m| fail(FfxpStatus::InvalidArgument, m))?;
            if !ca.is_empty() {
                config.phonebook_ca =
                    Some(phonebook_ca(ca).map_err(|m| fail(FfxpStatus::InvalidArgument, m))?);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phonebook_lists() {
        assert_eq!(phonebook_urls(""), Ok(vec![]));
        assert_eq!(phonebook_urls(" \n\t "), Ok(vec![]));
        assert_eq!(
            phonebook_urls("https://pb.example"),
            Ok(vec!["https://pb.example".to_owned()])
        );
        // Newlines, spaces, tabs, CRLF, runs of them, leading and trailing ones.
        assert_eq!(
            phonebook_urls(
                "\nhttp://10.0.0.1:8080\r\n  https://pb.example:8443\thttp://[::1]:9 \n"
            ),
            Ok(vec![
                "http://10.0.0.1:8080".to_owned(),
                "https://pb.example:8443".to_owned(),
                "http://[::1]:9".to_owned(),
            ])
        );
        let max: Vec<String> = (1..=FFXP_MAX_PHONEBOOKS)
            .map(|i| format!("http://127.0.0.1:{i}"))
            .collect();
        assert_eq!(phonebook_urls(&max.join("\n")), Ok(max.clone()));
        let too_many = format!("{} http://127.0.0.1:99", max.join(" "));
        let e = phonebook_urls(&too_many).unwrap_err();
        assert!(e.contains("9 URLs; at most 8"), "{e}");
    }

    #[test]
    fn bad_phonebook_entries_are_named() {
        for (text, entry, why) in [
            (
                "ftp://pb.example",
                "URL 1 of 1 (\"ftp://pb.example\")",
                "must be http://",
            ),
            (
                "http://127.0.0.1:1 ftp://pb.example",
                "URL 2 of 2 (\"ftp://pb.example\")",
                "must be http://",
            ),
            ("http://", "URL 1 of 1 (\"http://\")", "must be http://"),
            ("pb.example", "(\"pb.example\")", "must be http://"),
            (
                "HTTPS://pb.example",
                "(\"HTTPS://pb.example\")",
                "must be http://",
            ),
            ("http://pb.example:notaport", "notaport", "must be http://"),
            (
                "http://pb.example/some/path",
                "some/path",
                "must be http://",
            ),
            (
                "http://a:1\nhttp://b:2\nhttp://a:1",
                "URL 3 of 3",
                "listed twice",
            ),
        ] {
            let e = phonebook_urls(text).unwrap_err();
            assert!(e.contains(entry) && e.contains(why), "{text:?}: {e}");
        }
    }

    #[test]
    fn ca_files_are_checked() {
        let dir = std::env::temp_dir().join(format!("ffxp-ca-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let e = phonebook_ca(missing.to_str().unwrap()).unwrap_err();
        assert!(
            e.contains("missing.pem") && e.contains("phone-book CA file"),
            "{e}"
        );
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let e = phonebook_ca(junk.to_str().unwrap()).unwrap_err();
        assert!(e.contains("no PEM certificate"), "{e}");
        let e = phonebook_ca(dir.to_str().unwrap()).unwrap_err();
        assert!(e.contains("phone-book CA file"), "a folder: {e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn options(size: usize) -> [usize; 8] {
        let mut raw = [0usize; 8];
        raw[0] = size;
        raw
    }

    #[test]
    fn options_struct_sizes() {
        // SAFETY (all): null, or pointers to 8 readable usizes, more than any struct_size used.
        let o = unsafe { read_options(std::ptr::null()) }.unwrap();
        assert!(o.phonebook_ca.is_null() && o.phonebook_ca_len == 0);
        let ca = b"/ca.pem";
        let mut raw = options(size_of::<FfxpNodeOptions>());
        raw[1] = ca.as_ptr() as usize;
        raw[2] = ca.len();
        let o = unsafe { read_options(raw.as_ptr().cast()) }.unwrap();
        assert_eq!(
            (o.phonebook_ca, o.phonebook_ca_len),
            (ca.as_ptr(), ca.len())
        );
        // A newer caller's larger struct with its new fields zero: fine.
        raw[0] = size_of::<[usize; 8]>();
        assert!(unsafe { read_options(raw.as_ptr().cast()) }.is_ok());
        // ... with one set: refused, naming the byte.
        raw[5] = 1;
        assert_eq!(
            unsafe { read_options(raw.as_ptr().cast()) }.unwrap_err(),
            FfxpStatus::InvalidArgument
        );
        assert!(
            status::last().contains("byte 40 is set"),
            "{}",
            status::last()
        );
        for size in [0, 8, 23, FFXP_NODE_OPTIONS_MAX_SIZE + 1] {
            let raw = options(size);
            assert_eq!(
                unsafe { read_options(raw.as_ptr().cast()) }.unwrap_err(),
                FfxpStatus::InvalidArgument,
                "struct_size {size}"
            );
            assert!(status::last().contains("struct_size"));
        }
    }

    fn create(phonebook: &str, ca: Option<&str>) -> (FfxpStatus, String) {
        let dir = std::env::temp_dir().join(format!("ffxp-create-test-{}", std::process::id()));
        let (id, data) = (dir.join("id.key"), dir.to_str().unwrap().to_owned());
        let id = id.to_str().unwrap().to_owned();
        let (name, listen) = ("Unit Test@Lich", "127.0.0.1:0");
        let ca = ca.unwrap_or("");
        let o = FfxpNodeOptions {
            struct_size: size_of::<FfxpNodeOptions>(),
            phonebook_ca: ca.as_ptr(),
            phonebook_ca_len: ca.len(),
        };
        let mut h = 0u64;
        // SAFETY: every pointer + length is a live &str; `o` and `h` are locals.
        let s = unsafe {
            ffxp_node_create_ex(
                id.as_ptr(),
                id.len(),
                data.as_ptr(),
                data.len(),
                phonebook.as_ptr(),
                phonebook.len(),
                name.as_ptr(),
                name.len(),
                listen.as_ptr(),
                listen.len(),
                &o,
                &mut h,
            )
        };
        if s == FfxpStatus::Ok {
            assert_eq!(ffxp_node_shutdown(h), FfxpStatus::Ok);
        }
        (s, status::last())
    }

    #[test]
    fn create_checks_phonebooks_and_ca_first() {
        let (s, m) = create("http://127.0.0.1:1 ftp://pb.example", None);
        assert_eq!(s, FfxpStatus::InvalidArgument);
        assert!(m.contains("ftp://pb.example"), "{m}");
        let (s, m) = create("http://127.0.0.1:1", Some("/nonexistent/ca.pem"));
        assert_eq!(s, FfxpStatus::InvalidArgument);
        assert!(m.contains("/nonexistent/ca.pem"), "{m}");
        // Two phone books, one of them down: the node starts (it keeps retrying that one).
        let (s, m) = create("http://127.0.0.1:1\nhttp://127.0.0.1:2", None);
        assert_eq!(s, FfxpStatus::Ok, "{m}");
    }
}
