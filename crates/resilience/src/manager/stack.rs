//! One provider's stack: the retry loop wraps the circuit breaker, which wraps the bulkhead, which
//! wraps the call.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::attempt::Attempt;
use super::error::{AttemptRecord, Rejection};
use super::report::CallCounters;
use super::Config;
use crate::bulkhead::{Bulkhead, BulkheadRejection, Slot};
use crate::circuit_breaker::CircuitBreaker;
use crate::error::{CircuitOpen, ConfigError};
use crate::log_limit::LogLimit;
use crate::manager::ProviderConfig;
use crate::metrics::{AttemptRecorder, ProviderMetrics};
use crate::outcome::{Classify, Outcome};
use crate::retry::{Retry, Step};

/// The patterns of one provider, shared by every call to it.
///
/// Obtain it with [`Manager::provider`](super::Manager::provider); it is what the tower layer wraps.
#[derive(Debug)]
pub struct ProviderStack {
    name: Arc<str>,
    config: ProviderConfig,
    breaker: Option<CircuitBreaker>,
    bulkhead: Option<Bulkhead>,
    retry: Option<Retry>,
    pub(crate) counters: CallCounters,
    pub(crate) log_limit: LogLimit,
    rejection_log_limit: LogLimit,
    /// The metric handles, when the manager was built with metrics.
    metrics: Option<Arc<ProviderMetrics>>,
}

/// The error of an attempt that returned no value.
#[derive(Debug)]
pub(crate) enum AttemptError<E> {
    Rejected(Rejection),
    Operation(E),
    /// The operation returned a value that the classifier called a failure; it was dropped.
    Discarded,
}

/// The final failure of a provider's attempts.
#[derive(Debug)]
pub(crate) struct StackFailure<E> {
    pub(crate) outcome: Outcome,
    pub(crate) error: AttemptError<E>,
}

/// The attempts made for one request, across providers. Only failed attempts are kept, so a request
/// that succeeds at once allocates nothing.
#[derive(Debug, Default)]
pub(crate) struct Trail {
    pub(crate) attempts: u32,
    pub(crate) failed: Vec<AttemptRecord>,
}

impl Trail {
    /// Returns the smallest retry-after among the failed attempts.
    pub(crate) fn smallest_retry_after(&self) -> Option<Duration> {
        self.failed
            .iter()
            .filter_map(|record| record.retry_after)
            .min()
    }
}

impl ProviderStack {
    pub(crate) fn new(
        name: Arc<str>,
        config: ProviderConfig,
        switches: &Config,
        metrics: Option<Arc<ProviderMetrics>>,
    ) -> Result<Self, ConfigError> {
        let breaker = if switches.enable_circuit_breaker {
            let mut builder =
                CircuitBreaker::builder(config.circuit_breaker.clone()).name(name.clone());
            if let Some(metrics) = &metrics {
                let metrics = metrics.clone();
                builder = builder.on_state_change(move |change| metrics.count_transition(change));
            }
            Some(builder.build()?)
        } else {
            None
        };
        let bulkhead = switches
            .enable_bulkhead
            .then(|| Bulkhead::with_name(config.bulkhead.clone(), Some(name.clone())))
            .transpose()?;
        let retry = switches
            .enable_retry
            .then(|| Retry::with_name(config.retry.clone(), Some(name.clone())))
            .transpose()?;
        Ok(ProviderStack {
            name,
            config,
            breaker,
            bulkhead,
            retry,
            counters: CallCounters::default(),
            log_limit: LogLimit::default(),
            rejection_log_limit: LogLimit::default(),
            metrics,
        })
    }

    /// Returns the provider's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn name_arc(&self) -> &Arc<str> {
        &self.name
    }

    /// Returns the provider's settings.
    pub fn config(&self) -> &ProviderConfig {
        &self.config
    }

    /// Returns the circuit breaker, unless the manager's configuration turned it off.
    pub fn circuit_breaker(&self) -> Option<&CircuitBreaker> {
        self.breaker.as_ref()
    }

    /// Returns the bulkhead, unless the manager's configuration turned it off.
    pub fn bulkhead(&self) -> Option<&Bulkhead> {
        self.bulkhead.as_ref()
    }

    /// Returns the retry policy, unless the manager's configuration turned it off.
    pub fn retry(&self) -> Option<&Retry> {
        self.retry.as_ref()
    }

    pub(crate) fn metrics(&self) -> Option<&ProviderMetrics> {
        self.metrics.as_deref()
    }

    /// Resets the breaker, its window and every statistic of this stack.
    pub(crate) fn reset(&self) {
        if let Some(breaker) = &self.breaker {
            breaker.reset();
        }
        if let Some(bulkhead) = &self.bulkhead {
            bulkhead.reset_stats();
        }
        if let Some(retry) = &self.retry {
            retry.reset_stats();
        }
        self.counters.reset();
    }

    /// Runs the retry loop: every attempt passes the breaker and takes a bulkhead slot, and backoff
    /// sleeps hold neither. Returns the value with its outcome: a success, or a neutral outcome
    /// (such as a caller-error response), which is returned as it is.
    pub(crate) async fn run<R, E, C, F, Fut>(
        &self,
        classifier: &C,
        operation: &F,
        trail: &mut Trail,
    ) -> Result<(R, Outcome), StackFailure<E>>
    where
        C: Classify<R, E> + ?Sized,
        F: Fn(&Attempt<'_>) -> Fut,
        Fut: Future<Output = Result<R, E>>,
    {
        let mut number: u32 = 0;
        loop {
            let started = Instant::now();
            let recorder = self.metrics.as_deref().map(AttemptRecorder::new);
            let (result, outcome) = self.attempt(classifier, operation, number).await;
            if let Some(recorder) = recorder {
                recorder.finish(&outcome);
            }
            if !matches!(result, Err(AttemptError::Rejected(_))) {
                trail.attempts = trail.attempts.saturating_add(1);
            }
            if !outcome.is_success() {
                trail.failed.push(AttemptRecord {
                    provider: self.name.clone(),
                    outcome: outcome.label(),
                    duration: started.elapsed(),
                    retry_after: outcome.as_failure().and_then(|failure| failure.retry_after),
                });
            }

            let step = match &self.retry {
                Some(retry) => retry.after_attempt(number, &outcome),
                None => Step::Stop,
            };
            match (step, result) {
                // A value the classifier calls a failure is retried and falls back like an error.
                (_, Ok(value)) if !matches!(outcome, Outcome::Failure(_)) => {
                    return Ok((value, outcome))
                }
                (Step::Stop, Ok(_)) => {
                    return Err(StackFailure {
                        outcome,
                        error: AttemptError::Discarded,
                    })
                }
                (Step::Stop, Err(error)) => return Err(StackFailure { outcome, error }),
                (Step::RetryAfter(delay), _) => {
                    tokio::time::sleep(delay).await;
                    number = number.saturating_add(1);
                }
            }
        }
    }

    /// Makes one attempt: admission by the breaker, a slot in the bulkhead, then the call.
    async fn attempt<R, E, C, F, Fut>(
        &self,
        classifier: &C,
        operation: &F,
        number: u32,
    ) -> (Result<R, AttemptError<E>>, Outcome)
    where
        C: Classify<R, E> + ?Sized,
        F: Fn(&Attempt<'_>) -> Fut,
        Fut: Future<Output = Result<R, E>>,
    {
        let admission = match self.breaker.as_ref().map(CircuitBreaker::admit).transpose() {
            Ok(admission) => admission,
            Err(open) => {
                self.log_circuit_rejection(&open);
                return rejected(Rejection::CircuitOpen(open));
            }
        };
        let slot = match self.take_slot().await {
            Ok(slot) => slot,
            // The breaker's admission is dropped unfinished, which records a neutral outcome.
            Err(rejection) => return rejected(rejection),
        };

        let call_started = self.metrics.is_some().then(Instant::now);
        let attempt = Attempt::new(&self.name, number);
        let result = operation(&attempt).await;
        if let (Some(metrics), Some(started)) = (&self.metrics, call_started) {
            // NOTE: a deferred call (a stream) is timed until it starts, not until it ends.
            metrics.call_duration.observe(started.elapsed());
        }
        let outcome = classifier.classify(&result);

        match attempt.take_deferred() {
            Some(deferred) if outcome.is_success() => {
                let circuit = admission.and_then(|admission| admission.into_permit());
                let slot = slot.map(|slot| slot.into_permit());
                deferred
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .hand_over(circuit, slot);
            }
            _ => {
                if let Some(admission) = admission {
                    admission.finish(outcome);
                }
                drop(slot);
            }
        }
        (result.map_err(AttemptError::Operation), outcome)
    }

    /// Takes a bulkhead slot, or none when the bulkhead is off, and records the queue wait.
    async fn take_slot(&self) -> Result<Option<Slot<'_>>, Rejection> {
        let Some(bulkhead) = &self.bulkhead else {
            return Ok(None);
        };
        match bulkhead.enter().await {
            Ok(slot) => {
                if let Some(metrics) = &self.metrics {
                    metrics.queue_wait.observe(slot.waited());
                }
                Ok(Some(slot))
            }
            Err(BulkheadRejection::Full(_)) => Err(Rejection::BulkheadFull),
            Err(BulkheadRejection::QueueTimeout(timeout)) => {
                if let Some(metrics) = &self.metrics {
                    metrics.queue_wait.observe(timeout.waited);
                }
                Err(Rejection::QueueTimeout)
            }
        }
    }

    fn log_circuit_rejection(&self, open: &CircuitOpen) {
        if let Some(suppressed) = self.rejection_log_limit.allow() {
            tracing::debug!(
                provider = self.name(),
                remaining_ms = u64::try_from(open.remaining.as_millis()).unwrap_or(u64::MAX),
                suppressed,
                "circuit breaker rejected a call"
            );
        }
    }
}

fn rejected<R, E>(rejection: Rejection) -> (Result<R, AttemptError<E>>, Outcome) {
    (Err(AttemptError::Rejected(rejection)), rejection.outcome())
}

/// Counts a request once when it ends; a request whose future is dropped first counts as cancelled.
pub(crate) struct RequestGuard<'a> {
    counters: &'a CallCounters,
    finished: bool,
}

impl<'a> RequestGuard<'a> {
    pub(crate) fn new(counters: &'a CallCounters) -> Self {
        RequestGuard {
            counters,
            finished: false,
        }
    }

    pub(crate) fn finish(mut self, counter: &AtomicU64) {
        self.finished = true;
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for RequestGuard<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.counters.cancelled.fetch_add(1, Ordering::Relaxed);
        }
    }
}
