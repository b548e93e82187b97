use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// The longest `max_backoff` accepted.
pub const MAX_BACKOFF_LIMIT: Duration = Duration::from_secs(24 * 60 * 60);

/// How jitter spreads the delays of many callers retrying at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JitterMode {
    /// The delay moves by up to `jitter_fraction` of itself, either way, and stays within
    /// `[0, max_backoff]`.
    #[default]
    Proportional,
    /// The delay is uniform in `[0, delay]`, the "full jitter" of the AWS Architecture Blog's
    /// "Exponential Backoff And Jitter" (2015). `jitter_fraction` is not used.
    Full,
}

/// Settings of a [`Retry`](super::Retry).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use resilience::RetryConfig;
///
/// let config: RetryConfig = toml::from_str(r#"
///     max_retries = 2
///     initial_backoff = "50ms"
///     jitter_mode = "full"
/// "#).unwrap();
/// assert_eq!(config.initial_backoff, Duration::from_millis(50));
/// assert_eq!(config.max_backoff, Duration::from_secs(10)); // the default
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Retries after the first attempt (default 3); 0 turns retries off.
    pub max_retries: u32,
    /// The delay before the first retry (default 100 ms).
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// The cap of every delay (default 10 s). A retry-after hint above it stops the retries.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// The factor between consecutive delays (default 2.0), at least 1.
    pub backoff_multiplier: f64,
    /// Whether delays are randomized (default true).
    pub jitter: bool,
    /// How far proportional jitter moves a delay, as a share of it, in [0, 1] (default 0.1).
    pub jitter_fraction: f64,
    /// Proportional (default) or full jitter.
    pub jitter_mode: JitterMode,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_retries: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            backoff_multiplier: 2.0,
            jitter: true,
            jitter_fraction: 0.1,
            jitter_mode: JitterMode::Proportional,
        }
    }
}

impl RetryConfig {
    /// Checks every field and returns the first invalid one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_backoff.is_zero() || self.max_backoff > MAX_BACKOFF_LIMIT {
            return Err(ConfigError::invalid(
                "max_backoff",
                format!("{:?}", self.max_backoff),
                "must be greater than zero and at most 24 hours",
            ));
        }
        if self.initial_backoff > self.max_backoff {
            return Err(ConfigError::invalid(
                "initial_backoff",
                format!("{:?}", self.initial_backoff),
                format!("must not exceed max_backoff ({:?})", self.max_backoff),
            ));
        }
        if !(self.backoff_multiplier.is_finite() && self.backoff_multiplier >= 1.0) {
            return Err(ConfigError::invalid(
                "backoff_multiplier",
                self.backoff_multiplier,
                "must be a finite number of at least 1",
            ));
        }
        if !(0.0..=1.0).contains(&self.jitter_fraction) {
            return Err(ConfigError::invalid(
                "jitter_fraction",
                self.jitter_fraction,
                "must be between 0 and 1",
            ));
        }
        Ok(())
    }
}
