//! Retry: runs an operation again after a retryable failure, with exponential backoff and jitter.
//!
//! Only failures classified retryable are retried; success, non-retryable failures and neutral
//! outcomes end the loop at once. A server's retry-after hint is the minimum delay, and a hint longer
//! than `max_backoff` stops the retries, so the caller can fall back instead of waiting that long.
//! Sleeps use tokio's clock, so tests run with paused time.

mod backoff;
mod config;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

pub use self::config::{JitterMode, RetryConfig, MAX_BACKOFF_LIMIT};

use crate::error::ConfigError;
use crate::log_limit::LogLimit;
use crate::outcome::{Classify, DefaultClassifier, Outcome};

/// A retry policy with its statistics. Cloning it is cheap and the clones share the statistics.
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use resilience::{Retry, RetryConfig};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let retry = Retry::new(RetryConfig::default()).unwrap();
/// let calls = AtomicU32::new(0);
/// let value = retry
///     .execute(|| async {
///         if calls.fetch_add(1, Ordering::Relaxed) < 2 { Err("busy") } else { Ok(42) }
///     })
///     .await;
/// assert_eq!(value, Ok(42));
/// assert_eq!(retry.stats().retries, 2);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Retry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: RetryConfig,
    name: Option<Arc<str>>,
    attempts: AtomicU64,
    retries: AtomicU64,
    succeeded_after_retry: AtomicU64,
    gave_up: AtomicU64,
    log_limit: LogLimit,
}

/// A snapshot of a retry policy's statistics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetryStats {
    /// Attempts made, first attempts included.
    pub attempts: u64,
    /// Attempts that were retries.
    pub retries: u64,
    /// Calls that succeeded after at least one retry.
    pub succeeded_after_retry: u64,
    /// Calls that ended on a retryable failure: the retries ran out, or the server's retry-after hint
    /// was longer than `max_backoff`.
    pub gave_up: u64,
}

impl Retry {
    /// Creates a retry policy, or returns an error naming the first invalid field.
    pub fn new(config: RetryConfig) -> Result<Self, ConfigError> {
        Self::with_name(config, None)
    }

    /// Creates a retry policy whose log events carry `name` in their `provider` field.
    pub fn with_name(config: RetryConfig, name: Option<Arc<str>>) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Retry {
            inner: Arc::new(Inner {
                config,
                name,
                attempts: AtomicU64::new(0),
                retries: AtomicU64::new(0),
                succeeded_after_retry: AtomicU64::new(0),
                gave_up: AtomicU64::new(0),
                log_limit: LogLimit::default(),
            }),
        })
    }

    /// Runs `operation` until it succeeds, fails in a way that is not retried, or the retries run
    /// out, using [`DefaultClassifier`]: every `Err` is retryable.
    ///
    /// # Cancel safety
    ///
    /// Dropping the returned future stops the loop: no further attempt starts.
    pub async fn execute<T, E, F, Fut>(&self, operation: F) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.execute_with(&DefaultClassifier, operation).await
    }

    /// Runs `operation` as [`execute`](Self::execute) does, retrying what `classifier` classifies
    /// as a retryable failure and honouring its retry-after hint.
    ///
    /// # Cancel safety
    ///
    /// The same as [`execute`](Self::execute).
    pub async fn execute_with<T, E, C, F, Fut>(
        &self,
        classifier: &C,
        mut operation: F,
    ) -> Result<T, E>
    where
        C: Classify<T, E> + ?Sized,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.run(|_| {
            let attempt = operation();
            async move {
                let result = attempt.await;
                let outcome = classifier.classify(&result);
                (result, outcome)
            }
        })
        .await
    }

    /// Returns the delay before retry number `retry` (0 for the first retry), with jitter.
    /// It is always within `[0, max_backoff]`.
    pub fn delay_for(&self, retry: u32) -> Duration {
        backoff::delay(&self.inner.config, retry, fastrand::f64())
    }

    /// Returns a snapshot of the statistics.
    pub fn stats(&self) -> RetryStats {
        let inner = &self.inner;
        RetryStats {
            attempts: inner.attempts.load(Ordering::Relaxed),
            retries: inner.retries.load(Ordering::Relaxed),
            succeeded_after_retry: inner.succeeded_after_retry.load(Ordering::Relaxed),
            gave_up: inner.gave_up.load(Ordering::Relaxed),
        }
    }

    /// Clears the statistics.
    pub fn reset_stats(&self) {
        let inner = &self.inner;
        for counter in [
            &inner.attempts,
            &inner.retries,
            &inner.succeeded_after_retry,
            &inner.gave_up,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
    }

    /// Returns the configuration.
    pub fn config(&self) -> &RetryConfig {
        &self.inner.config
    }

    /// Runs the loop over attempts that classify themselves. `operation` receives the attempt's
    /// index, 0 for the first attempt.
    async fn run<T, E, F, Fut>(&self, mut operation: F) -> Result<T, E>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = (Result<T, E>, Outcome)>,
    {
        let mut attempt: u32 = 0;
        loop {
            let (result, outcome) = operation(attempt).await;
            match self.after_attempt(attempt, &outcome) {
                Step::Stop => return result,
                Step::RetryAfter(delay) => {
                    drop(result);
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Counts attempt number `attempt` (0 for the first) that ended in `outcome`, and decides whether
    /// to retry and after which delay.
    pub(crate) fn after_attempt(&self, attempt: u32, outcome: &Outcome) -> Step {
        let inner = &self.inner;
        inner.attempts.fetch_add(1, Ordering::Relaxed);
        let failure = match outcome {
            Outcome::Success => {
                if attempt > 0 {
                    inner.succeeded_after_retry.fetch_add(1, Ordering::Relaxed);
                }
                return Step::Stop;
            }
            Outcome::Failure(failure) if failure.retryable => failure,
            Outcome::Failure(_) | Outcome::Neutral(_) => return Step::Stop,
        };

        if attempt >= inner.config.max_retries {
            inner.gave_up.fetch_add(1, Ordering::Relaxed);
            return Step::Stop;
        }
        let mut delay = self.delay_for(attempt);
        if let Some(hint) = failure.retry_after {
            if hint > inner.config.max_backoff {
                inner.gave_up.fetch_add(1, Ordering::Relaxed);
                self.log_hint_too_long(attempt, hint);
                return Step::Stop;
            }
            delay = delay.max(hint);
        }

        inner.retries.fetch_add(1, Ordering::Relaxed);
        self.log_retry(attempt + 1, delay, *outcome);
        Step::RetryAfter(delay)
    }

    fn log_retry(&self, attempt: u32, delay: Duration, outcome: Outcome) {
        if let Some(suppressed) = self.inner.log_limit.allow() {
            tracing::debug!(
                provider = self.inner.name.as_deref().unwrap_or(""),
                attempt,
                delay_ms = delay.as_millis() as u64,
                class = outcome.label(),
                suppressed,
                "retrying after a failure"
            );
        }
    }

    fn log_hint_too_long(&self, attempt: u32, hint: Duration) {
        if let Some(suppressed) = self.inner.log_limit.allow() {
            tracing::debug!(
                provider = self.inner.name.as_deref().unwrap_or(""),
                attempt,
                retry_after_ms = hint.as_millis() as u64,
                max_backoff_ms = self.inner.config.max_backoff.as_millis() as u64,
                suppressed,
                "not retrying: the server's retry-after exceeds max_backoff"
            );
        }
    }
}

/// The next step of a retry loop after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// The loop ends with this attempt's result.
    Stop,
    /// The loop sleeps for this long, then makes the next attempt.
    RetryAfter(Duration),
}

#[cfg(test)]
mod tests;
