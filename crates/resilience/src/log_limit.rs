//! A limit on log events that can repeat on every request, such as rejections and retries.
//!
//! The patterns use it for their own events; it is public so that an application built on them can
//! limit its per-request warnings the same way.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;

/// Events allowed per one-second window before the rest are counted instead of logged.
pub const EVENTS_PER_SECOND: u64 = 10;

/// Allows at most [`EVENTS_PER_SECOND`] events a second and counts the suppressed ones, so that the
/// next event allowed can report how many were left out.
///
/// # Examples
///
/// ```
/// use resilience::log_limit::LogLimit;
///
/// let limit = LogLimit::default();
/// if let Some(suppressed) = limit.allow() {
///     tracing::warn!(suppressed, "upstream failed");
/// }
/// ```
#[derive(Debug)]
pub struct LogLimit {
    base: Instant,
    /// The current window's second (since `base`) in the high 32 bits, its event count in the low 32.
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
    /// Returns `Some(suppressed)` when the event may be logged, with the number of events left out
    /// since the last one logged, or `None` when it is left out.
    pub fn allow(&self) -> Option<u64> {
        let second = Instant::now()
            .saturating_duration_since(self.base)
            .as_secs()
            & 0xffff_ffff;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn limit_counts_suppressed_events() {
        let limit = LogLimit::default();
        for _ in 0..EVENTS_PER_SECOND {
            assert_eq!(limit.allow(), Some(0));
        }
        assert_eq!(limit.allow(), None);
        assert_eq!(limit.allow(), None);

        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(limit.allow(), Some(2));
        assert_eq!(limit.allow(), Some(0));
    }
}
