//! The one classification of an attempt that every pattern reads.
//!
//! An attempt ends in exactly one [`Outcome`]: a success, a [`Failure`] or a neutral result. The
//! circuit breaker counts failures, the retry loop retries the retryable ones and the fallback chain
//! runs on failures only, so a caller's bad request or a cancellation never trips a breaker, is never
//! retried and is never hidden behind a cached response.

use std::fmt;
use std::time::Duration;

/// The classification of one attempt's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The call succeeded.
    Success,
    /// The call failed for a reason that may be the provider's.
    Failure(Failure),
    /// The result carries no information about the provider's health: the caller cancelled, or the request was
    /// the caller's own fault. A neutral outcome never trips a breaker and is never retried.
    Neutral(NeutralReason),
}

impl Outcome {
    /// Returns a failure that is retryable and counts against the circuit, of the given class.
    pub const fn failure(class: FailureClass) -> Self {
        Outcome::Failure(Failure::new(class))
    }

    /// Returns true for [`Outcome::Success`].
    pub const fn is_success(&self) -> bool {
        matches!(self, Outcome::Success)
    }

    /// Returns the failure, if this outcome is one.
    pub const fn as_failure(&self) -> Option<&Failure> {
        match self {
            Outcome::Failure(failure) => Some(failure),
            _ => None,
        }
    }

    /// Returns the label used in metrics and logs: `success`, `neutral`, or the failure's class.
    pub const fn label(&self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure(failure) => failure.class.as_str(),
            Outcome::Neutral(_) => "neutral",
        }
    }
}

/// A failed attempt: its class, two independent facts, and an optional hint from the server.
///
/// `retryable` is whether the same request may be sent again, and `trips_circuit` is whether the
/// failure counts against the provider's circuit breaker. A 429 with a quota message, for example,
/// counts against the circuit but is not retried, while a rejection by our own bulkhead is neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// The kind of failure.
    pub class: FailureClass,
    /// Whether the request may be retried.
    pub retryable: bool,
    /// Whether the failure counts against the provider's circuit breaker.
    pub trips_circuit: bool,
    /// The server's minimum wait before the next request (`Retry-After` and its relatives).
    pub retry_after: Option<Duration>,
}

impl Failure {
    /// Creates a failure of `class` that is retryable, counts against the circuit and has no hint.
    pub const fn new(class: FailureClass) -> Self {
        Failure {
            class,
            retryable: true,
            trips_circuit: true,
            retry_after: None,
        }
    }

    /// Sets whether the failure may be retried.
    #[must_use]
    pub const fn retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// Sets whether the failure counts against the circuit breaker.
    #[must_use]
    pub const fn trips_circuit(mut self, trips: bool) -> Self {
        self.trips_circuit = trips;
        self
    }

    /// Sets the server's retry-after hint.
    #[must_use]
    pub const fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }
}

/// The kind of a failure. The set is fixed so that it can label metrics without bounding problems.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureClass {
    /// The connection failed, was reset, or the transport returned an error.
    Transport,
    /// The attempt timed out.
    Timeout,
    /// The server failed (HTTP 500, 502, 503, 504).
    Server,
    /// The server reported that it is overloaded (HTTP 529 or an `overloaded_error`).
    Overloaded,
    /// The server rate-limited the request (HTTP 429).
    RateLimited,
    /// The account's quota, credit or spend limit is exhausted: waiting does not help.
    QuotaExhausted,
    /// The credentials were rejected (HTTP 401, 403).
    Credentials,
    /// The requested resource, such as a model, is not available (HTTP 404).
    NotFound,
    /// Our own circuit breaker, bulkhead or queue rejected the attempt.
    Rejected,
    /// Any other failure.
    Other,
}

impl FailureClass {
    /// Every class, in declaration order.
    pub const ALL: [FailureClass; 10] = [
        FailureClass::Transport,
        FailureClass::Timeout,
        FailureClass::Server,
        FailureClass::Overloaded,
        FailureClass::RateLimited,
        FailureClass::QuotaExhausted,
        FailureClass::Credentials,
        FailureClass::NotFound,
        FailureClass::Rejected,
        FailureClass::Other,
    ];

    /// Returns the snake_case name used in metrics labels and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            FailureClass::Transport => "transport",
            FailureClass::Timeout => "timeout",
            FailureClass::Server => "server",
            FailureClass::Overloaded => "overloaded",
            FailureClass::RateLimited => "rate_limited",
            FailureClass::QuotaExhausted => "quota_exhausted",
            FailureClass::Credentials => "credentials",
            FailureClass::NotFound => "not_found",
            FailureClass::Rejected => "rejected",
            FailureClass::Other => "other",
        }
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The reason an outcome is neutral.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NeutralReason {
    /// The caller went away or its deadline passed.
    Cancelled,
    /// The request was the caller's own fault, such as a malformed request (HTTP 400, 422).
    CallerError,
}

/// Classifies a call's result into an [`Outcome`].
///
/// Implement it for your own error type, or pass a closure `Fn(&Result<T, E>) -> Outcome`.
///
/// # Examples
///
/// ```
/// use resilience::{Classify, FailureClass, NeutralReason, Outcome};
///
/// #[derive(Debug)]
/// enum ApiError { BadRequest, Unavailable }
///
/// let classify = |result: &Result<u32, ApiError>| match result {
///     Ok(_) => Outcome::Success,
///     Err(ApiError::BadRequest) => Outcome::Neutral(NeutralReason::CallerError),
///     Err(ApiError::Unavailable) => Outcome::failure(FailureClass::Server),
/// };
/// assert_eq!(classify.classify(&Ok(1)), Outcome::Success);
/// assert!(matches!(classify.classify(&Err(ApiError::BadRequest)), Outcome::Neutral(_)));
/// ```
pub trait Classify<T, E> {
    /// Returns the outcome of `result`.
    fn classify(&self, result: &Result<T, E>) -> Outcome;
}

impl<T, E, F> Classify<T, E> for F
where
    F: Fn(&Result<T, E>) -> Outcome,
{
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        self(result)
    }
}

/// The default classifier: `Ok` is a success, every `Err` a retryable failure of class
/// [`FailureClass::Other`] that counts against the circuit.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultClassifier;

impl<T, E> Classify<T, E> for DefaultClassifier {
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::failure(FailureClass::Other),
        }
    }
}
