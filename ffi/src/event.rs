//! Events as a plain C struct the caller owns.

use peer::{Event, Registration};

/// Longest message an event carries (longer ones are cut at a character boundary).
pub const FFXP_MESSAGE_MAX: usize = 256;

/// What an [`FfxpEvent`] reports. Values are stable.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FfxpEventKind {
    /// Registered with the phone book (`total` = seconds the record lives).
    Registered = 1,
    /// Registration failed (`message` says why, `done` = failures, `total` = seconds to retry).
    RegistrationRetrying = 2,
    /// Not registered.
    RegistrationOff = 3,
    /// Fetch progress for `op` (`done` of `total` bytes); coalesced.
    Progress = 4,
    /// Lookup `op` found a player (`key`).
    Found = 5,
    /// Operation `op` finished.
    Done = 6,
    /// Operation `op` failed or was cancelled (`message`).
    Failed = 7,
}

/// One event, filled by `ffxp_node_poll_event` into memory the caller owns.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct FfxpEvent {
    /// What happened.
    pub kind: FfxpEventKind,
    /// The operation (0 for registration events).
    pub op: u64,
    /// Bytes done, or failures (see the kind).
    pub done: u64,
    /// Bytes in all, or seconds (see the kind).
    pub total: u64,
    /// A player's key (Found).
    pub key: [u8; 32],
    /// Bytes used in `message`.
    pub message_len: u32,
    /// UTF-8 text, not NUL-terminated.
    pub message: [u8; FFXP_MESSAGE_MAX],
}

impl FfxpEvent {
    fn new(kind: FfxpEventKind, op: u64) -> Self {
        FfxpEvent {
            kind,
            op,
            done: 0,
            total: 0,
            key: [0; 32],
            message_len: 0,
            message: [0; FFXP_MESSAGE_MAX],
        }
    }

    fn with_message(mut self, text: &str) -> Self {
        let mut end = text.len().min(FFXP_MESSAGE_MAX);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        self.message[..end].copy_from_slice(&text.as_bytes()[..end]);
        self.message_len = end as u32;
        self
    }
}

impl From<Event> for FfxpEvent {
    fn from(e: Event) -> Self {
        use FfxpEventKind as K;
        match e {
            Event::Registration(Registration::Registered { ttl_secs }) => FfxpEvent {
                total: ttl_secs,
                ..FfxpEvent::new(K::Registered, 0)
            },
            Event::Registration(Registration::Retrying {
                reason,
                failures,
                retry_in_secs,
            }) => FfxpEvent {
                done: u64::from(failures),
                total: retry_in_secs,
                ..FfxpEvent::new(K::RegistrationRetrying, 0)
            }
            .with_message(&reason),
            Event::Registration(Registration::Off) => FfxpEvent::new(K::RegistrationOff, 0),
            Event::Progress {
                op, done, total, ..
            } => FfxpEvent {
                done,
                total,
                ..FfxpEvent::new(K::Progress, op)
            },
            Event::Found { op, key } => FfxpEvent {
                key: *key.as_bytes(),
                ..FfxpEvent::new(K::Found, op)
            },
            Event::Done { op } => FfxpEvent::new(K::Done, op),
            Event::Failed { op, reason } => FfxpEvent::new(K::Failed, op).with_message(&reason),
        }
    }
}
