//! The delay before each retry: exponential, capped, and jittered inside the cap.

use std::time::Duration;

use super::{JitterMode, RetryConfig};

/// Returns the delay before retry number `retry` (0 for the first retry) without jitter:
/// `initial_backoff * backoff_multiplier^retry`, capped at `max_backoff`.
pub(crate) fn base_delay(config: &RetryConfig, retry: u32) -> Duration {
    let max = config.max_backoff;
    if config.initial_backoff.is_zero() {
        // 0 * multiplier^retry is 0, but in f64 it is NaN once multiplier^retry overflows.
        return Duration::ZERO;
    }
    let seconds =
        config.initial_backoff.as_secs_f64() * config.backoff_multiplier.powf(f64::from(retry));
    if !seconds.is_finite() || seconds >= max.as_secs_f64() {
        return max;
    }
    Duration::try_from_secs_f64(seconds).map_or(max, |delay| delay.min(max))
}

/// Returns the delay before retry number `retry`, with jitter drawn from `unit`, a number in [0, 1).
/// The result is always in `[0, max_backoff]`.
pub(crate) fn delay(config: &RetryConfig, retry: u32, unit: f64) -> Duration {
    let base = base_delay(config, retry);
    if !config.jitter {
        return base;
    }
    let factor = match config.jitter_mode {
        JitterMode::Proportional => 1.0 + config.jitter_fraction * (2.0 * unit - 1.0),
        JitterMode::Full => unit,
    };
    let seconds = (base.as_secs_f64() * factor).clamp(0.0, config.max_backoff.as_secs_f64());
    Duration::try_from_secs_f64(seconds)
        .map_or(config.max_backoff, |delay| delay.min(config.max_backoff))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn config(
        initial_ms: u64,
        max_ms: u64,
        multiplier: f64,
        jitter: bool,
        fraction: f64,
        full: bool,
    ) -> RetryConfig {
        RetryConfig {
            max_retries: u32::MAX,
            initial_backoff: Duration::from_millis(initial_ms.min(max_ms)),
            max_backoff: Duration::from_millis(max_ms),
            backoff_multiplier: multiplier,
            jitter,
            jitter_fraction: fraction,
            jitter_mode: if full {
                JitterMode::Full
            } else {
                JitterMode::Proportional
            },
        }
    }

    #[test]
    fn base_delay_doubles_then_caps() {
        let config = config(100, 1_000, 2.0, false, 0.0, false);
        let delays: Vec<u64> = (0..6)
            .map(|n| base_delay(&config, n).as_millis() as u64)
            .collect();
        assert_eq!(delays, [100, 200, 400, 800, 1_000, 1_000]);
    }

    #[test]
    fn proportional_jitter_stays_near_base() {
        let config = config(1_000, 10_000, 2.0, true, 0.1, false);
        assert_eq!(delay(&config, 0, 0.0), Duration::from_millis(900));
        assert_eq!(delay(&config, 0, 0.5), Duration::from_millis(1_000));
        assert!(delay(&config, 0, 0.999_999) <= Duration::from_millis(1_100));
    }

    #[test]
    fn jitter_at_cap_stays_inside_cap() {
        let config = config(1_000, 2_000, 4.0, true, 1.0, false);
        assert_eq!(delay(&config, 5, 0.999_999), Duration::from_millis(2_000));
        assert_eq!(delay(&config, 5, 0.0), Duration::ZERO);
    }

    proptest! {
        #[test]
        fn delay_is_within_zero_and_max(
            initial_ms in 0u64..=86_400_000,
            max_ms in 1u64..=86_400_000,
            multiplier in prop_oneof![1.0f64..=1.0, 1.0f64..10.0, 10.0f64..1e300, Just(f64::MAX)],
            jitter in any::<bool>(),
            fraction in 0.0f64..=1.0,
            full in any::<bool>(),
            retry in prop_oneof![0u32..64, any::<u32>(), Just(u32::MAX)],
            unit in 0.0f64..1.0,
        ) {
            let config = config(initial_ms, max_ms, multiplier, jitter, fraction, full);
            prop_assert!(config.validate().is_ok());
            let delay = delay(&config, retry, unit);
            prop_assert!(delay <= config.max_backoff, "{delay:?} exceeds {:?}", config.max_backoff);
        }

        #[test]
        fn base_delay_never_decreases(initial_ms in 1u64..10_000, multiplier in 1.0f64..4.0, retry in 0u32..2_000) {
            let config = config(initial_ms, 60_000, multiplier, false, 0.0, false);
            prop_assert!(base_delay(&config, retry) <= base_delay(&config, retry + 1));
        }
    }
}
