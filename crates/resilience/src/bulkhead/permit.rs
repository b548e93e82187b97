use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A bulkhead slot held until this permit is dropped.
#[must_use = "the slot is released as soon as the permit is dropped"]
#[derive(Debug)]
pub struct BulkheadPermit {
    held: Held,
    waited: Duration,
}

#[derive(Debug)]
enum Held {
    Owned(#[allow(dead_code)] OwnedSemaphorePermit),
    /// A slot whose borrowed permit was forgotten; dropping it adds the permit back.
    Returning(Arc<Semaphore>),
}

impl BulkheadPermit {
    pub(crate) fn new(permit: OwnedSemaphorePermit, waited: Duration) -> Self {
        BulkheadPermit {
            held: Held::Owned(permit),
            waited,
        }
    }

    pub(crate) fn returning(semaphore: Arc<Semaphore>, waited: Duration) -> Self {
        BulkheadPermit {
            held: Held::Returning(semaphore),
            waited,
        }
    }

    /// Returns how long the caller waited in the queue; zero when a slot was free at once.
    pub fn waited(&self) -> Duration {
        self.waited
    }
}

impl Drop for BulkheadPermit {
    fn drop(&mut self) {
        if let Held::Returning(semaphore) = &self.held {
            semaphore.add_permits(1);
        }
    }
}
