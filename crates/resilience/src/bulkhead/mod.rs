//! The bulkhead: a limit on concurrent calls with a bounded, first-in first-out wait queue.
//!
//! At most `max_concurrent` calls run at once and at most `max_queue` callers wait for a slot. A
//! caller beyond both is rejected at once with [`BulkheadFull`]; a waiter that gets no slot within
//! `queue_timeout` gets [`QueueTimeout`]. Waiters are served in arrival order (tokio's semaphore is
//! fair), and a waiter that timed out or was dropped never runs its work later.

mod config;
mod permit;

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{AcquireError, Semaphore, TryAcquireError};
use tokio::time::Instant;

pub use self::config::{BulkheadConfig, MAX_CONCURRENT_LIMIT};
pub use self::permit::BulkheadPermit;

use crate::error::{BulkheadFull, ConfigError, Error, QueueTimeout};
use crate::log_limit::LogLimit;

/// A bulkhead. Cloning it is cheap and the clones share one set of slots.
///
/// # Examples
///
/// ```
/// use resilience::{Bulkhead, BulkheadConfig};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let bulkhead = Bulkhead::new(BulkheadConfig { max_concurrent: 2, ..Default::default() }).unwrap();
/// let value = bulkhead.execute(|| async { Ok::<_, std::io::Error>(7) }).await.unwrap();
/// assert_eq!(value, 7);
/// assert_eq!(bulkhead.stats().active, 0);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Bulkhead {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: BulkheadConfig,
    name: Option<Arc<str>>,
    semaphore: Arc<Semaphore>,
    queued: AtomicUsize,
    rejected_full: AtomicU64,
    rejected_timeout: AtomicU64,
    log_limit: LogLimit,
}

/// The reason a bulkhead gave no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BulkheadRejection {
    /// Every slot and every queue place was taken.
    #[error(transparent)]
    Full(#[from] BulkheadFull),
    /// The caller waited for longer than the queue timeout.
    #[error(transparent)]
    QueueTimeout(#[from] QueueTimeout),
}

impl<E> From<BulkheadRejection> for Error<E> {
    fn from(rejection: BulkheadRejection) -> Self {
        match rejection {
            BulkheadRejection::Full(full) => Error::BulkheadFull(full),
            BulkheadRejection::QueueTimeout(timeout) => Error::QueueTimeout(timeout),
        }
    }
}

/// A snapshot of a bulkhead's statistics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BulkheadStats {
    /// Calls running now.
    pub active: usize,
    /// Callers waiting for a slot now.
    pub queued: usize,
    /// The configured number of concurrent calls.
    pub max_concurrent: usize,
    /// The configured number of waiting callers.
    pub max_queue: usize,
    /// Callers rejected because every slot and queue place was taken.
    pub rejected_full: u64,
    /// Callers that waited for longer than the queue timeout.
    pub rejected_queue_timeout: u64,
}

impl Bulkhead {
    /// Creates a bulkhead, or returns an error naming the first invalid field.
    pub fn new(config: BulkheadConfig) -> Result<Self, ConfigError> {
        Self::with_name(config, None)
    }

    /// Creates a bulkhead whose log events carry `name` in their `provider` field.
    pub fn with_name(config: BulkheadConfig, name: Option<Arc<str>>) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Bulkhead {
            inner: Arc::new(Inner {
                semaphore: Arc::new(Semaphore::new(config.max_concurrent)),
                config,
                name,
                queued: AtomicUsize::new(0),
                rejected_full: AtomicU64::new(0),
                rejected_timeout: AtomicU64::new(0),
                log_limit: LogLimit::default(),
            }),
        })
    }

    /// Runs `operation` in a slot, waiting in the queue if none is free.
    ///
    /// # Cancel safety
    ///
    /// Dropping the returned future while it waits leaves the queue at once; dropping it while the
    /// operation runs frees the slot. Either way the operation never runs later.
    pub async fn execute<T, E, F, Fut>(&self, operation: F) -> Result<T, Error<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        // NOTE: only the permit is held, not a `Slot`, because moving a whole `Slot` into this
        // future's state made the free-slot path measurably slower in the `overhead` bench.
        let _permit = match self.inner.semaphore.try_acquire() {
            Ok(permit) => permit,
            Err(_) => self.enter_queued().await?.permit,
        };
        operation().await.map_err(Error::Operation)
    }

    /// Waits for a slot and returns it as an owned permit, which holds the slot until it is dropped:
    /// for example for as long as a streamed response lasts.
    ///
    /// # Cancel safety
    ///
    /// Dropping the returned future while it waits leaves the queue at once and takes no slot.
    pub async fn acquire(&self) -> Result<BulkheadPermit, BulkheadRejection> {
        match self.inner.semaphore.clone().try_acquire_owned() {
            Ok(permit) => Ok(BulkheadPermit::new(permit, Duration::ZERO)),
            Err(_) => {
                let semaphore = self.inner.semaphore.clone();
                let (permit, waited) = self.inner.wait(|| semaphore.acquire_owned()).await?;
                Ok(BulkheadPermit::new(permit, waited))
            }
        }
    }

    /// Returns a slot if one is free now, without waiting.
    pub fn try_acquire(&self) -> Result<BulkheadPermit, BulkheadFull> {
        match self.inner.semaphore.clone().try_acquire_owned() {
            Ok(permit) => Ok(BulkheadPermit::new(permit, Duration::ZERO)),
            Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => {
                self.inner.rejected_full.fetch_add(1, Ordering::Relaxed);
                Err(self.inner.full())
            }
        }
    }

    /// Takes a slot for the duration of a borrow, waiting in the queue if none is free. The slot
    /// can become an owned permit with [`Slot::into_permit`].
    pub(crate) async fn enter(&self) -> Result<Slot<'_>, BulkheadRejection> {
        match self.try_enter() {
            Some(slot) => Ok(slot),
            None => self.enter_queued().await,
        }
    }

    /// Takes a free slot without waiting, or returns `None` when every slot is taken.
    #[inline]
    fn try_enter(&self) -> Option<Slot<'_>> {
        let permit = self.inner.semaphore.try_acquire().ok()?;
        Some(Slot {
            permit,
            semaphore: &self.inner.semaphore,
            waited: Duration::ZERO,
        })
    }

    /// Waits in the queue for a slot. [`enter`](Self::enter) and `execute` call it only when no
    /// slot is free.
    async fn enter_queued(&self) -> Result<Slot<'_>, BulkheadRejection> {
        let semaphore = &self.inner.semaphore;
        let (permit, waited) = self.inner.wait(|| semaphore.acquire()).await?;
        Ok(Slot {
            permit,
            semaphore,
            waited,
        })
    }

    /// Returns a snapshot of the statistics.
    pub fn stats(&self) -> BulkheadStats {
        let inner = &self.inner;
        BulkheadStats {
            active: inner
                .config
                .max_concurrent
                .saturating_sub(inner.semaphore.available_permits()),
            queued: inner.queued.load(Ordering::Acquire),
            max_concurrent: inner.config.max_concurrent,
            max_queue: inner.config.max_queue,
            rejected_full: inner.rejected_full.load(Ordering::Relaxed),
            rejected_queue_timeout: inner.rejected_timeout.load(Ordering::Relaxed),
        }
    }

    /// Returns the configuration.
    pub fn config(&self) -> &BulkheadConfig {
        &self.inner.config
    }

    /// Clears the rejection counters. Running calls and waiters keep their places.
    pub fn reset_stats(&self) {
        self.inner.rejected_full.store(0, Ordering::Relaxed);
        self.inner.rejected_timeout.store(0, Ordering::Relaxed);
    }
}

impl Inner {
    fn full(&self) -> BulkheadFull {
        BulkheadFull {
            max_concurrent: self.config.max_concurrent,
            max_queue: self.config.max_queue,
        }
    }

    /// Takes a queue place, or rejects at once when the queue is full, then waits for a slot.
    async fn wait<P, F, Fut>(&self, acquire: F) -> Result<(P, Duration), BulkheadRejection>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<P, AcquireError>>,
    {
        let max_queue = self.config.max_queue;
        let joined = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                (queued < max_queue).then_some(queued + 1)
            });
        if joined.is_err() {
            self.rejected_full.fetch_add(1, Ordering::Relaxed);
            self.log_rejection("full");
            return Err(self.full().into());
        }

        let place = QueuePlace(&self.queued);
        let started = Instant::now();
        let acquired = tokio::time::timeout(self.config.queue_timeout, acquire()).await;
        drop(place);

        match acquired {
            Ok(Ok(permit)) => Ok((permit, started.elapsed())),
            // NOTE: the semaphore is never closed, so an acquire error cannot happen; it is reported
            // as a full bulkhead rather than a panic.
            Ok(Err(_closed)) => Err(self.full().into()),
            Err(_elapsed) => {
                self.rejected_timeout.fetch_add(1, Ordering::Relaxed);
                self.log_rejection("queue_timeout");
                Err(QueueTimeout {
                    waited: started.elapsed(),
                }
                .into())
            }
        }
    }

    fn log_rejection(&self, reason: &'static str) {
        if let Some(suppressed) = self.log_limit.allow() {
            tracing::debug!(
                provider = self.name.as_deref().unwrap_or(""),
                reason,
                suppressed,
                "bulkhead rejected a call"
            );
        }
    }
}

/// A slot borrowed from a bulkhead, freed when dropped.
#[derive(Debug)]
pub(crate) struct Slot<'a> {
    permit: tokio::sync::SemaphorePermit<'a>,
    semaphore: &'a Arc<Semaphore>,
    waited: Duration,
}

impl Slot<'_> {
    /// Returns how long the caller waited in the queue.
    #[allow(dead_code)] // read by the metrics of the manager's attempts
    pub(crate) fn waited(&self) -> Duration {
        self.waited
    }

    /// Turns the borrowed slot into an owned permit that frees it when dropped.
    pub(crate) fn into_permit(self) -> BulkheadPermit {
        // NOTE: forgetting the borrowed permit keeps the slot taken; the owned permit gives it back
        // to the semaphore with `add_permits(1)` when it is dropped.
        self.permit.forget();
        BulkheadPermit::returning(self.semaphore.clone(), self.waited)
    }
}

/// A place in the queue, given back when the wait ends or its future is dropped.
struct QueuePlace<'a>(&'a AtomicUsize);

impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests;
