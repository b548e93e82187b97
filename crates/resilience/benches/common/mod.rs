//! The upstream calls and the peer objects that both bench targets build.
//!
//! Each peer is configured as close to our defaults as its API allows: a breaker that opens on 5
//! consecutive failures, a bulkhead of 10 slots, and a retry of 3 retries (4 attempts). recloser
//! only opens on a failure rate over a ring of calls, so it keeps its default ring of 100 calls.

#![allow(dead_code)] // each bench target uses a part of this module

use std::hint::black_box;
use std::time::Duration;

use tower::util::ServiceFn;
use tower::Layer;
use tower_resilience::bulkhead::{Bulkhead, BulkheadLayer, BulkheadServiceError};
use tower_resilience::circuitbreaker::{
    CircuitBreaker, CircuitBreakerError, CircuitBreakerLayer, DefaultClassifier,
};
use tower_resilience::retry::{Retry, RetryLayer};

/// How long an opened circuit stays open: longer than any run of the benches.
pub const OPEN_FOR: Duration = Duration::from_secs(3600);

/// The error of the failing upstream call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamError;

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the upstream call failed")
    }
}

impl std::error::Error for UpstreamError {}

/// Returns `input` at once: the bare upstream call.
pub async fn upstream(input: u64) -> Result<u64, UpstreamError> {
    Ok(black_box(input))
}

/// Fails at once, as an upstream call that returned an error.
pub async fn failing(input: u64) -> Result<u64, UpstreamError> {
    black_box(input);
    Err(UpstreamError)
}

/// Builds a current-thread runtime with every driver, the runtime of every async scenario.
pub fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime builds")
}

/// Wraps `service` in tower-resilience's circuit breaker, which opens after `failures` consecutive
/// failures.
pub fn tower_breaker<S>(failures: usize, service: S) -> CircuitBreaker<S, DefaultClassifier> {
    CircuitBreakerLayer::builder()
        .consecutive_failures(failures)
        .wait_duration_in_open(OPEN_FOR)
        .build()
        .expect("valid tower-resilience circuit breaker")
        .layer(service)
}

/// Wraps `service` in tower-resilience's bulkhead with 10 slots.
pub fn tower_bulkhead<S>(service: S) -> Bulkhead<S> {
    BulkheadLayer::builder()
        .max_concurrent_calls(10)
        .max_wait_duration(Duration::from_secs(5))
        .build()
        .expect("valid tower-resilience bulkhead")
        .layer(service)
}

/// Wraps `service` in tower-resilience's retry: 4 attempts with exponential backoff from 100 ms.
pub fn tower_retry<S, E>(service: S) -> Retry<S, u64, u64, E> {
    RetryLayer::<u64, u64, E>::builder()
        .max_attempts(4)
        .exponential_backoff(Duration::from_millis(100))
        .build()
        .layer(service)
}

/// The service type of tower-resilience's breaker around its bulkhead around `F`.
pub type TowerGuarded<F> = CircuitBreaker<Bulkhead<ServiceFn<F>>, DefaultClassifier>;

/// The error of [`TowerGuarded`].
pub type TowerGuardedError = CircuitBreakerError<BulkheadServiceError<UpstreamError>>;

/// Wraps `service` in tower-resilience's retry around its breaker around its bulkhead, the order
/// that our manager uses.
pub fn tower_stack<F>(
    service: ServiceFn<F>,
) -> Retry<TowerGuarded<F>, u64, u64, TowerGuardedError> {
    tower_retry(tower_breaker(5, tower_bulkhead(service)))
}

/// Builds failsafe's circuit breaker, which opens after `failures` consecutive failures.
pub fn failsafe_breaker(
    failures: u32,
) -> failsafe::StateMachine<
    failsafe::failure_policy::ConsecutiveFailures<failsafe::backoff::Constant>,
    (),
> {
    let policy = failsafe::failure_policy::consecutive_failures(
        failures,
        failsafe::backoff::constant(OPEN_FOR),
    );
    failsafe::Config::new().failure_policy(policy).build()
}

/// Builds recloser's circuit breaker over a ring of `calls` calls, which opens at a failure rate of
/// one half.
pub fn recloser_breaker(calls: usize) -> recloser::AsyncRecloser {
    recloser::Recloser::custom()
        .closed_len(calls)
        .error_rate(0.5)
        .open_wait(OPEN_FOR)
        .build()
        .into()
}
