//! One provider's metric handles, created once with its stack. They record per attempt or per
//! transition what no statistic counts, and recording touches only atomics.

use std::sync::atomic::{AtomicU64, Ordering};

use super::histogram::{DurationHistogram, CALL_DURATION_BOUNDS, QUEUE_WAIT_BOUNDS};
use crate::circuit_breaker::{CircuitState, StateChange};
use crate::outcome::{FailureClass, NeutralReason, Outcome};

/// The values of the `outcome` label of `calls_total`, indexed by [`outcome_index`].
pub(crate) const OUTCOME_LABELS: [&str; 13] = [
    "success",
    "transport",
    "timeout",
    "server",
    "overloaded",
    "rate_limited",
    "quota_exhausted",
    "credentials",
    "not_found",
    "rejected",
    "other",
    "caller_error",
    "cancelled",
];

const CANCELLED: usize = 12;

/// The circuit states, indexed as the `transitions` array of [`ProviderMetrics`] is.
pub(crate) const STATES: [CircuitState; 3] = [
    CircuitState::Closed,
    CircuitState::HalfOpen,
    CircuitState::Open,
];

/// The per-attempt and per-transition records of one provider.
#[derive(Debug)]
pub(crate) struct ProviderMetrics {
    /// How long each call that ran took, from taking its bulkhead slot to its result.
    pub(crate) call_duration: DurationHistogram,
    /// How long each attempt waited for a bulkhead slot, whether it got one or timed out.
    pub(crate) queue_wait: DurationHistogram,
    outcomes: [AtomicU64; OUTCOME_LABELS.len()],
    /// Transitions counted by `[from][to]`, indexed as [`STATES`].
    transitions: [[AtomicU64; 3]; 3],
}

impl Default for ProviderMetrics {
    fn default() -> Self {
        ProviderMetrics {
            call_duration: DurationHistogram::new(CALL_DURATION_BOUNDS),
            queue_wait: DurationHistogram::new(QUEUE_WAIT_BOUNDS),
            outcomes: Default::default(),
            transitions: Default::default(),
        }
    }
}

impl ProviderMetrics {
    /// Counts one call's outcome.
    pub(crate) fn count_outcome(&self, outcome: &Outcome) {
        self.outcomes[outcome_index(outcome)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one circuit transition; registered as the breaker's state-change listener.
    pub(crate) fn count_transition(&self, change: &StateChange) {
        self.transitions[state_index(change.from)][state_index(change.to)]
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Returns the calls counted for each entry of [`OUTCOME_LABELS`], in order.
    pub(crate) fn outcome_counts(&self) -> [u64; OUTCOME_LABELS.len()] {
        std::array::from_fn(|index| self.outcomes[index].load(Ordering::Relaxed))
    }

    /// Returns the transitions counted from `from` to `to`.
    pub(crate) fn transition_count(&self, from: CircuitState, to: CircuitState) -> u64 {
        self.transitions[state_index(from)][state_index(to)].load(Ordering::Relaxed)
    }
}

/// Counts an attempt's outcome once: with [`finish`](Self::finish), or as `cancelled` when the
/// attempt's future is dropped before it ends.
#[derive(Debug)]
pub(crate) struct AttemptRecorder<'a> {
    metrics: &'a ProviderMetrics,
    finished: bool,
}

impl<'a> AttemptRecorder<'a> {
    pub(crate) fn new(metrics: &'a ProviderMetrics) -> Self {
        AttemptRecorder {
            metrics,
            finished: false,
        }
    }

    pub(crate) fn finish(mut self, outcome: &Outcome) {
        self.finished = true;
        self.metrics.count_outcome(outcome);
    }
}

impl Drop for AttemptRecorder<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.metrics.outcomes[CANCELLED].fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn outcome_index(outcome: &Outcome) -> usize {
    match outcome {
        Outcome::Success => 0,
        Outcome::Failure(failure) => match failure.class {
            FailureClass::Transport => 1,
            FailureClass::Timeout => 2,
            FailureClass::Server => 3,
            FailureClass::Overloaded => 4,
            FailureClass::RateLimited => 5,
            FailureClass::QuotaExhausted => 6,
            FailureClass::Credentials => 7,
            FailureClass::NotFound => 8,
            FailureClass::Rejected => 9,
            FailureClass::Other => 10,
        },
        Outcome::Neutral(NeutralReason::CallerError) => 11,
        Outcome::Neutral(NeutralReason::Cancelled) => CANCELLED,
    }
}

fn state_index(state: CircuitState) -> usize {
    match state {
        CircuitState::Closed => 0,
        CircuitState::HalfOpen => 1,
        CircuitState::Open => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_labels_match_classes() {
        assert_eq!(OUTCOME_LABELS[outcome_index(&Outcome::Success)], "success");
        for class in FailureClass::ALL {
            let index = outcome_index(&Outcome::failure(class));
            assert_eq!(OUTCOME_LABELS[index], class.as_str());
        }
        let caller_error = Outcome::Neutral(NeutralReason::CallerError);
        assert_eq!(OUTCOME_LABELS[outcome_index(&caller_error)], "caller_error");
        let cancelled = Outcome::Neutral(NeutralReason::Cancelled);
        assert_eq!(OUTCOME_LABELS[outcome_index(&cancelled)], "cancelled");
    }

    #[test]
    fn state_indexes_match_states() {
        for (index, state) in STATES.into_iter().enumerate() {
            assert_eq!(state_index(state), index);
        }
    }

    #[test]
    fn dropped_recorder_counts_cancelled() {
        let metrics = ProviderMetrics::default();
        AttemptRecorder::new(&metrics).finish(&Outcome::Success);
        drop(AttemptRecorder::new(&metrics));

        let counts = metrics.outcome_counts();
        assert_eq!(counts[0], 1);
        assert_eq!(counts[CANCELLED], 1);
        assert_eq!(counts.iter().sum::<u64>(), 2);
    }
}
