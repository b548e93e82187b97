//! The error of a call through the manager: the provider, the class of the last failure, the trail
//! of attempts, the smallest known retry-after and the caller's own error.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::error::CircuitOpen;
use crate::outcome::{FailureClass, NeutralReason, Outcome};

/// The reason a call through the manager returned no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "class")]
#[non_exhaustive]
pub enum CallErrorKind {
    /// The operation failed with this class of failure.
    Failed(FailureClass),
    /// The outcome was neutral: the caller's own error or a cancellation. No fallback ran.
    Neutral(NeutralReason),
    /// The provider's circuit breaker rejected the call.
    CircuitOpen,
    /// The provider's bulkhead was full.
    BulkheadFull,
    /// The call waited too long for a bulkhead slot.
    QueueTimeout,
    /// The manager already has `max_providers` providers and this one is new.
    TooManyProviders,
    /// The provider name is empty or longer than
    /// [`MAX_PROVIDER_NAME_LEN`](super::MAX_PROVIDER_NAME_LEN) bytes.
    InvalidProviderName,
    /// The manager was closed.
    Closed,
}

impl fmt::Display for CallErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallErrorKind::Failed(class) => write!(f, "failed ({class})"),
            CallErrorKind::Neutral(NeutralReason::CallerError) => {
                f.write_str("rejected as the caller's error")
            }
            CallErrorKind::Neutral(NeutralReason::Cancelled) => f.write_str("cancelled"),
            CallErrorKind::CircuitOpen => f.write_str("rejected: circuit open"),
            CallErrorKind::BulkheadFull => f.write_str("rejected: bulkhead full"),
            CallErrorKind::QueueTimeout => f.write_str("rejected: timed out in the bulkhead queue"),
            CallErrorKind::TooManyProviders => {
                f.write_str("rejected: too many providers; raise max_providers or configure it")
            }
            CallErrorKind::InvalidProviderName => f.write_str(
                "rejected: the provider name is empty or too long; use a configured provider's name",
            ),
            CallErrorKind::Closed => f.write_str("rejected: the manager is closed"),
        }
    }
}

/// One attempt on one provider, as kept in an error's trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttemptRecord {
    /// The provider the attempt was for.
    pub provider: Arc<str>,
    /// The outcome's label: `success`, `neutral`, or the failure's class (`rejected` for our own
    /// breaker or bulkhead).
    pub outcome: &'static str,
    /// How long the attempt took, bulkhead queueing included.
    #[serde(serialize_with = "serialize_millis")]
    pub duration: Duration,
    /// The retry-after the attempt reported: the server's hint, or the remaining open time of a
    /// circuit that rejected it.
    #[serde(serialize_with = "serialize_optional_millis")]
    pub retry_after: Option<Duration>,
}

/// Everything known about a failed call except the caller's own error; the degraded response is
/// built from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailureReport {
    /// The primary provider of the call.
    pub provider: Arc<str>,
    /// The reason the primary provider's attempts ended.
    pub kind: CallErrorKind,
    /// Every attempt that did not succeed, on every provider tried, in order.
    pub attempts: Vec<AttemptRecord>,
    /// The smallest known time after which a new call may succeed: a server's hint, or the time
    /// until the first open circuit admits probes.
    #[serde(serialize_with = "serialize_optional_millis")]
    pub retry_after: Option<Duration>,
}

/// The error of a call through the [`Manager`](super::Manager).
///
/// NOTE: the text of `Display` is for people; match on [`kind`](Self::kind) instead of parsing it.
#[derive(Debug)]
pub struct CallError<E> {
    report: FailureReport,
    source: Option<E>,
}

impl<E> CallError<E> {
    pub(crate) fn new(report: FailureReport, source: Option<E>) -> Self {
        CallError { report, source }
    }

    /// Returns the primary provider of the call.
    pub fn provider(&self) -> &str {
        &self.report.provider
    }

    /// Returns what ended the call.
    pub fn kind(&self) -> CallErrorKind {
        self.report.kind
    }

    /// Returns every attempt that did not succeed, on every provider tried, in order.
    pub fn attempts(&self) -> &[AttemptRecord] {
        &self.report.attempts
    }

    /// Returns the smallest known time after which a new call may succeed.
    pub fn retry_after(&self) -> Option<Duration> {
        self.report.retry_after
    }

    /// Returns the report without the caller's error.
    pub fn report(&self) -> &FailureReport {
        &self.report
    }

    /// Returns the caller's error from the primary provider's last attempt, if it ran.
    pub fn source_error(&self) -> Option<&E> {
        self.source.as_ref()
    }

    /// Returns the caller's error from the primary provider's last attempt, if it ran.
    pub fn into_source(self) -> Option<E> {
        self.source
    }
}

impl<E: fmt::Display> fmt::Display for CallError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "call to provider {} {}",
            self.report.provider, self.report.kind
        )?;
        match self.report.attempts.len() {
            0 => {}
            1 => f.write_str(" after 1 failed attempt")?,
            failed => write!(f, " after {failed} failed attempts on the providers tried")?,
        }
        if let Some(retry_after) = self.report.retry_after {
            write!(f, "; retry in {} ms", retry_after.as_millis())?;
        }
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl<E> std::error::Error for CallError<E>
where
    E: std::error::Error + 'static,
{
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|error| error as &(dyn std::error::Error + 'static))
    }
}

/// A rejection by one of the provider's own patterns.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Rejection {
    CircuitOpen(CircuitOpen),
    BulkheadFull,
    QueueTimeout,
}

impl Rejection {
    pub(crate) fn kind(self) -> CallErrorKind {
        match self {
            Rejection::CircuitOpen(_) => CallErrorKind::CircuitOpen,
            Rejection::BulkheadFull => CallErrorKind::BulkheadFull,
            Rejection::QueueTimeout => CallErrorKind::QueueTimeout,
        }
    }

    /// Returns the outcome of a rejected attempt: never retried on the same provider and never
    /// counted against its circuit.
    pub(crate) fn outcome(self) -> Outcome {
        let retry_after = match self {
            Rejection::CircuitOpen(open) if !open.remaining.is_zero() => Some(open.remaining),
            _ => None,
        };
        Outcome::Failure(
            crate::outcome::Failure::new(FailureClass::Rejected)
                .retryable(false)
                .trips_circuit(false)
                .with_retry_after(retry_after),
        )
    }
}

fn serialize_millis<S: serde::Serializer>(
    duration: &Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}

fn serialize_optional_millis<S: serde::Serializer>(
    duration: &Option<Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match duration {
        Some(duration) => serialize_millis(duration, serializer),
        None => serializer.serialize_none(),
    }
}
