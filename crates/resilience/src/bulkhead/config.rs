use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// The largest `max_concurrent` (tokio's semaphore limit is far larger; this keeps a typo obvious).
pub const MAX_CONCURRENT_LIMIT: usize = 1 << 20;

/// Settings of a [`Bulkhead`](super::Bulkhead).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use resilience::BulkheadConfig;
///
/// let config: BulkheadConfig = toml::from_str(r#"
///     max_concurrent = 4
///     queue_timeout = "250ms"
/// "#).unwrap();
/// assert_eq!(config.max_queue, 20); // the default
/// assert_eq!(config.queue_timeout, Duration::from_millis(250));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BulkheadConfig {
    /// Calls allowed to run at once (default 10).
    pub max_concurrent: usize,
    /// Callers allowed to wait for a slot (default 20); 0 rejects every caller that finds no slot.
    pub max_queue: usize,
    /// How long a caller waits for a slot before it gets a queue timeout (default 5 s).
    #[serde(with = "humantime_serde")]
    pub queue_timeout: Duration,
}

impl Default for BulkheadConfig {
    fn default() -> Self {
        BulkheadConfig {
            max_concurrent: 10,
            max_queue: 20,
            queue_timeout: Duration::from_secs(5),
        }
    }
}

impl BulkheadConfig {
    /// Checks every field and returns the first invalid one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_concurrent == 0 || self.max_concurrent > MAX_CONCURRENT_LIMIT {
            return Err(ConfigError::invalid(
                "max_concurrent",
                self.max_concurrent,
                format!("must be between 1 and {MAX_CONCURRENT_LIMIT}"),
            ));
        }
        if self.max_queue > MAX_CONCURRENT_LIMIT {
            return Err(ConfigError::invalid(
                "max_queue",
                self.max_queue,
                format!("must be at most {MAX_CONCURRENT_LIMIT}"),
            ));
        }
        if self.queue_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "queue_timeout",
                "0s",
                "must be greater than zero; set max_queue = 0 to reject callers instead of queueing them",
            ));
        }
        Ok(())
    }
}
