use std::sync::Arc;
use std::time::Duration;

/// A response and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served<T> {
    /// The response.
    pub value: T,
    /// The origin of the response.
    pub source: Source,
    /// The provider whose response this is: the primary for a cached one, the alternate for an
    /// alternate's.
    pub provider: Arc<str>,
    /// Attempts that reached a provider for this request, on every provider tried. Attempts that
    /// our own circuit breaker or bulkhead rejected are not counted.
    pub attempts: u32,
}

/// The origin of a served response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The primary provider returned it.
    Primary,
    /// The fresh cache, with the response's age.
    Cache {
        /// How long ago the response was stored.
        age: Duration,
    },
    /// The stale cache, with the response's age.
    Stale {
        /// How long ago the response was stored.
        age: Duration,
    },
    /// An alternate provider returned it.
    Alternate {
        /// The alternate's name.
        provider: Arc<str>,
    },
    /// The configured degraded response.
    Degraded,
}

impl Source {
    /// Returns the snake_case name: `primary`, `cache`, `stale`, `provider` or `degraded`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Source::Primary => "primary",
            Source::Cache { .. } => "cache",
            Source::Stale { .. } => "stale",
            Source::Alternate { .. } => "provider",
            Source::Degraded => "degraded",
        }
    }
}
