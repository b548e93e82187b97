//! The fallback chain through the Manager, with paused time.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use resilience::{
    CallErrorKind, Classify, Config, DegradedResponse, FailureClass, Manager, NeutralReason,
    Outcome, Source,
};

#[derive(Debug, Clone, PartialEq)]
enum UpstreamError {
    Unavailable,
    BadRequest,
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct TestClassifier;

impl<T> Classify<T, UpstreamError> for TestClassifier {
    fn classify(&self, result: &Result<T, UpstreamError>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(UpstreamError::Unavailable) => Outcome::failure(FailureClass::Server),
            Err(UpstreamError::BadRequest) => Outcome::Neutral(NeutralReason::CallerError),
        }
    }
}

fn config(toml: &str) -> Config {
    Config::from_toml_str(toml).expect("test configuration is valid")
}

const NO_RETRY: &str = r#"
[defaults.retry]
max_retries = 0
[defaults.circuit_breaker]
failure_threshold = 100
"#;

fn manager(toml: &str) -> Manager<String, TestClassifier> {
    Manager::builder(config(toml))
        .classifier(TestClassifier)
        .build()
        .expect("manager builds")
}

async fn succeed(manager: &Manager<String, TestClassifier>, key: &str, value: &str) {
    let value = value.to_owned();
    let served = manager
        .execute_with_fallback("primary", Some(key), move |_| {
            let value = value.clone();
            async move { Ok::<_, UpstreamError>(value) }
        })
        .await
        .expect("primary succeeds");
    assert_eq!(served.source, Source::Primary);
}

async fn fail(
    manager: &Manager<String, TestClassifier>,
    key: &str,
    error: UpstreamError,
) -> Result<resilience::Served<String>, resilience::CallError<UpstreamError>> {
    manager
        .execute_with_fallback("primary", Some(key), move |attempt| {
            let error = error.clone();
            let provider = attempt.provider().to_owned();
            async move {
                if provider == "primary" {
                    Err(error)
                } else {
                    Ok(format!("from {provider}"))
                }
            }
        })
        .await
}

#[tokio::test(start_paused = true)]
async fn cache_serves_fresh_response() {
    let manager = manager(&format!("{NO_RETRY}\n[providers.primary]\n"));
    succeed(&manager, "k", "cached answer").await;
    tokio::time::advance(Duration::from_secs(60)).await;

    let served = fail(&manager, "k", UpstreamError::Unavailable)
        .await
        .expect("cache serves");
    assert_eq!(served.value, "cached answer");
    assert_eq!(
        served.source,
        Source::Cache {
            age: Duration::from_secs(60)
        }
    );
    assert_eq!(
        manager.stats().providers["primary"]
            .requests
            .fallbacks
            .cache,
        1
    );
}

#[tokio::test(start_paused = true)]
async fn stale_serves_old_response_only_after_failure() {
    let manager = manager(&format!(
        "{NO_RETRY}\n[providers.primary.fallback]\nstrategies = [\"cache\", \"stale\", \"error\"]\ncache_ttl = \"1m\"\nstale_ttl = \"10m\"\n"
    ));
    succeed(&manager, "k", "old answer").await;
    tokio::time::advance(Duration::from_secs(5 * 60)).await;

    let served = fail(&manager, "k", UpstreamError::Unavailable)
        .await
        .expect("stale serves");
    assert_eq!(
        served.source,
        Source::Stale {
            age: Duration::from_secs(300)
        }
    );
    assert_eq!(served.value, "old answer");

    // A success replaces the stale entry with a fresh one.
    succeed(&manager, "k", "new answer").await;
    let served = fail(&manager, "k", UpstreamError::Unavailable)
        .await
        .expect("cache serves");
    assert_eq!(
        served.source,
        Source::Cache {
            age: Duration::ZERO
        }
    );
    assert_eq!(served.value, "new answer");
}

#[tokio::test(start_paused = true)]
async fn expired_entry_is_never_served() {
    let manager = manager(&format!(
        "{NO_RETRY}\n[providers.primary.fallback]\ncache_ttl = \"1m\"\nstale_ttl = \"10m\"\n"
    ));
    succeed(&manager, "k", "answer").await;
    assert_eq!(manager.stats().providers["primary"].cache_entries, 1);
    tokio::time::advance(Duration::from_secs(10 * 60)).await;

    let error = fail(&manager, "k", UpstreamError::Unavailable)
        .await
        .expect_err("nothing to serve");
    assert_eq!(error.kind(), CallErrorKind::Failed(FailureClass::Server));
    assert_eq!(manager.stats().providers["primary"].cache_entries, 0);
    assert_eq!(
        manager.stats().providers["primary"]
            .requests
            .fallbacks
            .error,
        1
    );
}

#[tokio::test(start_paused = true)]
async fn stale_disabled_serves_nothing_old() {
    let manager = manager(&format!(
        "{NO_RETRY}\n[providers.primary.fallback]\ncache_ttl = \"1m\"\nenable_stale = false\nstrategies = [\"cache\", \"stale\"]\n"
    ));
    succeed(&manager, "k", "answer").await;
    tokio::time::advance(Duration::from_secs(2 * 60)).await;

    let error = fail(&manager, "k", UpstreamError::Unavailable)
        .await
        .expect_err("too old");
    assert_eq!(error.kind(), CallErrorKind::Failed(FailureClass::Server));
    let fallbacks = &manager.stats().providers["primary"].requests.fallbacks;
    assert_eq!(fallbacks.found_nothing, 1);
    assert_eq!(fallbacks.served(), 0);
}

#[tokio::test(start_paused = true)]
async fn cache_is_bounded() {
    let manager = manager(&format!(
        "{NO_RETRY}\n[providers.primary.fallback]\ncache_max_entries = 10\n"
    ));
    for i in 0..200 {
        succeed(&manager, &format!("key-{i}"), "answer").await;
    }
    let entries = manager.stats().providers["primary"].cache_entries;
    assert!(
        entries <= 10,
        "cache holds {entries} entries, more than its bound of 10"
    );
}

#[tokio::test(start_paused = true)]
async fn alternate_provider_serves() {
    let manager = manager(&format!(
        "{NO_RETRY}\n[providers.primary.fallback]\nalternate_providers = [\"backup\"]\n[providers.backup]\n"
    ));
    let served = fail(&manager, "k", UpstreamError::Unavailable)
        .await
        .expect("backup serves");
    assert_eq!(served.value, "from backup");
    assert_eq!(
        served.source,
        Source::Alternate {
            provider: Arc::from("backup")
        }
    );
    assert_eq!(&*served.provider, "backup");
    assert_eq!(served.attempts, 2);
    assert_eq!(
        manager.stats().providers["primary"]
            .requests
            .fallbacks
            .provider,
        1
    );
}

#[tokio::test(start_paused = true)]
async fn alternate_with_open_circuit_is_skipped() {
    let manager = manager(
        r#"
[defaults.retry]
max_retries = 0
[defaults.circuit_breaker]
failure_threshold = 1
timeout = "30s"
[providers.primary.fallback]
alternate_providers = ["broken", "backup"]
[providers.broken]
[providers.backup]
"#,
    );
    // Open the circuit of "broken".
    let _ = manager
        .execute("broken", |_| async {
            Err::<String, _>(UpstreamError::Unavailable)
        })
        .await;

    let calls = Arc::new(AtomicU32::new(0));
    let seen = calls.clone();
    let served = manager
        .execute_with_fallback("primary", Some("k"), move |attempt| {
            let provider = attempt.provider().to_owned();
            let seen = seen.clone();
            async move {
                seen.fetch_add(1, Ordering::Relaxed);
                match provider.as_str() {
                    "backup" => Ok(provider),
                    _ => Err(UpstreamError::Unavailable),
                }
            }
        })
        .await
        .expect("backup serves");
    assert_eq!(served.value, "backup");
    // primary and backup ran; broken was rejected by its own circuit without a call.
    assert_eq!(calls.load(Ordering::Relaxed), 2);
    // The attempt that the open circuit rejected is not counted as one.
    assert_eq!(served.attempts, 2);
}

#[tokio::test(start_paused = true)]
async fn error_reports_time_until_circuit_closes() {
    let manager = manager(
        r#"
[defaults.retry]
max_retries = 0
[defaults.circuit_breaker]
failure_threshold = 1
timeout = "30s"
[providers.primary.fallback]
alternate_providers = ["backup"]
[providers.backup]
"#,
    );
    for provider in ["primary", "backup"] {
        let _ = manager
            .execute(provider, |_| async {
                Err::<String, _>(UpstreamError::Unavailable)
            })
            .await;
    }
    tokio::time::advance(Duration::from_secs(10)).await;

    let error = fail(&manager, "k", UpstreamError::Unavailable)
        .await
        .expect_err("all open");
    assert_eq!(error.kind(), CallErrorKind::CircuitOpen);
    assert_eq!(error.retry_after(), Some(Duration::from_secs(20)));
    let providers: Vec<&str> = error.attempts().iter().map(|a| &*a.provider).collect();
    assert_eq!(providers, ["primary", "backup"]);
    assert!(error.source_error().is_none());
}

#[tokio::test(start_paused = true)]
async fn degraded_response_is_built_from_failure() {
    let config = config(&format!(
        "{NO_RETRY}\n[providers.primary.fallback]\nstrategies = [\"cache\", \"degraded\"]\n"
    ));
    let manager: Manager<String, TestClassifier> = Manager::builder(config)
        .classifier(TestClassifier)
        .degraded_response(DegradedResponse::from_fn(|failure| {
            format!("{} is down ({})", failure.provider, failure.kind)
        }))
        .build()
        .expect("manager builds");

    let served = fail(&manager, "k", UpstreamError::Unavailable)
        .await
        .expect("degraded serves");
    assert_eq!(served.source, Source::Degraded);
    assert_eq!(served.value, "primary is down (failed (server))");
}

#[test]
fn degraded_strategy_needs_a_response() {
    let error = Manager::<String>::new(config(
        "[providers.primary.fallback]\nstrategies = [\"degraded\"]\n",
    ))
    .expect_err("no degraded response");
    let message = error.to_string();
    assert!(
        message.contains("providers.primary.fallback.strategies"),
        "{message}"
    );
}

#[tokio::test(start_paused = true)]
async fn strategies_run_in_order() {
    let config = config(
        r#"
[defaults.retry]
max_retries = 0
[providers.primary.fallback]
strategies = ["provider", "stale", "degraded", "error"]
alternate_providers = ["backup"]
cache_ttl = "1m"
[providers.backup.circuit_breaker]
failure_threshold = 1
"#,
    );
    let manager: Manager<String, TestClassifier> = Manager::builder(config)
        .classifier(TestClassifier)
        .degraded_response(DegradedResponse::value("degraded".to_owned()))
        .build()
        .expect("manager builds");
    succeed(&manager, "old", "stale answer").await;
    tokio::time::advance(Duration::from_secs(120)).await;

    // The alternate comes first and answers.
    let served = fail(&manager, "old", UpstreamError::Unavailable)
        .await
        .expect("served");
    assert_eq!(served.source.as_str(), "provider");

    // With the alternate failing, the stale entry is next, then the degraded response.
    let everything_fails = |key: &'static str| {
        manager.execute_with_fallback("primary", Some(key), |_| async {
            Err::<String, _>(UpstreamError::Unavailable)
        })
    };
    let served = everything_fails("old").await.expect("stale serves");
    assert_eq!(
        served.source,
        Source::Stale {
            age: Duration::from_secs(120)
        }
    );
    let served = everything_fails("never-cached")
        .await
        .expect("degraded serves");
    assert_eq!(served.source, Source::Degraded);

    let fallbacks = &manager.stats().providers["primary"].requests.fallbacks;
    assert_eq!(
        (fallbacks.provider, fallbacks.stale, fallbacks.degraded),
        (1, 1, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn neutral_outcome_is_never_hidden() {
    let manager = manager(&format!(
        "{NO_RETRY}\n[providers.primary.fallback]\nalternate_providers = [\"backup\"]\n[providers.backup]\n"
    ));
    succeed(&manager, "k", "cached answer").await;

    let error = fail(&manager, "k", UpstreamError::BadRequest)
        .await
        .expect_err("no fallback");
    assert_eq!(
        error.kind(),
        CallErrorKind::Neutral(NeutralReason::CallerError)
    );
    assert_eq!(error.into_source(), Some(UpstreamError::BadRequest));
    let requests = &manager.stats().providers["primary"].requests;
    assert_eq!(requests.failed, 1);
    assert_eq!(requests.fallbacks.served(), 0);
}

#[tokio::test(start_paused = true)]
async fn without_cache_key_nothing_is_cached() {
    let manager = manager(&format!("{NO_RETRY}\n[providers.primary]\n"));
    manager
        .execute_with_fallback("primary", None, |_| async {
            Ok::<_, UpstreamError>("x".to_owned())
        })
        .await
        .expect("primary succeeds");
    assert_eq!(manager.stats().providers["primary"].cache_entries, 0);
}

#[tokio::test(start_paused = true)]
async fn fallback_switch_off_returns_error() {
    let manager = manager(&format!(
        "enable_fallback = false\n{NO_RETRY}\n[providers.primary]\n"
    ));
    succeed(&manager, "k", "cached answer").await;
    let error = fail(&manager, "k", UpstreamError::Unavailable)
        .await
        .expect_err("no fallback");
    assert_eq!(error.kind(), CallErrorKind::Failed(FailureClass::Server));
}
