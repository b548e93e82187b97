//! The Manager's composition, lifecycle, configuration and statistics.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use resilience::{
    CallErrorKind, CircuitState, Config, FailureClass, HealthIssue, Manager, Outcome,
    ProviderConfig,
};

fn config(toml: &str) -> Config {
    Config::from_toml_str(toml).expect("test configuration is valid")
}

fn manager(toml: &str) -> Manager<String> {
    Manager::new(config(toml)).expect("manager builds")
}

async fn failing_call(manager: &Manager<String>, provider: &str) -> CallErrorKind {
    manager
        .execute(provider, |_| async { Err::<String, _>("unavailable") })
        .await
        .expect_err("the call fails")
        .kind()
}

#[tokio::test(start_paused = true)]
async fn open_circuit_stops_retries_at_once() {
    let manager = manager(
        r#"
[defaults.retry]
max_retries = 5
jitter = false
initial_backoff = "100ms"
[defaults.circuit_breaker]
failure_threshold = 2
"#,
    );
    let calls = AtomicU32::new(0);
    let error = manager
        .execute("llm", |_| {
            calls.fetch_add(1, Ordering::Relaxed);
            async { Err::<String, _>("unavailable") }
        })
        .await
        .expect_err("the call fails");

    // Two attempts open the circuit; the third is rejected by it and not retried.
    assert_eq!(calls.load(Ordering::Relaxed), 2);
    assert_eq!(error.kind(), CallErrorKind::CircuitOpen);
    let outcomes: Vec<&str> = error.attempts().iter().map(|a| a.outcome).collect();
    assert_eq!(outcomes, ["other", "other", "rejected"]);
    let retry = manager.stats().providers["llm"]
        .retry
        .clone()
        .expect("retry enabled");
    assert_eq!(retry.retries, 2);
    assert_eq!(retry.attempts, 3);
}

#[tokio::test(start_paused = true)]
async fn backoff_sleep_holds_no_slot() {
    let manager = manager(
        r#"
[defaults.retry]
max_retries = 1
jitter = false
initial_backoff = "1s"
[defaults.bulkhead]
max_concurrent = 1
max_queue = 0
"#,
    );
    let first = {
        let manager = manager.clone();
        tokio::spawn(async move {
            let attempts = AtomicU32::new(0);
            manager
                .execute("llm", |_| {
                    let n = attempts.fetch_add(1, Ordering::Relaxed);
                    async move {
                        if n == 0 {
                            Err("busy")
                        } else {
                            Ok("second".to_owned())
                        }
                    }
                })
                .await
        })
    };
    // Let the first call fail and start its backoff sleep.
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        manager.stats().providers["llm"]
            .bulkhead
            .as_ref()
            .map(|b| b.active),
        Some(0)
    );

    // The slot is free during the sleep, so another call runs at once.
    let other = manager
        .execute("llm", |_| async { Ok::<_, &str>("other".to_owned()) })
        .await;
    assert_eq!(other.ok().as_deref(), Some("other"));
    let first = first.await.expect("task completes");
    assert_eq!(first.ok().as_deref(), Some("second"));
}

#[tokio::test(start_paused = true)]
async fn bulkhead_rejection_is_not_retried() {
    let manager = manager(
        r#"
[defaults.retry]
max_retries = 3
[defaults.bulkhead]
max_concurrent = 1
max_queue = 0
"#,
    );
    let stack = manager.provider("llm").expect("provider exists");
    let bulkhead = stack.bulkhead().expect("bulkhead enabled");
    let _held = bulkhead.try_acquire().expect("slot free");

    let calls = AtomicU32::new(0);
    let error = manager
        .execute("llm", |_| {
            calls.fetch_add(1, Ordering::Relaxed);
            async { Ok::<_, &str>(String::new()) }
        })
        .await
        .expect_err("bulkhead full");
    assert_eq!(error.kind(), CallErrorKind::BulkheadFull);
    assert_eq!(calls.load(Ordering::Relaxed), 0);
    assert_eq!(error.attempts().len(), 1);
    // The rejection does not count against the circuit.
    let breaker = stack.circuit_breaker().expect("breaker enabled").stats();
    assert_eq!(breaker.failures, 0);
}

#[tokio::test(start_paused = true)]
async fn operation_sees_provider_and_attempt_number() {
    let manager = manager("[defaults.retry]\nmax_retries = 2\njitter = false\n");
    let seen = std::sync::Mutex::new(Vec::new());
    let _ = manager
        .execute("llm", |attempt| {
            seen.lock()
                .expect("not poisoned")
                .push((attempt.provider().to_owned(), attempt.number()));
            async { Err::<String, _>("down") }
        })
        .await;
    let seen = seen.into_inner().expect("not poisoned");
    assert_eq!(
        seen,
        [
            ("llm".to_owned(), 0),
            ("llm".to_owned(), 1),
            ("llm".to_owned(), 2)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn reset_provider_closes_and_clears() {
    let manager = manager(
        "[defaults.retry]\nmax_retries = 0\n[defaults.circuit_breaker]\nfailure_threshold = 1\n",
    );
    failing_call(&manager, "llm").await;
    assert_eq!(
        failing_call(&manager, "llm").await,
        CallErrorKind::CircuitOpen
    );
    assert!(!manager.health_check().healthy);

    assert!(manager.reset_provider("llm"));
    assert!(!manager.reset_provider("unknown"));
    let stats = &manager.stats().providers["llm"];
    let breaker = stats.circuit_breaker.as_ref().expect("breaker enabled");
    assert_eq!(breaker.state, CircuitState::Closed);
    assert_eq!(
        (breaker.failures, breaker.rejections, breaker.transitions),
        (0, 0, 0)
    );
    assert_eq!(stats.requests.total, 0);
    assert!(manager.health_check().healthy);

    failing_call(&manager, "other").await;
    failing_call(&manager, "llm").await;
    manager.reset_all();
    for provider in ["llm", "other"] {
        let stats = &manager.stats().providers[provider];
        assert_eq!(
            stats.circuit_breaker.as_ref().map(|b| b.state),
            Some(CircuitState::Closed)
        );
        assert_eq!(stats.requests.total, 0);
    }
}

#[tokio::test(start_paused = true)]
async fn close_rejects_later_calls() {
    let manager = manager("");
    manager.close();
    assert!(manager.is_closed());
    let error = manager
        .execute("llm", |_| async { Ok::<_, &str>(String::new()) })
        .await
        .expect_err("closed");
    assert_eq!(error.kind(), CallErrorKind::Closed);
    assert!(error.to_string().contains("closed"), "{error}");
    assert!(!manager.health_check().healthy);
}

#[tokio::test(start_paused = true)]
async fn health_reports_open_circuit_and_saturation() {
    let manager = manager(
        r#"
[defaults.retry]
max_retries = 0
[defaults.circuit_breaker]
failure_threshold = 1
timeout = "30s"
[defaults.bulkhead]
max_concurrent = 1
max_queue = 0
[providers.a]
[providers.b]
"#,
    );
    failing_call(&manager, "a").await;
    let stack = manager.provider("b").expect("provider exists");
    let _slot = stack
        .bulkhead()
        .expect("bulkhead enabled")
        .try_acquire()
        .expect("slot free");

    let report = manager.health_check();
    assert!(!report.healthy);
    assert!(!report.providers["a"].available);
    assert_eq!(
        report.providers["a"].issues,
        [HealthIssue::CircuitOpen {
            remaining_ms: 30_000
        }]
    );
    assert!(!report.providers["b"].available);
    assert_eq!(
        report.providers["b"].issues,
        [
            HealthIssue::BulkheadSaturated {
                active: 1,
                max_concurrent: 1
            },
            HealthIssue::QueueFull {
                queued: 0,
                max_queue: 0
            },
        ]
    );
    let json = serde_json::to_value(&report).expect("report serializes");
    assert_eq!(json["providers"]["a"]["issues"][0]["issue"], "circuit_open");
}

#[tokio::test(start_paused = true)]
async fn disabled_patterns_report_no_issue() {
    let manager = manager(
        "enable_circuit_breaker = false\nenable_bulkhead = false\nenable_retry = false\n[defaults.circuit_breaker]\nfailure_threshold = 1\n",
    );
    for _ in 0..5 {
        assert_eq!(
            failing_call(&manager, "llm").await,
            CallErrorKind::Failed(FailureClass::Other)
        );
    }
    let stats = &manager.stats().providers["llm"];
    assert!(stats.circuit_breaker.is_none());
    assert!(stats.bulkhead.is_none());
    assert!(stats.retry.is_none());
    let report = manager.health_check();
    assert!(report.healthy);
    assert!(report.providers["llm"].issues.is_empty());
}

#[tokio::test(start_paused = true)]
async fn set_provider_config_replaces_stack() {
    let manager = manager(
        "[defaults.retry]\nmax_retries = 0\n[defaults.circuit_breaker]\nfailure_threshold = 1\n",
    );
    failing_call(&manager, "llm").await;
    assert_eq!(
        failing_call(&manager, "llm").await,
        CallErrorKind::CircuitOpen
    );

    let mut replacement = ProviderConfig::default();
    replacement.retry.max_retries = 0;
    replacement.circuit_breaker.failure_threshold = 3;
    manager
        .set_provider_config("llm", replacement)
        .expect("valid settings");
    for _ in 0..2 {
        assert_eq!(
            failing_call(&manager, "llm").await,
            CallErrorKind::Failed(FailureClass::Other)
        );
    }
    assert_eq!(
        failing_call(&manager, "llm").await,
        CallErrorKind::Failed(FailureClass::Other)
    );
    assert_eq!(
        failing_call(&manager, "llm").await,
        CallErrorKind::CircuitOpen
    );

    let mut invalid = ProviderConfig::default();
    invalid.bulkhead.max_concurrent = 0;
    let error = manager
        .set_provider_config("llm", invalid)
        .expect_err("invalid");
    assert!(
        error
            .to_string()
            .contains("providers.llm.bulkhead.max_concurrent"),
        "{error}"
    );
}

#[tokio::test(start_paused = true)]
async fn deferred_outcome_holds_slot_and_records_late() {
    let manager = manager("[defaults.circuit_breaker]\nfailure_threshold = 1\n");
    let (_, handle) = manager
        .execute("llm", |attempt| {
            let handle = attempt.defer();
            async move { Ok::<_, &str>(((), handle)) }
        })
        .await
        .expect("stream starts");
    let stats = |manager: &Manager<String>| manager.stats().providers["llm"].clone();
    assert_eq!(stats(&manager).bulkhead.map(|b| b.active), Some(1));
    assert_eq!(
        stats(&manager).circuit_breaker.map(|b| b.successes),
        Some(0)
    );

    handle.record(Outcome::failure(FailureClass::Transport));
    assert_eq!(stats(&manager).bulkhead.map(|b| b.active), Some(0));
    assert_eq!(
        stats(&manager).circuit_breaker.map(|b| b.state),
        Some(CircuitState::Open)
    );
}

#[tokio::test(start_paused = true)]
async fn dropped_handle_releases_as_neutral() {
    let manager = manager("");
    let (_, handle) = manager
        .execute("llm", |attempt| {
            let handle = attempt.defer();
            async move { Ok::<_, &str>(((), handle)) }
        })
        .await
        .expect("stream starts");
    drop(handle);
    let stats = manager.stats().providers["llm"].clone();
    assert_eq!(stats.bulkhead.map(|b| b.active), Some(0));
    assert_eq!(stats.circuit_breaker.map(|b| b.neutral), Some(1));
}

#[tokio::test(start_paused = true)]
async fn failed_deferred_attempt_records_at_once() {
    let manager = manager("[defaults.retry]\nmax_retries = 0\n");
    let result = manager
        .execute("llm", |attempt| {
            let handle = attempt.defer();
            async move {
                drop(handle);
                Err::<(), _>("no first event")
            }
        })
        .await;
    assert!(result.is_err());
    let stats = manager.stats().providers["llm"].clone();
    assert_eq!(stats.bulkhead.map(|b| b.active), Some(0));
    assert_eq!(stats.circuit_breaker.map(|b| b.failures), Some(1));
}

#[tokio::test(start_paused = true)]
async fn too_many_providers_rejected() {
    let manager = manager("max_providers = 2\n[providers.a]\n");
    assert!(manager
        .execute("b", |_| async { Ok::<_, &str>(()) })
        .await
        .is_ok());
    let error = manager
        .execute("c", |_| async { Ok::<_, &str>(()) })
        .await
        .expect_err("third provider");
    assert_eq!(error.kind(), CallErrorKind::TooManyProviders);
}

#[test]
fn overrides_merge_field_by_field() {
    let config = config(
        r#"
[defaults.circuit_breaker]
failure_threshold = 7
timeout = "45s"
[defaults.retry]
max_retries = 1
[providers.openai.circuit_breaker]
failure_threshold = 2
"#,
    );
    let openai = config.provider("openai");
    assert_eq!(openai.circuit_breaker.failure_threshold, 2);
    assert_eq!(openai.circuit_breaker.timeout, Duration::from_secs(45));
    assert_eq!(openai.retry.max_retries, 1);
    assert_eq!(
        config
            .provider("unconfigured")
            .circuit_breaker
            .failure_threshold,
        7
    );
}

#[test]
fn config_errors_name_provider_and_field() {
    let cases = [
        (
            "[providers.openai.retry]\nbackoff_multiplier = 0.5\n",
            "providers.openai.retry.backoff_multiplier = 0.5",
        ),
        (
            "[defaults.circuit_breaker]\nfailure_threshold = 0\n",
            "defaults.circuit_breaker.failure_threshold = 0",
        ),
        (
            "[providers.a.fallback]\nalternate_providers = [\"missing\"]\n",
            "providers.a.fallback.alternate_providers = \"missing\"",
        ),
        (
            "[providers.a.bulkhead]\nmax_concurent = 3\n",
            "unknown field `max_concurent`",
        ),
        (
            "enable_everything = true\n",
            "unknown field `enable_everything`",
        ),
        (
            "[providers.a.retry]\ninitial_backoff = \"soon\"\n",
            "providers.a",
        ),
    ];
    for (toml, expected) in cases {
        let error = Config::from_toml_str(toml).expect_err(toml).to_string();
        assert!(
            error.contains(expected),
            "error for {toml:?} was {error:?}, expected it to contain {expected:?}"
        );
    }
}

#[test]
fn config_file_loads() {
    let path = std::env::temp_dir().join(format!("resilience-config-{}.toml", std::process::id()));
    std::fs::write(&path, "[providers.openai.bulkhead]\nmax_concurrent = 3\n")
        .expect("temp file written");
    let config = Config::from_file(&path).expect("file loads");
    std::fs::remove_file(&path).expect("temp file removed");
    assert_eq!(config.provider("openai").bulkhead.max_concurrent, 3);

    let error = Config::from_file("/nonexistent/resilience.toml").expect_err("missing file");
    assert!(
        error.to_string().contains("/nonexistent/resilience.toml"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_statistics_add_up() {
    let manager: Manager<u64> = Manager::new(config(
        r#"
[defaults.retry]
max_retries = 2
initial_backoff = "1ms"
max_backoff = "2ms"
[defaults.circuit_breaker]
failure_threshold = 4
timeout = "5ms"
half_open_max_requests = 2
[defaults.bulkhead]
max_concurrent = 8
max_queue = 16
queue_timeout = "20ms"
[providers.flaky.fallback]
alternate_providers = ["backup"]
[providers.backup]
"#,
    ))
    .expect("manager builds");

    const REQUESTS: usize = 2_000;
    let primary_calls = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..REQUESTS)
        .map(|i| {
            let manager = manager.clone();
            let primary_calls = primary_calls.clone();
            tokio::spawn(async move {
                let key = format!("key-{}", i % 50);
                manager
                    .execute_with_fallback("flaky", Some(&key), |attempt| {
                        let on_primary = attempt.provider() == "flaky";
                        if on_primary {
                            primary_calls.fetch_add(1, Ordering::Relaxed);
                        }
                        async move {
                            tokio::task::yield_now().await;
                            let fails = fastrand::u32(0..100) < if on_primary { 40 } else { 20 };
                            if fails {
                                Err("unavailable")
                            } else {
                                Ok(i as u64)
                            }
                        }
                    })
                    .await
            })
        })
        .collect();
    let mut ok = 0;
    let mut errors = 0;
    for task in tasks {
        match task.await.expect("task completes") {
            Ok(_) => ok += 1,
            Err(_) => errors += 1,
        }
    }

    let stats = manager.stats();
    let requests = &stats.providers["flaky"].requests;
    assert_eq!(requests.total, REQUESTS as u64);
    assert_eq!(requests.cancelled, 0);
    assert_eq!(
        requests.succeeded
            + requests.fallbacks.cache
            + requests.fallbacks.stale
            + requests.fallbacks.provider,
        ok
    );
    assert_eq!(requests.failed + requests.fallbacks.error, errors);
    let retry = stats.providers["flaky"]
        .retry
        .as_ref()
        .expect("retry enabled");
    let breaker = stats.providers["flaky"]
        .circuit_breaker
        .as_ref()
        .expect("breaker enabled");
    // Every attempt that reached the operation was counted once by the breaker.
    assert_eq!(
        breaker.successes + breaker.failures + breaker.neutral,
        primary_calls.load(Ordering::Relaxed) as u64 + bulkhead_rejections(&stats, "flaky")
    );
    assert_eq!(
        retry.attempts,
        primary_calls.load(Ordering::Relaxed) as u64
            + breaker.rejections
            + bulkhead_rejections(&stats, "flaky")
    );
    let bulkhead = stats.providers["flaky"]
        .bulkhead
        .as_ref()
        .expect("bulkhead enabled");
    assert_eq!((bulkhead.active, bulkhead.queued), (0, 0));
}

/// Attempts that the bulkhead rejected after the breaker admitted them; the breaker counts them as
/// neutral.
fn bulkhead_rejections(stats: &resilience::ManagerStats, provider: &str) -> u64 {
    let bulkhead = stats.providers[provider]
        .bulkhead
        .as_ref()
        .expect("bulkhead enabled");
    bulkhead.rejected_full + bulkhead.rejected_queue_timeout
}

/// A response type whose failures arrive as `Ok`, as HTTP responses do.
#[derive(Debug, Clone, PartialEq)]
struct Status(u16);

fn classify_status(result: &Result<Status, std::convert::Infallible>) -> Outcome {
    match result {
        Ok(Status(200)) => Outcome::Success,
        Ok(Status(400)) => Outcome::Neutral(resilience::NeutralReason::CallerError),
        Ok(_) => Outcome::failure(FailureClass::Server),
        Err(never) => match *never {},
    }
}

type StatusClassifier = fn(&Result<Status, std::convert::Infallible>) -> Outcome;

fn status_manager(toml: &str) -> Manager<Status, StatusClassifier> {
    Manager::builder(config(toml))
        .classifier(classify_status as StatusClassifier)
        .build()
        .expect("manager builds")
}

#[tokio::test(start_paused = true)]
async fn ok_classified_failure_is_retried() {
    let manager = status_manager("[defaults.retry]\nmax_retries = 2\njitter = false\n");
    let calls = AtomicU32::new(0);
    let result = manager
        .execute("llm", |_| {
            let n = calls.fetch_add(1, Ordering::Relaxed);
            async move { Ok(if n < 2 { Status(503) } else { Status(200) }) }
        })
        .await;
    assert_eq!(result.ok(), Some(Status(200)));
    assert_eq!(calls.load(Ordering::Relaxed), 3);
}

#[tokio::test(start_paused = true)]
async fn ok_classified_failure_is_not_cached() {
    let manager = status_manager("[defaults.retry]\nmax_retries = 1\njitter = false\n");
    let calls = AtomicU32::new(0);
    let error = manager
        .execute_with_fallback("llm", Some("k"), |_| {
            calls.fetch_add(1, Ordering::Relaxed);
            async { Ok(Status(503)) }
        })
        .await
        .expect_err("every attempt failed");
    assert_eq!(calls.load(Ordering::Relaxed), 2);
    assert_eq!(error.kind(), CallErrorKind::Failed(FailureClass::Server));
    assert!(error.source_error().is_none());
    assert_eq!(manager.stats().providers["llm"].cache_entries, 0);
}

#[tokio::test(start_paused = true)]
async fn ok_classified_neutral_returns_uncached() {
    let manager = status_manager("[defaults.retry]\nmax_retries = 2\n");
    let served = manager
        .execute_with_fallback("llm", Some("k"), |_| async { Ok(Status(400)) })
        .await
        .expect("the caller's error response comes back");
    assert_eq!(served.value, Status(400));
    assert_eq!(served.attempts, 1);
    assert_eq!(manager.stats().providers["llm"].cache_entries, 0);
}

#[test]
fn type_errors_name_the_field() {
    let cases = [
        (
            "[defaults.circuit_breaker]\nfailure_threshold = -1\n",
            "defaults.circuit_breaker.failure_threshold: invalid value: integer `-1`, expected u32",
        ),
        (
            "[providers.openai.circuit_breaker]\nfailure_rate = { window_size = 10 }\n",
            "providers.openai.circuit_breaker.failure_rate: missing field `minimum_calls`",
        ),
    ];
    for (toml, expected) in cases {
        let error = Config::from_toml_str(toml).expect_err(toml).to_string();
        assert_eq!(error, format!("invalid configuration: {expected}"));
    }
}

#[tokio::test(start_paused = true)]
async fn invalid_provider_names_rejected() {
    let manager = manager("");
    for name in [
        String::new(),
        "x".repeat(resilience::manager::MAX_PROVIDER_NAME_LEN + 1),
    ] {
        let error = manager
            .execute(&name, |_| async { Ok::<_, &str>(()) })
            .await
            .expect_err("invalid name");
        assert_eq!(error.kind(), CallErrorKind::InvalidProviderName);
    }
    assert!(manager.stats().providers.is_empty());
}

#[test]
fn set_provider_config_checks_alternates() {
    let manager = manager("[providers.backup]\n");
    let mut config = ProviderConfig::default();
    config.fallback.alternate_providers = vec!["ghost".to_owned()];
    let error = manager
        .set_provider_config("primary", config.clone())
        .expect_err("unknown alternate");
    assert!(
        error
            .to_string()
            .contains("providers.primary.fallback.alternate_providers = \"ghost\""),
        "{error}"
    );

    config.fallback.alternate_providers = vec!["backup".to_owned()];
    assert!(manager.set_provider_config("primary", config).is_ok());
}

#[test]
fn huge_cache_ttl_rejected() {
    let error = Config::from_toml_str(
        "[defaults.fallback]\ncache_ttl = \"400days\"\nstale_ttl = \"401days\"\n",
    )
    .expect_err("TTL above the limit");
    assert!(
        error.to_string().contains("defaults.fallback.cache_ttl"),
        "{error}"
    );
}

#[tokio::test(start_paused = true)]
async fn error_message_counts_failed_attempts() {
    let manager = manager("[defaults.retry]\nmax_retries = 1\njitter = false\n");
    let error = manager
        .execute("llm", |_| async { Err::<(), _>("down") })
        .await
        .expect_err("fails");
    assert_eq!(
        error.to_string(),
        "call to provider llm failed (other) after 2 failed attempts on the providers tried: down"
    );
    manager.close();
    let error = manager
        .execute("llm", |_| async { Err::<(), _>("down") })
        .await
        .expect_err("closed");
    assert_eq!(
        error.to_string(),
        "call to provider llm rejected: the manager is closed"
    );
}
