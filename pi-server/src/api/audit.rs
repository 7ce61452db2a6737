//! Audit lines for suspicious events, at warn level, throttled so an attack cannot flood the
//! journal. They name the kind of event, never a player's address.

/// Most audit lines per second; the rest are counted and summarised.
pub const AUDIT_LINES_PER_SEC: u32 = 20;

/// The throttle.
#[derive(Debug, Default)]
pub struct Audit {
    window_start_ms: u64,
    lines: u32,
    suppressed: u64,
}

impl Audit {
    /// Logs `args` at warn level unless the per-second budget is spent.
    pub fn warn(&mut self, now_ms: u64, args: core::fmt::Arguments<'_>) {
        if now_ms.saturating_sub(self.window_start_ms) >= 1000 {
            if self.suppressed > 0 {
                log::warn!(
                    "audit: {} more suspicious events in the last second(s) not shown",
                    self.suppressed
                );
            }
            self.window_start_ms = now_ms;
            self.lines = 0;
            self.suppressed = 0;
        }
        if self.lines < AUDIT_LINES_PER_SEC {
            self.lines += 1;
            log::warn!("audit: {args}");
        } else {
            self.suppressed += 1;
        }
    }
}
