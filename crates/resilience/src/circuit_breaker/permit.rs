use std::sync::Arc;

use super::{Inner, Ticket};
use crate::outcome::{NeutralReason, Outcome};

/// One admitted call whose outcome is recorded later, with [`record`](Self::record).
///
/// Dropping the permit without recording counts the call as neutral (cancelled): a half-open probe
/// slot frees at once and the circuit's state does not change.
#[must_use = "dropping the permit records the call as cancelled"]
#[derive(Debug)]
pub struct CircuitPermit {
    inner: Arc<Inner>,
    ticket: Option<Ticket>,
}

impl CircuitPermit {
    pub(crate) fn new(inner: Arc<Inner>, ticket: Ticket) -> Self {
        CircuitPermit {
            inner,
            ticket: Some(ticket),
        }
    }

    /// Records the call's outcome and releases the permit.
    pub fn record(mut self, outcome: Outcome) {
        if let Some(ticket) = self.ticket.take() {
            self.inner.record(ticket, outcome);
        }
    }

    /// Returns true when the permit is one of the half-open probes.
    pub fn is_probe(&self) -> bool {
        self.ticket.is_some_and(|ticket| ticket.probe)
    }
}

impl Drop for CircuitPermit {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.inner
                .record(ticket, Outcome::Neutral(NeutralReason::Cancelled));
        }
    }
}
