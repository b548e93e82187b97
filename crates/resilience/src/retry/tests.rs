//! Unit tests of the retry loop and its backoff: delays at the edges of the parameter space and the
//! attempt count that the loop reports.

use std::time::Duration;

use proptest::prelude::*;

use super::backoff::{base_delay, delay};
use super::{JitterMode, Retry, RetryConfig, Step};
use crate::outcome::{Failure, FailureClass, NeutralReason, Outcome};

fn config(initial: Duration, max: Duration, multiplier: f64) -> RetryConfig {
    RetryConfig {
        max_retries: u32::MAX,
        initial_backoff: initial,
        max_backoff: max,
        backoff_multiplier: multiplier,
        jitter: false,
        ..RetryConfig::default()
    }
}

#[test]
fn base_delay_matches_formula_exactly() {
    let cases = [
        (
            100,
            10_000,
            2.0,
            vec![100, 200, 400, 800, 1_600, 3_200, 6_400, 10_000],
        ),
        (
            300,
            5_000,
            1.5,
            vec![300, 450, 675, 1_012, 1_518, 2_278, 3_417, 5_000],
        ),
        (700, 700, 1.0, vec![700, 700, 700, 700, 700, 700, 700, 700]),
        (
            1,
            60_000,
            10.0,
            vec![1, 10, 100, 1_000, 10_000, 60_000, 60_000, 60_000],
        ),
    ];
    for (initial_ms, max_ms, multiplier, expected_ms) in cases {
        let config = config(
            Duration::from_millis(initial_ms),
            Duration::from_millis(max_ms),
            multiplier,
        );
        let delays: Vec<u64> = (0..8)
            .map(|retry| base_delay(&config, retry).as_millis() as u64)
            .collect();
        assert_eq!(
            delays, expected_ms,
            "initial {initial_ms} ms, multiplier {multiplier}"
        );
    }
}

#[test]
fn zero_initial_backoff_stays_zero() {
    // 0 * 2^n is 0 for every n, also where 2^n overflows f64 (n >= 1024).
    let config = config(Duration::ZERO, Duration::from_secs(10), 2.0);

    for retry in [0, 1, 1_023, 1_024, 5_000, u32::MAX] {
        assert_eq!(base_delay(&config, retry), Duration::ZERO, "retry {retry}");
    }
}

#[test]
fn jitter_off_ignores_unit() {
    let config = config(Duration::from_millis(100), Duration::from_secs(10), 2.0);

    for unit in [0.0, 0.25, 0.5, 0.999_999] {
        assert_eq!(delay(&config, 3, unit), Duration::from_millis(800));
    }
}

#[test]
fn full_jitter_scales_base_by_unit() {
    let config = RetryConfig {
        jitter: true,
        jitter_mode: JitterMode::Full,
        ..config(Duration::from_millis(100), Duration::from_secs(10), 2.0)
    };

    assert_eq!(delay(&config, 1, 0.0), Duration::ZERO);
    assert_eq!(delay(&config, 1, 0.5), Duration::from_millis(100));
    assert!(delay(&config, 1, 0.999_999) < Duration::from_millis(200));
}

#[test]
fn after_attempt_decides_each_step() {
    let retry = Retry::new(RetryConfig {
        max_retries: 2,
        jitter: false,
        ..RetryConfig::default()
    })
    .unwrap();
    let server = Outcome::failure(FailureClass::Server);
    let hinted = Outcome::Failure(
        Failure::new(FailureClass::RateLimited).with_retry_after(Some(Duration::from_secs(3))),
    );
    let too_long = Outcome::Failure(
        Failure::new(FailureClass::RateLimited).with_retry_after(Some(Duration::from_secs(11))),
    );

    assert_eq!(retry.after_attempt(0, &Outcome::Success), Step::Stop);
    assert_eq!(
        retry.after_attempt(0, &server),
        Step::RetryAfter(Duration::from_millis(100))
    );
    assert_eq!(
        retry.after_attempt(1, &server),
        Step::RetryAfter(Duration::from_millis(200))
    );
    assert_eq!(retry.after_attempt(2, &server), Step::Stop);
    assert_eq!(
        retry.after_attempt(0, &hinted),
        Step::RetryAfter(Duration::from_secs(3))
    );
    assert_eq!(retry.after_attempt(0, &too_long), Step::Stop);
    assert_eq!(
        retry.after_attempt(0, &Outcome::Neutral(NeutralReason::Cancelled)),
        Step::Stop
    );
    assert_eq!(
        retry.after_attempt(
            0,
            &Outcome::Failure(Failure::new(FailureClass::Server).retryable(false))
        ),
        Step::Stop
    );
}

#[test]
fn after_attempt_at_u32_max_stops() {
    let retry = Retry::new(RetryConfig {
        max_retries: u32::MAX,
        ..RetryConfig::default()
    })
    .unwrap();
    let server = Outcome::failure(FailureClass::Server);

    assert!(matches!(
        retry.after_attempt(u32::MAX - 1, &server),
        Step::RetryAfter(_)
    ));
    assert_eq!(retry.after_attempt(u32::MAX, &server), Step::Stop);
    assert_eq!(retry.stats().gave_up, 1);
}

proptest! {
    #[test]
    fn full_jitter_is_within_zero_and_base(
        initial_ms in 0u64..=60_000,
        extra_ms in 0u64..=60_000,
        multiplier in 1.0f64..8.0,
        retry in prop_oneof![0u32..64, any::<u32>()],
        unit in 0.0f64..1.0,
    ) {
        let config = RetryConfig {
            jitter: true,
            jitter_mode: JitterMode::Full,
            ..config(
                Duration::from_millis(initial_ms),
                Duration::from_millis(initial_ms + extra_ms + 1),
                multiplier,
            )
        };
        let base = base_delay(&config, retry);
        let jittered = delay(&config, retry, unit);
        prop_assert!(jittered <= base, "{jittered:?} > {base:?}");
    }

    #[test]
    fn proportional_jitter_is_within_fraction_and_cap(
        initial_ms in 0u64..=60_000,
        extra_ms in 0u64..=60_000,
        multiplier in 1.0f64..8.0,
        fraction in 0.0f64..=1.0,
        retry in prop_oneof![0u32..64, any::<u32>()],
        unit in 0.0f64..1.0,
    ) {
        let config = RetryConfig {
            jitter: true,
            jitter_fraction: fraction,
            jitter_mode: JitterMode::Proportional,
            ..config(
                Duration::from_millis(initial_ms),
                Duration::from_millis(initial_ms + extra_ms + 1),
                multiplier,
            )
        };
        let base = base_delay(&config, retry).as_secs_f64();
        let jittered = delay(&config, retry, unit);
        let tolerance = 1e-9;
        prop_assert!(jittered <= config.max_backoff);
        prop_assert!(jittered.as_secs_f64() >= base * (1.0 - fraction) - tolerance);
        prop_assert!(jittered.as_secs_f64() <= base * (1.0 + fraction) + tolerance);
    }

    #[test]
    fn base_delay_is_monotonic_from_zero(
        initial_ms in 0u64..=1_000,
        multiplier in prop_oneof![1.0f64..4.0, 4.0f64..1e300],
        retry in prop_oneof![0u32..2_000, any::<u32>()],
    ) {
        let config = config(Duration::from_millis(initial_ms), Duration::from_secs(60), multiplier);
        let this = base_delay(&config, retry);
        let next = base_delay(&config, retry.saturating_add(1));
        prop_assert!(this <= next, "retry {retry}: {this:?} > next {next:?}");
        if initial_ms == 0 {
            prop_assert_eq!(this, Duration::ZERO);
        }
    }
}
