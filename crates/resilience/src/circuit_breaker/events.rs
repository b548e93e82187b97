//! State changes and their delivery to a listener, in order and outside any lock.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::CircuitState;

/// A change of a circuit breaker's state, as delivered to its listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    /// The state before the change.
    pub from: CircuitState,
    /// The state after the change.
    pub to: CircuitState,
    /// The reason for the change.
    pub reason: TransitionReason,
}

/// The reason a circuit breaker changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransitionReason {
    /// `failures` consecutive failures reached the failure threshold.
    ConsecutiveFailures {
        /// The number of consecutive failures.
        failures: u32,
    },
    /// The failure rate over the sliding window reached the threshold.
    FailureRate {
        /// Failures in the window.
        failures: u64,
        /// Calls in the window.
        calls: u64,
    },
    /// The open period of this length ended, so the circuit admits probes.
    OpenTimeoutElapsed {
        /// How long the circuit was open.
        open_for: Duration,
    },
    /// A probe failed in half-open.
    ProbeFailed,
    /// Enough probes succeeded in half-open.
    ProbesSucceeded {
        /// The number of successful probes.
        successes: u32,
    },
    /// The breaker was reset.
    Reset,
}

impl std::fmt::Display for TransitionReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransitionReason::ConsecutiveFailures { failures } => {
                write!(f, "{failures} consecutive failures")
            }
            TransitionReason::FailureRate { failures, calls } => {
                write!(f, "{failures} failures in the last {calls} calls")
            }
            TransitionReason::OpenTimeoutElapsed { open_for } => {
                write!(f, "open period of {} ms elapsed", open_for.as_millis())
            }
            TransitionReason::ProbeFailed => f.write_str("a half-open probe failed"),
            TransitionReason::ProbesSucceeded { successes } => {
                write!(f, "{successes} half-open probes succeeded")
            }
            TransitionReason::Reset => f.write_str("reset"),
        }
    }
}

/// A function called with every state change.
pub type Listener = Arc<dyn Fn(&StateChange) + Send + Sync>;

/// Queues state changes under the transition lock and delivers them after it is released.
///
/// Only one thread delivers at a time, in queue order. A listener that causes another transition
/// (by calling back into the breaker) only queues it: the delivering thread picks it up next, so the
/// call never blocks on itself.
pub(crate) struct EventQueue {
    pending: Mutex<VecDeque<StateChange>>,
    delivering: AtomicBool,
    listeners: Vec<Listener>,
}

impl std::fmt::Debug for EventQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventQueue")
            .field("listeners", &self.listeners.len())
            .finish_non_exhaustive()
    }
}

impl EventQueue {
    pub(crate) fn new(listeners: Vec<Listener>) -> Self {
        EventQueue {
            pending: Mutex::new(VecDeque::new()),
            delivering: AtomicBool::new(false),
            listeners,
        }
    }

    /// Adds a change to the queue. The caller holds the transition lock, so the queue order is the
    /// order of the transitions.
    pub(crate) fn push(&self, change: StateChange) {
        if self.listeners.is_empty() {
            return;
        }
        self.lock().push_back(change);
    }

    /// Delivers queued changes unless another thread (or an outer frame of this one) is delivering.
    pub(crate) fn deliver(&self) {
        if self.listeners.is_empty() {
            return;
        }
        loop {
            if self.delivering.swap(true, Ordering::AcqRel) {
                return;
            }
            let flag = ClearOnDrop(&self.delivering);
            loop {
                let next = self.lock().pop_front();
                let Some(change) = next else { break };
                for listener in &self.listeners {
                    listener(&change);
                }
            }
            drop(flag);
            // A change queued after the last pop but before the flag was cleared has no deliverer.
            if self.lock().is_empty() {
                return;
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<StateChange>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Clears the delivering flag when delivery ends, also when a listener panics.
struct ClearOnDrop<'a>(&'a AtomicBool);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}
