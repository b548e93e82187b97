//! A limit on warnings that can repeat on every request.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;

/// Events logged per one-second window; the rest are counted and reported with the next one.
const EVENTS_PER_SECOND: u64 = 10;

/// Allows [`EVENTS_PER_SECOND`] events a second and counts the suppressed ones.
#[derive(Debug)]
pub(crate) struct LogLimit {
    base: Instant,
    /// The window's second since `base` in the high 32 bits, its event count in the low 32.
    window: AtomicU64,
    suppressed: AtomicU64,
}

impl Default for LogLimit {
    fn default() -> Self {
        LogLimit {
            base: Instant::now(),
            window: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }
}

impl LogLimit {
    /// Returns the number of events suppressed since the last one logged when this one may be
    /// logged, or `None` when it is suppressed.
    pub(crate) fn allow(&self) -> Option<u64> {
        let second = self.base.elapsed().as_secs() & 0xffff_ffff;
        let allowed = self
            .window
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |packed| {
                let (window_second, count) = (packed >> 32, packed & 0xffff_ffff);
                if window_second != second {
                    Some(second << 32 | 1)
                } else if count < EVENTS_PER_SECOND {
                    Some(packed + 1)
                } else {
                    None
                }
            })
            .is_ok();
        if allowed {
            Some(self.suppressed.swap(0, Ordering::AcqRel))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}
