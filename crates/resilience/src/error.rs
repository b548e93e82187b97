//! The library's error types: [`Error`] for a protected call, [`ConfigError`] for configuration.

use std::time::Duration;

/// The error of a call protected by a circuit breaker, bulkhead or retry.
///
/// Rejections by our own patterns are values that say when to come back; the caller's own error comes
/// back unchanged in [`Error::Operation`].
///
/// NOTE: the text of `Display` is for people; match on the variants instead of parsing it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error<E> {
    /// The circuit breaker rejected the call without running it.
    #[error(transparent)]
    CircuitOpen(#[from] CircuitOpen),
    /// The bulkhead rejected the call because every slot and every queue place was taken.
    #[error(transparent)]
    BulkheadFull(#[from] BulkheadFull),
    /// The call waited in the bulkhead's queue for longer than the queue timeout.
    #[error(transparent)]
    QueueTimeout(#[from] QueueTimeout),
    /// The operation ran and returned this error.
    #[error("operation failed: {0}")]
    Operation(#[source] E),
}

impl<E> Error<E> {
    /// Returns true when one of our own patterns rejected the call before it ran.
    pub fn is_rejection(&self) -> bool {
        !matches!(self, Error::Operation(_))
    }

    /// Returns the caller's error, if the operation ran and failed.
    pub fn into_operation(self) -> Option<E> {
        match self {
            Error::Operation(error) => Some(error),
            _ => None,
        }
    }

    /// Returns the caller's error by reference, if the operation ran and failed.
    pub fn operation(&self) -> Option<&E> {
        match self {
            Error::Operation(error) => Some(error),
            _ => None,
        }
    }

    /// Returns how long to wait before calling again, when the rejection carries that time.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::CircuitOpen(open) => Some(open.remaining),
            _ => None,
        }
    }
}

/// A rejection by an open (or saturated half-open) circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker is open: try again in {} ms", remaining.as_millis())]
pub struct CircuitOpen {
    /// How long the circuit stays open. It is zero when the circuit is half-open and all its probe
    /// slots are taken: a slot frees as soon as one probe ends.
    pub remaining: Duration,
}

/// A rejection by a bulkhead whose slots and queue are all taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "bulkhead is full: {max_concurrent} calls running and {max_queue} waiting; retry later or raise max_concurrent"
)]
pub struct BulkheadFull {
    /// The configured number of concurrent calls.
    pub max_concurrent: usize,
    /// The configured number of waiting callers.
    pub max_queue: usize,
}

/// A call that waited in a bulkhead's queue for longer than the queue timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("timed out after {} ms waiting for a bulkhead slot", waited.as_millis())]
pub struct QueueTimeout {
    /// How long the call waited.
    pub waited: Duration,
}

/// An invalid configuration, rejected when a pattern or manager is built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A field has a value that the pattern cannot work with.
    #[error("invalid {}{field} = {value}: {reason}", provider_prefix(provider))]
    Invalid {
        /// The provider whose settings hold the field, if any.
        provider: Option<String>,
        /// The field's path, such as `circuit_breaker.failure_threshold`.
        field: String,
        /// The rejected value, as written.
        value: String,
        /// The problem, and the values accepted.
        reason: String,
    },
    /// The configuration text could not be parsed.
    #[error("invalid configuration: {message}")]
    Parse {
        /// The parser's message, with the location of the error.
        message: String,
    },
    /// A configuration file could not be read.
    #[error("failed to read configuration file {path}: {message}")]
    Io {
        /// The file's path.
        path: String,
        /// The operating system's message.
        message: String,
    },
}

fn provider_prefix(provider: &Option<String>) -> String {
    match provider {
        Some(name) => format!("providers.{name}."),
        None => String::new(),
    }
}

impl ConfigError {
    pub(crate) fn invalid(
        field: &str,
        value: impl std::fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        ConfigError::Invalid {
            provider: None,
            field: field.to_owned(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    /// Prefixes the field with `section.` and returns the error.
    pub(crate) fn in_section(self, section: &str) -> Self {
        match self {
            ConfigError::Invalid {
                provider,
                field,
                value,
                reason,
            } => ConfigError::Invalid {
                provider,
                field: format!("{section}.{field}"),
                value,
                reason,
            },
            other => other,
        }
    }

    /// Names the provider whose settings hold the field, and returns the error.
    pub(crate) fn for_provider(self, name: &str) -> Self {
        match self {
            ConfigError::Invalid {
                field,
                value,
                reason,
                ..
            } => ConfigError::Invalid {
                provider: Some(name.to_owned()),
                field,
                value,
                reason,
            },
            other => other,
        }
    }
}
