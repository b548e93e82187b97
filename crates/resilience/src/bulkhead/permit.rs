use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;

/// A bulkhead slot held until this permit is dropped.
#[must_use = "the slot is released as soon as the permit is dropped"]
#[derive(Debug)]
pub struct BulkheadPermit {
    _permit: OwnedSemaphorePermit,
    waited: Duration,
}

impl BulkheadPermit {
    pub(crate) fn new(permit: OwnedSemaphorePermit, waited: Duration) -> Self {
        BulkheadPermit {
            _permit: permit,
            waited,
        }
    }

    /// Returns how long the caller waited in the queue; zero when a slot was free at once.
    pub fn waited(&self) -> Duration {
        self.waited
    }
}
