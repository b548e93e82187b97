//! Configuration of the core patterns: defaults, TOML with human-readable durations, unknown
//! fields, and the error for every invalid value.

use std::time::Duration;

use resilience::circuit_breaker::{MAX_HALF_OPEN_COUNT, MAX_OPEN_TIMEOUT, MAX_WINDOW_SIZE};
use resilience::{
    Bulkhead, BulkheadConfig, CircuitBreaker, CircuitBreakerConfig, ConfigError, FailureRateConfig,
    JitterMode, Retry, RetryConfig,
};

/// Asserts that `result` is an invalid-field error for `field` with `value`, and that its message
/// names both.
fn assert_invalid<T: std::fmt::Debug>(result: Result<T, ConfigError>, field: &str, value: &str) {
    let error = result.expect_err(&format!("{field} = {value} should be rejected"));
    let message = error.to_string();
    let ConfigError::Invalid {
        field: actual_field,
        value: actual_value,
        reason,
        provider,
    } = error
    else {
        panic!("expected an invalid-field error for {field}, got {error:?}");
    };
    assert_eq!(actual_field, field);
    assert_eq!(actual_value, value, "value of {field}");
    assert_eq!(provider, None);
    assert!(!reason.is_empty(), "{field}: the error gives no reason");
    assert!(message.contains(field), "{message:?} does not name {field}");
    assert!(message.contains(value), "{message:?} does not show {value}");
}

fn rate(window_size: u32, minimum_calls: u32, threshold: f64) -> CircuitBreakerConfig {
    CircuitBreakerConfig {
        failure_rate: Some(FailureRateConfig {
            window_size,
            minimum_calls,
            threshold,
        }),
        ..CircuitBreakerConfig::default()
    }
}

// --- Defaults -----------------------------------------------------------------------------------

#[test]
fn breaker_defaults() {
    let config = CircuitBreakerConfig::default();

    assert_eq!(config.failure_threshold, 5);
    assert_eq!(config.success_threshold, 2);
    assert_eq!(config.timeout, Duration::from_secs(60));
    assert_eq!(config.half_open_max_requests, 3);
    assert_eq!(config.failure_rate, None);
    assert!(config.validate().is_ok());
}

#[test]
fn bulkhead_defaults() {
    let config = BulkheadConfig::default();

    assert_eq!(config.max_concurrent, 10);
    assert_eq!(config.max_queue, 20);
    assert_eq!(config.queue_timeout, Duration::from_secs(5));
    assert!(config.validate().is_ok());
}

#[test]
fn retry_defaults() {
    let config = RetryConfig::default();

    assert_eq!(config.max_retries, 3);
    assert_eq!(config.initial_backoff, Duration::from_millis(100));
    assert_eq!(config.max_backoff, Duration::from_secs(10));
    assert_eq!(config.backoff_multiplier, 2.0);
    assert!(config.jitter);
    assert_eq!(config.jitter_fraction, 0.1);
    assert_eq!(config.jitter_mode, JitterMode::Proportional);
    assert!(config.validate().is_ok());
}

#[test]
fn empty_toml_gives_defaults() {
    let breaker: CircuitBreakerConfig = toml::from_str("").unwrap();
    let bulkhead: BulkheadConfig = toml::from_str("").unwrap();
    let retry: RetryConfig = toml::from_str("").unwrap();

    assert_eq!(breaker, CircuitBreakerConfig::default());
    assert_eq!(bulkhead, BulkheadConfig::default());
    assert_eq!(retry, RetryConfig::default());
}

// --- TOML ---------------------------------------------------------------------------------------

#[test]
fn breaker_toml_parses_every_field() {
    let config: CircuitBreakerConfig = toml::from_str(
        r#"
        failure_threshold = 7
        success_threshold = 3
        timeout = "90s"
        half_open_max_requests = 1

        [failure_rate]
        window_size = 50
        minimum_calls = 20
        threshold = 0.5
        "#,
    )
    .unwrap();

    assert_eq!(
        config,
        CircuitBreakerConfig {
            failure_threshold: 7,
            success_threshold: 3,
            timeout: Duration::from_secs(90),
            half_open_max_requests: 1,
            failure_rate: Some(FailureRateConfig {
                window_size: 50,
                minimum_calls: 20,
                threshold: 0.5,
            }),
        }
    );
    assert!(CircuitBreaker::new(config).is_ok());
}

#[test]
fn bulkhead_toml_parses_every_field() {
    let config: BulkheadConfig = toml::from_str(
        r#"
        max_concurrent = 4
        max_queue = 0
        queue_timeout = "250ms"
        "#,
    )
    .unwrap();

    assert_eq!(
        config,
        BulkheadConfig {
            max_concurrent: 4,
            max_queue: 0,
            queue_timeout: Duration::from_millis(250),
        }
    );
    assert!(Bulkhead::new(config).is_ok());
}

#[test]
fn retry_toml_parses_every_field() {
    let config: RetryConfig = toml::from_str(
        r#"
        max_retries = 5
        initial_backoff = "100ms"
        max_backoff = "1m 30s"
        backoff_multiplier = 1.5
        jitter = false
        jitter_fraction = 0.25
        jitter_mode = "full"
        "#,
    )
    .unwrap();

    assert_eq!(
        config,
        RetryConfig {
            max_retries: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(90),
            backoff_multiplier: 1.5,
            jitter: false,
            jitter_fraction: 0.25,
            jitter_mode: JitterMode::Full,
        }
    );
    assert!(Retry::new(config).is_ok());
}

#[test]
fn durations_accept_humantime_units() {
    let cases = [
        ("60s", Duration::from_secs(60)),
        ("100ms", Duration::from_millis(100)),
        ("2min", Duration::from_secs(120)),
        ("1h", Duration::from_secs(3_600)),
        ("1s 500ms", Duration::from_millis(1_500)),
        ("250us", Duration::from_micros(250)),
    ];
    for (text, expected) in cases {
        let config: BulkheadConfig =
            toml::from_str(&format!("queue_timeout = \"{text}\"")).unwrap();
        assert_eq!(config.queue_timeout, expected, "{text}");
    }
}

#[test]
fn duration_without_unit_is_rejected() {
    for text in [
        "queue_timeout = \"60\"",
        "queue_timeout = 60",
        "queue_timeout = \"soon\"",
    ] {
        let parsed = toml::from_str::<BulkheadConfig>(text);
        assert!(parsed.is_err(), "{text} was accepted as {parsed:?}");
    }
}

#[test]
fn configs_round_trip_through_toml() {
    let breaker = rate(30, 10, 0.25);
    let bulkhead = BulkheadConfig {
        queue_timeout: Duration::from_millis(1_500),
        ..BulkheadConfig::default()
    };
    let retry = RetryConfig {
        jitter_mode: JitterMode::Full,
        ..RetryConfig::default()
    };

    let breaker_text = toml::to_string(&breaker).unwrap();
    let bulkhead_text = toml::to_string(&bulkhead).unwrap();
    let retry_text = toml::to_string(&retry).unwrap();

    assert_eq!(
        toml::from_str::<CircuitBreakerConfig>(&breaker_text).unwrap(),
        breaker
    );
    assert_eq!(
        toml::from_str::<BulkheadConfig>(&bulkhead_text).unwrap(),
        bulkhead
    );
    assert_eq!(toml::from_str::<RetryConfig>(&retry_text).unwrap(), retry);
}

#[test]
fn unknown_fields_are_rejected() {
    type Parse = fn(&str) -> Result<(), toml::de::Error>;
    let cases: [(&str, Parse); 4] = [
        ("failure_treshold = 3", |text| {
            toml::from_str::<CircuitBreakerConfig>(text).map(drop)
        }),
        (
            "[failure_rate]\nwindow_size = 10\nminimum_calls = 5\nthreshold = 0.5\nwindow = 3",
            |text| toml::from_str::<CircuitBreakerConfig>(text).map(drop),
        ),
        ("max_concurent = 3", |text| {
            toml::from_str::<BulkheadConfig>(text).map(drop)
        }),
        ("max_retry = 3", |text| {
            toml::from_str::<RetryConfig>(text).map(drop)
        }),
    ];
    for (text, parse) in cases {
        let error = parse(text).expect_err(text);
        let unknown = text.lines().last().unwrap().split(' ').next().unwrap();
        assert!(
            error.to_string().contains(unknown),
            "the error for {text:?} does not name {unknown}: {error}"
        );
    }
}

#[test]
fn failure_rate_needs_every_field() {
    let parsed = toml::from_str::<CircuitBreakerConfig>("[failure_rate]\nwindow_size = 10");

    let error = parsed.expect_err("a failure rate without a threshold was accepted");
    assert!(error.to_string().contains("minimum_calls"), "{error}");
}

#[test]
fn wrong_types_are_rejected() {
    assert!(toml::from_str::<CircuitBreakerConfig>("failure_threshold = -1").is_err());
    assert!(toml::from_str::<BulkheadConfig>("max_queue = \"many\"").is_err());
    assert!(toml::from_str::<RetryConfig>("jitter = \"yes\"").is_err());
    assert!(toml::from_str::<RetryConfig>("jitter_mode = \"half\"").is_err());
}

// --- Invalid values -----------------------------------------------------------------------------

#[test]
fn breaker_rejects_invalid_counts() {
    let too_many = MAX_HALF_OPEN_COUNT + 1;
    let cases = [
        (
            CircuitBreakerConfig {
                failure_threshold: 0,
                ..Default::default()
            },
            "failure_threshold",
            "0".to_owned(),
        ),
        (
            CircuitBreakerConfig {
                success_threshold: 0,
                ..Default::default()
            },
            "success_threshold",
            "0".to_owned(),
        ),
        (
            CircuitBreakerConfig {
                success_threshold: too_many,
                ..Default::default()
            },
            "success_threshold",
            too_many.to_string(),
        ),
        (
            CircuitBreakerConfig {
                half_open_max_requests: 0,
                ..Default::default()
            },
            "half_open_max_requests",
            "0".to_owned(),
        ),
        (
            CircuitBreakerConfig {
                half_open_max_requests: too_many,
                ..Default::default()
            },
            "half_open_max_requests",
            too_many.to_string(),
        ),
    ];
    for (config, field, value) in cases {
        assert_invalid(config.validate(), field, &value);
        assert_invalid(CircuitBreaker::new(config), field, &value);
    }
}

#[test]
fn breaker_rejects_invalid_timeout() {
    let too_long = MAX_OPEN_TIMEOUT + Duration::from_secs(1);
    for (timeout, value) in [(Duration::ZERO, "0ns"), (too_long, "31536001s")] {
        let config = CircuitBreakerConfig {
            timeout,
            ..Default::default()
        };
        assert_invalid(CircuitBreaker::new(config), "timeout", value);
    }
}

#[test]
fn breaker_rejects_invalid_failure_rate() {
    let cases = [
        (rate(0, 1, 0.5), "failure_rate.window_size", "0".to_owned()),
        (
            rate(MAX_WINDOW_SIZE + 1, 1, 0.5),
            "failure_rate.window_size",
            (MAX_WINDOW_SIZE + 1).to_string(),
        ),
        (
            rate(10, 0, 0.5),
            "failure_rate.minimum_calls",
            "0".to_owned(),
        ),
        (
            rate(10, 11, 0.5),
            "failure_rate.minimum_calls",
            "11".to_owned(),
        ),
        (rate(10, 5, 0.0), "failure_rate.threshold", "0".to_owned()),
        (
            rate(10, 5, -0.5),
            "failure_rate.threshold",
            "-0.5".to_owned(),
        ),
        (rate(10, 5, 1.5), "failure_rate.threshold", "1.5".to_owned()),
        (
            rate(10, 5, f64::NAN),
            "failure_rate.threshold",
            "NaN".to_owned(),
        ),
        (
            rate(10, 5, f64::INFINITY),
            "failure_rate.threshold",
            "inf".to_owned(),
        ),
    ];
    for (config, field, value) in cases {
        assert_invalid(CircuitBreaker::new(config), field, &value);
    }
}

#[test]
fn breaker_accepts_edge_values() {
    let configs = [
        rate(1, 1, 1.0),
        rate(MAX_WINDOW_SIZE, MAX_WINDOW_SIZE, f64::MIN_POSITIVE),
        CircuitBreakerConfig {
            failure_threshold: 1,
            success_threshold: MAX_HALF_OPEN_COUNT,
            half_open_max_requests: 1,
            timeout: MAX_OPEN_TIMEOUT,
            failure_rate: None,
        },
        CircuitBreakerConfig {
            timeout: Duration::from_nanos(1),
            half_open_max_requests: MAX_HALF_OPEN_COUNT,
            ..Default::default()
        },
    ];
    for config in configs {
        assert!(CircuitBreaker::new(config.clone()).is_ok(), "{config:?}");
    }
}

#[test]
fn bulkhead_rejects_invalid_values() {
    let limit = resilience::bulkhead::MAX_CONCURRENT_LIMIT;
    let cases = [
        (
            BulkheadConfig {
                max_concurrent: 0,
                ..Default::default()
            },
            "max_concurrent",
            "0".to_owned(),
        ),
        (
            BulkheadConfig {
                max_concurrent: limit + 1,
                ..Default::default()
            },
            "max_concurrent",
            (limit + 1).to_string(),
        ),
        (
            BulkheadConfig {
                max_queue: limit + 1,
                ..Default::default()
            },
            "max_queue",
            (limit + 1).to_string(),
        ),
        (
            BulkheadConfig {
                queue_timeout: Duration::ZERO,
                ..Default::default()
            },
            "queue_timeout",
            "0s".to_owned(),
        ),
    ];
    for (config, field, value) in cases {
        assert_invalid(config.validate(), field, &value);
        assert_invalid(Bulkhead::new(config), field, &value);
    }
}

#[test]
fn bulkhead_accepts_edge_values() {
    let limit = resilience::bulkhead::MAX_CONCURRENT_LIMIT;
    for config in [
        BulkheadConfig {
            max_concurrent: 1,
            max_queue: 0,
            queue_timeout: Duration::from_nanos(1),
        },
        BulkheadConfig {
            max_concurrent: limit,
            max_queue: limit,
            queue_timeout: Duration::MAX,
        },
    ] {
        assert!(Bulkhead::new(config.clone()).is_ok(), "{config:?}");
    }
}

#[test]
fn retry_rejects_invalid_values() {
    let too_long = resilience::retry::MAX_BACKOFF_LIMIT + Duration::from_secs(1);
    let cases = [
        (
            RetryConfig {
                max_backoff: Duration::ZERO,
                initial_backoff: Duration::ZERO,
                ..Default::default()
            },
            "max_backoff",
            "0ns",
        ),
        (
            RetryConfig {
                max_backoff: too_long,
                ..Default::default()
            },
            "max_backoff",
            "86401s",
        ),
        (
            RetryConfig {
                initial_backoff: Duration::from_secs(11),
                ..Default::default()
            },
            "initial_backoff",
            "11s",
        ),
        (
            RetryConfig {
                backoff_multiplier: 0.5,
                ..Default::default()
            },
            "backoff_multiplier",
            "0.5",
        ),
        (
            RetryConfig {
                backoff_multiplier: 0.0,
                ..Default::default()
            },
            "backoff_multiplier",
            "0",
        ),
        (
            RetryConfig {
                backoff_multiplier: -2.0,
                ..Default::default()
            },
            "backoff_multiplier",
            "-2",
        ),
        (
            RetryConfig {
                backoff_multiplier: f64::NAN,
                ..Default::default()
            },
            "backoff_multiplier",
            "NaN",
        ),
        (
            RetryConfig {
                backoff_multiplier: f64::INFINITY,
                ..Default::default()
            },
            "backoff_multiplier",
            "inf",
        ),
        (
            RetryConfig {
                jitter_fraction: -0.1,
                ..Default::default()
            },
            "jitter_fraction",
            "-0.1",
        ),
        (
            RetryConfig {
                jitter_fraction: 1.01,
                ..Default::default()
            },
            "jitter_fraction",
            "1.01",
        ),
        (
            RetryConfig {
                jitter_fraction: f64::NAN,
                ..Default::default()
            },
            "jitter_fraction",
            "NaN",
        ),
        // Checked even with jitter off, so turning jitter on later cannot make the value bite.
        (
            RetryConfig {
                jitter: false,
                jitter_fraction: 2.0,
                ..Default::default()
            },
            "jitter_fraction",
            "2",
        ),
    ];
    for (config, field, value) in cases {
        assert_invalid(config.validate(), field, value);
        assert_invalid(Retry::new(config), field, value);
    }
}

#[test]
fn retry_accepts_edge_values() {
    let configs = [
        RetryConfig {
            max_retries: 0,
            ..Default::default()
        },
        RetryConfig {
            max_retries: u32::MAX,
            ..Default::default()
        },
        RetryConfig {
            initial_backoff: Duration::ZERO,
            ..Default::default()
        },
        RetryConfig {
            initial_backoff: Duration::from_secs(10),
            ..Default::default()
        },
        RetryConfig {
            backoff_multiplier: 1.0,
            ..Default::default()
        },
        RetryConfig {
            jitter_fraction: 0.0,
            ..Default::default()
        },
        RetryConfig {
            jitter_fraction: 1.0,
            ..Default::default()
        },
        RetryConfig {
            max_backoff: resilience::retry::MAX_BACKOFF_LIMIT,
            ..Default::default()
        },
    ];
    for config in configs {
        assert!(Retry::new(config.clone()).is_ok(), "{config:?}");
    }
}

#[test]
fn toml_with_invalid_value_fails_at_construction() {
    let breaker: CircuitBreakerConfig = toml::from_str("failure_threshold = 0").unwrap();
    let bulkhead: BulkheadConfig = toml::from_str("queue_timeout = \"0s\"").unwrap();
    let retry: RetryConfig =
        toml::from_str("initial_backoff = \"20s\"\nmax_backoff = \"10s\"").unwrap();

    assert_invalid(CircuitBreaker::new(breaker), "failure_threshold", "0");
    assert_invalid(Bulkhead::new(bulkhead), "queue_timeout", "0s");
    assert_invalid(Retry::new(retry), "initial_backoff", "20s");
}

#[test]
fn invalid_value_message_reads_as_a_sentence() {
    let error = CircuitBreaker::new(rate(10, 11, 0.5)).unwrap_err();

    assert_eq!(
        error.to_string(),
        "invalid failure_rate.minimum_calls = 11: must be between 1 and window_size (10), \
         or the rate could never open the circuit"
    );
}
