//! The context of one attempt, and the handle that records a late outcome.

use std::cell::Cell;
use std::sync::{Arc, Mutex, PoisonError};

use crate::bulkhead::BulkheadPermit;
use crate::circuit_breaker::CircuitPermit;
use crate::outcome::{NeutralReason, Outcome};

/// The context an operation receives for each attempt.
///
/// The operation is called once per attempt, so a retried request gets `number` 1, 2, ... and an
/// alternate provider gets its own name in `provider`.
pub struct Attempt<'a> {
    provider: &'a str,
    number: u32,
    deferred: Cell<Option<Arc<Mutex<Deferred>>>>,
}

impl std::fmt::Debug for Attempt<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attempt")
            .field("provider", &self.provider)
            .field("number", &self.number)
            .finish_non_exhaustive()
    }
}

impl<'a> Attempt<'a> {
    pub(crate) fn new(provider: &'a str, number: u32) -> Self {
        Attempt {
            provider,
            number,
            deferred: Cell::new(None),
        }
    }

    /// Returns the name of the provider this attempt is for.
    pub fn provider(&self) -> &'a str {
        self.provider
    }

    /// Returns the attempt's number on this provider: 0 for the first attempt, 1 for the first retry.
    pub fn number(&self) -> u32 {
        self.number
    }

    /// Keeps this attempt's circuit-breaker permit and bulkhead slot after the operation returns
    /// successfully, until the returned handle records the real outcome or is dropped.
    ///
    /// Use it for a response whose outcome is known late, such as a stream: return `Ok` once the
    /// response has started, and record how it ended on the handle. If the attempt fails instead,
    /// the manager records the failure as usual and the handle records nothing. Call it at most
    /// once per attempt: a second call hands the permits to the second handle only.
    ///
    /// # Examples
    ///
    /// ```
    /// use resilience::{Manager, Config, Outcome};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let manager: Manager<String> = Manager::new(Config::default()).unwrap();
    /// let (stream, handle) = manager
    ///     .execute("llm", |attempt| {
    ///         let handle = attempt.defer();
    ///         async move { Ok::<_, std::io::Error>(("first chunk", handle)) }
    ///     })
    ///     .await
    ///     .unwrap();
    /// // The bulkhead slot stays taken while the stream runs.
    /// assert_eq!(manager.stats().providers["llm"].bulkhead.as_ref().unwrap().active, 1);
    /// handle.record(Outcome::Success);
    /// assert_eq!(manager.stats().providers["llm"].bulkhead.as_ref().unwrap().active, 0);
    /// # let _ = stream;
    /// # }
    /// ```
    pub fn defer(&self) -> OutcomeHandle {
        let shared = Arc::new(Mutex::new(Deferred::default()));
        self.deferred.set(Some(shared.clone()));
        OutcomeHandle {
            shared,
            recorded: false,
        }
    }

    pub(crate) fn take_deferred(&self) -> Option<Arc<Mutex<Deferred>>> {
        self.deferred.take()
    }
}

/// The permits of a deferred attempt, and an outcome recorded before they arrived.
#[derive(Debug, Default)]
pub(crate) struct Deferred {
    circuit: Option<CircuitPermit>,
    slot: Option<BulkheadPermit>,
    early_outcome: Option<Outcome>,
    done: bool,
}

impl Deferred {
    /// Hands over the attempt's permits; an outcome recorded already is applied at once.
    pub(crate) fn hand_over(
        &mut self,
        circuit: Option<CircuitPermit>,
        slot: Option<BulkheadPermit>,
    ) {
        match self.early_outcome.take() {
            Some(outcome) => {
                if let Some(circuit) = circuit {
                    circuit.record(outcome);
                }
                drop(slot);
            }
            None => {
                self.circuit = circuit;
                self.slot = slot;
            }
        }
    }
}

/// Records the outcome of a deferred attempt and then frees its bulkhead slot.
///
/// Dropping the handle unrecorded counts the attempt as neutral (cancelled) and frees the slot at
/// once, which is what a client disconnecting from a stream should do.
#[must_use = "dropping the handle records the attempt as cancelled"]
#[derive(Debug)]
pub struct OutcomeHandle {
    shared: Arc<Mutex<Deferred>>,
    recorded: bool,
}

impl OutcomeHandle {
    /// Records how the attempt ended, frees the bulkhead slot, and consumes the handle.
    pub fn record(mut self, outcome: Outcome) {
        self.finish(outcome);
    }

    fn finish(&mut self, outcome: Outcome) {
        if self.recorded {
            return;
        }
        self.recorded = true;
        let (circuit, slot) = {
            let mut deferred = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
            deferred.done = true;
            if deferred.circuit.is_none() && deferred.slot.is_none() {
                deferred.early_outcome = Some(outcome);
            }
            (deferred.circuit.take(), deferred.slot.take())
        };
        if let Some(circuit) = circuit {
            circuit.record(outcome);
        }
        drop(slot);
    }
}

impl Drop for OutcomeHandle {
    fn drop(&mut self) {
        self.finish(Outcome::Neutral(NeutralReason::Cancelled));
    }
}
