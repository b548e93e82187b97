use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::CircuitState;
use crate::outcome::Outcome;

/// A snapshot of a circuit breaker's statistics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CircuitBreakerStats {
    /// The state when the snapshot was taken.
    pub state: CircuitState,
    /// Failures since the last success in the closed state.
    pub consecutive_failures: u32,
    /// Probes running now, in half-open.
    pub half_open_in_flight: u32,
    /// Milliseconds until an open circuit admits probes; 0 when it is not open.
    pub remaining_open_ms: u64,
    /// Calls that succeeded.
    pub successes: u64,
    /// Calls that failed in a way that counts against the circuit.
    pub failures: u64,
    /// Calls that failed in a way that does not count against the circuit.
    pub ignored_failures: u64,
    /// Calls with a neutral outcome: cancelled, or the caller's own error.
    pub neutral: u64,
    /// Calls rejected without running.
    pub rejections: u64,
    /// Results of calls admitted before the last state change, which changed no state.
    pub late_results: u64,
    /// State changes.
    pub transitions: u64,
    /// Calls in the failure-rate window; 0 without the failure-rate mode.
    pub window_calls: u64,
    /// Failures in the failure-rate window; 0 without the failure-rate mode.
    pub window_failures: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) successes: AtomicU64,
    pub(crate) failures: AtomicU64,
    pub(crate) ignored_failures: AtomicU64,
    pub(crate) neutral: AtomicU64,
    pub(crate) rejections: AtomicU64,
    pub(crate) late_results: AtomicU64,
    pub(crate) transitions: AtomicU64,
}

impl Counters {
    pub(crate) fn count(&self, outcome: &Outcome) {
        let counter = match outcome {
            Outcome::Success => &self.successes,
            Outcome::Failure(failure) if failure.trips_circuit => &self.failures,
            Outcome::Failure(_) => &self.ignored_failures,
            Outcome::Neutral(_) => &self.neutral,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn reset(&self) {
        for counter in [
            &self.successes,
            &self.failures,
            &self.ignored_failures,
            &self.neutral,
            &self.rejections,
            &self.late_results,
            &self.transitions,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
    }

    pub(crate) fn snapshot(&self) -> CircuitBreakerStats {
        CircuitBreakerStats {
            state: CircuitState::Closed,
            consecutive_failures: 0,
            half_open_in_flight: 0,
            remaining_open_ms: 0,
            successes: self.successes.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            ignored_failures: self.ignored_failures.load(Ordering::Relaxed),
            neutral: self.neutral.load(Ordering::Relaxed),
            rejections: self.rejections.load(Ordering::Relaxed),
            late_results: self.late_results.load(Ordering::Relaxed),
            transitions: self.transitions.load(Ordering::Relaxed),
            window_calls: 0,
            window_failures: 0,
        }
    }
}
