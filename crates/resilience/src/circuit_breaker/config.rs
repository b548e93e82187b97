use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// The largest value of `success_threshold` and `half_open_max_requests`: both are counted in
/// 15-bit fields of the breaker's state word.
pub const MAX_HALF_OPEN_COUNT: u32 = (1 << 15) - 1;

/// The longest open period that a configuration or a retry-after hint may set.
pub const MAX_OPEN_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Settings of a [`CircuitBreaker`](super::CircuitBreaker).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use resilience::CircuitBreakerConfig;
///
/// let config: CircuitBreakerConfig = toml::from_str(r#"
///     failure_threshold = 3
///     timeout = "30s"
/// "#).unwrap();
/// assert_eq!(config.failure_threshold, 3);
/// assert_eq!(config.timeout, Duration::from_secs(30));
/// assert_eq!(config.success_threshold, 2); // the default
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CircuitBreakerConfig {
    /// Consecutive failures that open a closed circuit (default 5). Ignored when `failure_rate` is set.
    pub failure_threshold: u32,
    /// Successful probes in half-open that close the circuit (default 2).
    pub success_threshold: u32,
    /// How long the circuit stays open before it admits probes (default 60 s).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Probes allowed at once in half-open (default 3).
    pub half_open_max_requests: u32,
    /// Opens on a failure rate over the last calls instead of on consecutive failures.
    pub failure_rate: Option<FailureRateConfig>,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        CircuitBreakerConfig {
            failure_threshold: 5,
            success_threshold: 2,
            timeout: Duration::from_secs(60),
            half_open_max_requests: 3,
            failure_rate: None,
        }
    }
}

/// The failure-rate mode: the circuit opens when the share of failures among the last
/// `window_size` calls reaches `threshold`, once at least `minimum_calls` calls were seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailureRateConfig {
    /// The number of most recent calls that the window holds.
    pub window_size: u32,
    /// Calls the window must hold before the rate can open the circuit.
    pub minimum_calls: u32,
    /// The failure rate, in (0, 1], that opens the circuit.
    pub threshold: f64,
}

/// The largest sliding window, in calls.
pub const MAX_WINDOW_SIZE: u32 = 100_000;

impl CircuitBreakerConfig {
    /// Checks every field and returns the first invalid one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.failure_threshold == 0 {
            return Err(ConfigError::invalid(
                "failure_threshold",
                0,
                "must be at least 1",
            ));
        }
        check_half_open_count("success_threshold", self.success_threshold)?;
        check_half_open_count("half_open_max_requests", self.half_open_max_requests)?;
        if self.timeout.is_zero() || self.timeout > MAX_OPEN_TIMEOUT {
            return Err(ConfigError::invalid(
                "timeout",
                format!("{:?}", self.timeout),
                "must be greater than zero and at most 365 days",
            ));
        }
        if let Some(rate) = &self.failure_rate {
            rate.validate().map_err(|e| e.in_section("failure_rate"))?;
        }
        Ok(())
    }
}

impl FailureRateConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.window_size == 0 || self.window_size > MAX_WINDOW_SIZE {
            return Err(ConfigError::invalid(
                "window_size",
                self.window_size,
                format!("must be between 1 and {MAX_WINDOW_SIZE}"),
            ));
        }
        if self.minimum_calls == 0 || self.minimum_calls > self.window_size {
            return Err(ConfigError::invalid(
                "minimum_calls",
                self.minimum_calls,
                format!(
                    "must be between 1 and window_size ({}), or the rate could never open the circuit",
                    self.window_size
                ),
            ));
        }
        if !(self.threshold > 0.0 && self.threshold <= 1.0) {
            return Err(ConfigError::invalid(
                "threshold",
                self.threshold,
                "must be a failure rate greater than 0 and at most 1",
            ));
        }
        Ok(())
    }
}

fn check_half_open_count(field: &str, value: u32) -> Result<(), ConfigError> {
    if value == 0 || value > MAX_HALF_OPEN_COUNT {
        return Err(ConfigError::invalid(
            field,
            value,
            format!("must be between 1 and {MAX_HALF_OPEN_COUNT}"),
        ));
    }
    Ok(())
}
