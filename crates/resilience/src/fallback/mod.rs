//! Fallback: what a call returns when its provider failed.
//!
//! The strategies run in the configured order after the primary call's final failure: the fresh
//! cache, the stale cache, alternate providers, a degraded response, and a structured error. A neutral
//! outcome (the caller's own bad request, a cancellation) skips the chain and comes back as it is,
//! never hidden behind a cached or degraded response.

mod cache;
mod config;
mod served;

use std::fmt;
use std::sync::Arc;

pub use self::config::{FallbackConfig, Strategy, MAX_TTL};
pub use self::served::{Served, Source};

pub(crate) use self::cache::{Freshness, ResponseCache};

use crate::manager::FailureReport;

/// The response served by the `degraded` strategy: a fixed value, or one built from the failure.
///
/// # Examples
///
/// ```
/// use resilience::DegradedResponse;
///
/// let fixed = DegradedResponse::value("Service is busy, please try again.".to_string());
/// let built = DegradedResponse::from_fn(|failure| format!("{} is unavailable", failure.provider));
/// # let _ = (fixed, built);
/// ```
pub struct DegradedResponse<T> {
    build: Arc<dyn Fn(&FailureReport) -> T + Send + Sync>,
}

impl<T> Clone for DegradedResponse<T> {
    fn clone(&self) -> Self {
        DegradedResponse {
            build: self.build.clone(),
        }
    }
}

impl<T> fmt::Debug for DegradedResponse<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DegradedResponse").finish_non_exhaustive()
    }
}

impl<T: Clone + Send + Sync + 'static> DegradedResponse<T> {
    /// Serves a clone of `value`.
    pub fn value(value: T) -> Self {
        DegradedResponse {
            build: Arc::new(move |_| value.clone()),
        }
    }
}

impl<T> DegradedResponse<T> {
    /// Serves what `build` returns for the failure.
    pub fn from_fn(build: impl Fn(&FailureReport) -> T + Send + Sync + 'static) -> Self {
        DegradedResponse {
            build: Arc::new(build),
        }
    }

    pub(crate) fn build(&self, failure: &FailureReport) -> T {
        (self.build)(failure)
    }
}
