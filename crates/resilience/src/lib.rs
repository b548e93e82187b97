//! Circuit breaker, bulkhead, retry and fallback for async Rust services, composed per provider.
//!
//! # Contents
//!
//! - [`outcome`]: the one classification of an attempt ([`Outcome`]) that every pattern reads.
//! - [`circuit_breaker`]: [`CircuitBreaker`], closed, open and half-open, with a two-step permit.
//! - [`bulkhead`]: [`Bulkhead`], a concurrency limit with a bounded first-in, first-out queue.
//! - [`retry`]: [`Retry`], exponential backoff with jitter that honours a server's retry-after hint.
//! - [`fallback`]: the fallback strategies, and [`Served`], which records where a response came from.
//! - [`manager`]: [`Manager`], one protected stack per provider; the API a gateway calls.
//! - [`metrics`]: the Manager's Prometheus metrics, registered into the application's registry.
//! - [`error`]: [`Error`] for protected calls and [`ConfigError`] for configuration.
//!
//! Every time read and every sleep goes through tokio's clock, so tests can pause and advance time.

#![forbid(unsafe_code)]
#![deny(unused_must_use)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    clippy::all
)]

pub mod bulkhead;
pub mod circuit_breaker;
pub mod error;
pub mod fallback;
#[cfg(feature = "http")]
pub mod http;
#[cfg(any(feature = "tower", feature = "reqwest-middleware"))]
mod integration;
pub mod log_limit;
pub mod manager;
pub mod metrics;
pub mod outcome;
#[cfg(feature = "reqwest-middleware")]
pub mod reqwest_middleware;
pub mod retry;
#[cfg(feature = "tower")]
pub mod tower;

pub use bulkhead::{Bulkhead, BulkheadConfig, BulkheadPermit, BulkheadStats};
pub use circuit_breaker::{
    CircuitBreaker, CircuitBreakerConfig, CircuitBreakerStats, CircuitPermit, CircuitState,
    FailureRateConfig, StateChange, TransitionReason,
};
pub use error::{BulkheadFull, CircuitOpen, ConfigError, Error, QueueTimeout};
pub use fallback::{DegradedResponse, FallbackConfig, Served, Source, Strategy};
pub use manager::{
    Attempt, AttemptRecord, CallError, CallErrorKind, Config, FailureReport, HealthIssue,
    HealthReport, Manager, ManagerBuilder, ManagerStats, OutcomeHandle, ProviderConfig,
    ProviderHealth, ProviderStack, ProviderStats,
};
pub use outcome::{Classify, DefaultClassifier, Failure, FailureClass, NeutralReason, Outcome};
pub use retry::{JitterMode, Retry, RetryConfig, RetryStats};

/// Compiles and runs the examples of the repository's README as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
