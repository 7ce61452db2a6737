//! Status codes (stable numeric values) and the per-thread last error message.

use std::cell::RefCell;

/// What every call returns. The values never change between versions of this ABI.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FfxpStatus {
    /// Success.
    Ok = 0,
    /// `poll_event` found nothing queued.
    NoEvent = 1,
    /// A required pointer was null.
    NullPointer = 2,
    /// A string was not UTF-8.
    InvalidUtf8 = 3,
    /// The handle is unknown, already shut down, or stale.
    InvalidHandle = 4,
    /// An argument was malformed (see the message).
    InvalidArgument = 5,
    /// The node could not start (see the message).
    StartFailed = 6,
    /// No such running operation.
    UnknownOperation = 7,
    /// The caller's buffer is too small; the needed length was written.
    BufferTooSmall = 8,
    /// A bug inside the library (a caught panic); the message says where.
    Internal = 99,
}

thread_local! {
    static LAST: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Records `message` as this thread's last error and returns `status`.
pub fn fail(status: FfxpStatus, message: impl Into<String>) -> FfxpStatus {
    LAST.with(|l| *l.borrow_mut() = message.into());
    status
}

/// This thread's last error message (empty if none).
pub fn last() -> String {
    LAST.with(|l| l.borrow().clone())
}
