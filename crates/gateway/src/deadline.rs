//! Deadline arithmetic that cannot panic.
//!
//! The configuration rejects timeouts above a day, but `Instant + Duration` panics on overflow, so
//! every deadline is computed here whatever the value.

use std::time::Duration;

use tokio::time::Instant;

/// The maximum distance to a deadline, about 30 years. A running process never reaches it, and
/// adding it to the monotonic clock does not overflow.
const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 24 * 60 * 60);

/// Returns the instant `duration` after `start`, capping `duration` at about 30 years.
///
/// NOTE: if even the capped sum overflowed the clock's range, it returns `start`, so the deadline
/// has passed at once. No platform that tokio supports gets there.
pub(crate) fn after(start: Instant, duration: Duration) -> Instant {
    start.checked_add(duration.min(FAR_FUTURE)).unwrap_or(start)
}

/// Returns the earlier of `deadline` and `duration` from now.
pub(crate) fn within(deadline: Instant, duration: Duration) -> Instant {
    deadline.min(after(Instant::now(), duration))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_duration_does_not_panic() {
        let start = Instant::now();
        let deadline = after(start, Duration::MAX);
        assert!(deadline > after(start, Duration::from_secs(20 * 365 * 24 * 60 * 60)));
        assert_eq!(within(start, Duration::MAX), start);
    }

    #[test]
    fn small_duration_is_exact() {
        let start = Instant::now();
        assert_eq!(
            after(start, Duration::from_millis(250)),
            start + Duration::from_millis(250)
        );
    }
}
