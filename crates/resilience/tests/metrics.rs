//! The Manager's Prometheus metrics, scraped as OpenMetrics text after scripted scenarios.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use resilience::metrics::prometheus_client::encoding::text::encode;
use resilience::metrics::prometheus_client::registry::Registry;
use resilience::{
    CallErrorKind, Classify, Config, FailureClass, Manager, NeutralReason, Outcome, Source,
};
use tokio::sync::Notify;

#[derive(Debug, Clone, PartialEq)]
enum UpstreamError {
    Unavailable,
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
        }
    }
}

type TestManager = Manager<String, TestClassifier>;

fn manager(toml: &str, registry: &mut Registry) -> TestManager {
    let config = Config::from_toml_str(toml).expect("test configuration is valid");
    Manager::builder(config)
        .classifier(TestClassifier)
        .metrics(registry)
        .build()
        .expect("manager builds")
}

fn scrape(registry: &Registry) -> String {
    let mut text = String::new();
    encode(&mut text, registry).expect("encoding into a String succeeds");
    text
}

/// Returns every sample of an OpenMetrics text, keyed by its name and labels as written.
fn samples(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

#[track_caller]
fn assert_sample(samples: &BTreeMap<String, String>, key: &str, expected: &str) {
    match samples.get(key) {
        Some(value) => assert_eq!(value, expected, "sample {key}"),
        None => panic!("no sample {key}; the scrape has: {:#?}", samples.keys()),
    }
}

const OUTCOMES: [&str; 13] = [
    "success",
    "transport",
    "timeout",
    "server",
    "overloaded",
    "rate_limited",
    "quota_exhausted",
    "credentials",
    "not_found",
    "rejected",
    "other",
    "caller_error",
    "cancelled",
];

#[track_caller]
fn assert_outcomes(samples: &BTreeMap<String, String>, provider: &str, expected: &[(&str, u64)]) {
    for outcome in OUTCOMES {
        let count = expected
            .iter()
            .find(|(label, _)| *label == outcome)
            .map_or(0, |(_, count)| *count);
        let key = format!("calls_total{{provider=\"{provider}\",outcome=\"{outcome}\"}}");
        assert_sample(samples, &key, &count.to_string());
    }
}

const FLAKY: &str = r#"
[providers.flaky.circuit_breaker]
failure_threshold = 3
success_threshold = 1
timeout = "30s"

[providers.flaky.retry]
max_retries = 1
initial_backoff = "100ms"
jitter = false

[providers.flaky.fallback]
strategies = ["cache"]
"#;

/// Sends one request to `flaky`: each attempt takes 100 ms and fails while `failing` is set.
async fn call_flaky(
    manager: &TestManager,
    failing: &AtomicBool,
    cache_key: Option<&str>,
) -> Result<resilience::Served<String>, resilience::CallError<UpstreamError>> {
    manager
        .execute_with_fallback("flaky", cache_key, |_| async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if failing.load(Ordering::SeqCst) {
                Err(UpstreamError::Unavailable)
            } else {
                Ok("fresh".to_string())
            }
        })
        .await
}

#[tokio::test(start_paused = true)]
async fn scripted_scenario_exact_values() {
    let mut registry = Registry::default();
    let manager = manager(FLAKY, &mut registry);
    let failing = AtomicBool::new(false);

    // One success fills the cache.
    let served = call_flaky(&manager, &failing, Some("k")).await.unwrap();
    assert_eq!(served.source, Source::Primary);

    // Two failures and a retry each: the third failure opens the circuit, and its retry is
    // rejected by the open circuit. No cache key, so the fallback finds nothing.
    failing.store(true, Ordering::SeqCst);
    for _ in 0..2 {
        let error = call_flaky(&manager, &failing, None).await.unwrap_err();
        assert!(matches!(
            error.kind(),
            CallErrorKind::Failed(FailureClass::Server) | CallErrorKind::CircuitOpen
        ));
    }

    // The open circuit rejects the next request, which the cache serves.
    let served = call_flaky(&manager, &failing, Some("k")).await.unwrap();
    assert!(matches!(served.source, Source::Cache { .. }));

    let text = scrape(&registry);
    let scraped = samples(&text);
    assert_sample(&scraped, "circuit_breaker_state{provider=\"flaky\"}", "2");
    for (from, to, count) in [
        ("closed", "open", "1"),
        ("open", "half_open", "0"),
        ("open", "closed", "0"),
        ("half_open", "closed", "0"),
        ("half_open", "open", "0"),
    ] {
        let key = format!(
            "circuit_breaker_transitions_total{{provider=\"flaky\",from=\"{from}\",to=\"{to}\"}}"
        );
        assert_sample(&scraped, &key, count);
    }
    assert!(!text.contains("from=\"closed\",to=\"half_open\""));
    assert_sample(
        &scraped,
        "circuit_breaker_rejections_total{provider=\"flaky\"}",
        "2",
    );

    assert_sample(
        &scraped,
        "bulkhead_active_requests{provider=\"flaky\"}",
        "0",
    );
    assert_sample(
        &scraped,
        "bulkhead_queued_requests{provider=\"flaky\"}",
        "0",
    );
    assert_sample(
        &scraped,
        "bulkhead_rejections_total{provider=\"flaky\",reason=\"full\"}",
        "0",
    );
    assert_sample(
        &scraped,
        "bulkhead_rejections_total{provider=\"flaky\",reason=\"queue_timeout\"}",
        "0",
    );
    assert_sample(
        &scraped,
        "bulkhead_queue_wait_seconds_count{provider=\"flaky\"}",
        "4",
    );
    assert_sample(
        &scraped,
        "bulkhead_queue_wait_seconds_sum{provider=\"flaky\"}",
        "0.0",
    );

    assert_sample(&scraped, "retry_total{provider=\"flaky\"}", "2");
    for (strategy, count) in [
        ("cache", "1"),
        ("stale", "0"),
        ("provider", "0"),
        ("degraded", "0"),
        ("error", "0"),
    ] {
        let key = format!("fallback_total{{provider=\"flaky\",strategy=\"{strategy}\"}}");
        assert_sample(&scraped, &key, count);
    }
    assert_sample(
        &scraped,
        "fallback_found_nothing_total{provider=\"flaky\"}",
        "2",
    );
    for (result, count) in [
        ("succeeded", "1"),
        ("failed", "2"),
        ("cancelled", "0"),
        ("fallback", "1"),
    ] {
        let key = format!("requests_total{{provider=\"flaky\",result=\"{result}\"}}");
        assert_sample(&scraped, &key, count);
    }

    // Four calls ran for 100 ms each; the two rejected ones never ran.
    assert_outcomes(
        &scraped,
        "flaky",
        &[("success", 1), ("server", 3), ("rejected", 2)],
    );
    assert_sample(
        &scraped,
        "call_duration_seconds_count{provider=\"flaky\"}",
        "4",
    );
    assert_sample(
        &scraped,
        "call_duration_seconds_sum{provider=\"flaky\"}",
        "0.4",
    );
    assert_sample(
        &scraped,
        "call_duration_seconds_bucket{le=\"0.05\",provider=\"flaky\"}",
        "0",
    );
    assert_sample(
        &scraped,
        "call_duration_seconds_bucket{le=\"0.1\",provider=\"flaky\"}",
        "4",
    );
    assert_sample(
        &scraped,
        "call_duration_seconds_bucket{le=\"+Inf\",provider=\"flaky\"}",
        "4",
    );

    // After the open period, one successful probe closes the circuit.
    tokio::time::advance(Duration::from_secs(30)).await;
    failing.store(false, Ordering::SeqCst);
    let served = call_flaky(&manager, &failing, None).await.unwrap();
    assert_eq!(served.source, Source::Primary);

    let scraped = samples(&scrape(&registry));
    assert_sample(&scraped, "circuit_breaker_state{provider=\"flaky\"}", "0");
    for (from, to, count) in [
        ("closed", "open", "1"),
        ("open", "half_open", "1"),
        ("half_open", "closed", "1"),
        ("half_open", "open", "0"),
    ] {
        let key = format!(
            "circuit_breaker_transitions_total{{provider=\"flaky\",from=\"{from}\",to=\"{to}\"}}"
        );
        assert_sample(&scraped, &key, count);
    }
    assert_outcomes(
        &scraped,
        "flaky",
        &[("success", 2), ("server", 3), ("rejected", 2)],
    );
    assert_sample(
        &scraped,
        "requests_total{provider=\"flaky\",result=\"succeeded\"}",
        "2",
    );
}

#[tokio::test(start_paused = true)]
async fn counter_sample_names_end_in_total() {
    let mut registry = Registry::default();
    let manager = manager(FLAKY, &mut registry);
    let failing = AtomicBool::new(true);
    let _ = call_flaky(&manager, &failing, None).await;

    let text = scrape(&registry);
    assert!(text.contains("# TYPE retry counter\n"));
    assert!(text.contains("\nretry_total{provider=\"flaky\"} 1\n"));
    assert!(text.contains("# TYPE fallback counter\n"));
    assert!(text.contains("\nfallback_total{provider=\"flaky\",strategy=\"cache\"} 0\n"));
    assert!(text.contains("# TYPE circuit_breaker_state gauge\n"));
    assert!(text.contains("# TYPE bulkhead_active_requests gauge\n"));
    assert!(text.contains("# TYPE call_duration_seconds histogram\n"));
    assert!(!text.contains("_total_total"));
    assert!(text.ends_with("# EOF\n"));
}

#[tokio::test(start_paused = true)]
async fn bulkhead_rejections_by_reason() {
    const TOML: &str = r#"
        [providers.narrow.bulkhead]
        max_concurrent = 1
        max_queue = 1
        queue_timeout = "1s"

        [providers.narrow.retry]
        max_retries = 0
    "#;
    let mut registry = Registry::default();
    let manager = manager(TOML, &mut registry);
    let release = Arc::new(Notify::new());

    let holder = tokio::spawn({
        let manager = manager.clone();
        let release = release.clone();
        async move {
            manager
                .execute("narrow", |_| {
                    let release = release.clone();
                    async move {
                        release.notified().await;
                        Ok::<_, UpstreamError>("held".to_string())
                    }
                })
                .await
        }
    });
    wait_until(&manager, "narrow", |active, _| active == 1).await;

    let waiter = tokio::spawn({
        let manager = manager.clone();
        async move {
            manager
                .execute("narrow", |_| async {
                    Ok::<_, UpstreamError>("queued".to_string())
                })
                .await
        }
    });
    wait_until(&manager, "narrow", |_, queued| queued == 1).await;

    let full = manager
        .execute("narrow", |_| async {
            Ok::<_, UpstreamError>("rejected".to_string())
        })
        .await
        .unwrap_err();
    assert_eq!(full.kind(), CallErrorKind::BulkheadFull);

    let scraped = samples(&scrape(&registry));
    assert_sample(
        &scraped,
        "bulkhead_active_requests{provider=\"narrow\"}",
        "1",
    );
    assert_sample(
        &scraped,
        "bulkhead_queued_requests{provider=\"narrow\"}",
        "1",
    );

    tokio::time::advance(Duration::from_secs(1)).await;
    let timed_out = waiter.await.unwrap().unwrap_err();
    assert_eq!(timed_out.kind(), CallErrorKind::QueueTimeout);

    release.notify_one();
    holder.await.unwrap().unwrap();

    let scraped = samples(&scrape(&registry));
    assert_sample(
        &scraped,
        "bulkhead_active_requests{provider=\"narrow\"}",
        "0",
    );
    assert_sample(
        &scraped,
        "bulkhead_queued_requests{provider=\"narrow\"}",
        "0",
    );
    assert_sample(
        &scraped,
        "bulkhead_rejections_total{provider=\"narrow\",reason=\"full\"}",
        "1",
    );
    assert_sample(
        &scraped,
        "bulkhead_rejections_total{provider=\"narrow\",reason=\"queue_timeout\"}",
        "1",
    );

    // The holder waited 0 s, the waiter 1 s until its timeout.
    assert_sample(
        &scraped,
        "bulkhead_queue_wait_seconds_count{provider=\"narrow\"}",
        "2",
    );
    assert_sample(
        &scraped,
        "bulkhead_queue_wait_seconds_sum{provider=\"narrow\"}",
        "1.0",
    );
    assert_sample(
        &scraped,
        "bulkhead_queue_wait_seconds_bucket{le=\"0.001\",provider=\"narrow\"}",
        "1",
    );
    assert_sample(
        &scraped,
        "bulkhead_queue_wait_seconds_bucket{le=\"0.5\",provider=\"narrow\"}",
        "1",
    );
    assert_sample(
        &scraped,
        "bulkhead_queue_wait_seconds_bucket{le=\"1.0\",provider=\"narrow\"}",
        "2",
    );
    assert_outcomes(&scraped, "narrow", &[("success", 1), ("rejected", 2)]);
    assert_sample(
        &scraped,
        "circuit_breaker_rejections_total{provider=\"narrow\"}",
        "0",
    );
}

/// Yields until `provider`'s bulkhead satisfies `done(active, queued)`.
async fn wait_until(manager: &TestManager, provider: &str, done: impl Fn(usize, usize) -> bool) {
    loop {
        let stats = manager.stats();
        let bulkhead = stats.providers[provider]
            .bulkhead
            .clone()
            .expect("the bulkhead is on");
        if done(bulkhead.active, bulkhead.queued) {
            return;
        }
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gauges_zero_after_cancellations() {
    const TOML: &str = r#"
        [providers.busy.bulkhead]
        max_concurrent = 8
        max_queue = 64
        queue_timeout = "1h"

        [providers.busy.retry]
        max_retries = 0
    "#;
    const ROUNDS: usize = 20;
    const TASKS: usize = 8 + 64;
    let mut registry = Registry::default();
    let manager = manager(TOML, &mut registry);

    let mut ended_before = 0;
    let mut slots_before = 0;
    for round in 0..ROUNDS {
        // Every third task keeps its slot after returning, as a stream does.
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let manager = manager.clone();
                tokio::spawn(async move {
                    if task % 3 == 0 {
                        let (_value, _handle) = manager
                            .execute("busy", |attempt| {
                                let handle = attempt.defer();
                                async move { Ok::<_, UpstreamError>(("started", handle)) }
                            })
                            .await
                            .expect("a free slot or a queue place");
                        std::future::pending::<()>().await;
                    } else {
                        let _ = manager
                            .execute("busy", |_| {
                                std::future::pending::<Result<String, UpstreamError>>()
                            })
                            .await;
                    }
                })
            })
            .collect();

        // Odd rounds wait until every slot and queue place is taken; even rounds cancel at once,
        // wherever each task is, some before they start.
        let full = round % 2 == 1;
        if full {
            tokio::time::timeout(
                Duration::from_secs(10),
                wait_until(&manager, "busy", |active, queued| {
                    active == 8 && queued == 64
                }),
            )
            .await
            .expect("the tasks fill the bulkhead");
        }
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }

        let scraped = samples(&scrape(&registry));
        assert_sample(&scraped, "bulkhead_active_requests{provider=\"busy\"}", "0");
        assert_sample(&scraped, "bulkhead_queued_requests{provider=\"busy\"}", "0");
        assert_sample(&scraped, "circuit_breaker_state{provider=\"busy\"}", "0");

        let count = |key: String| -> u64 {
            match scraped.get(&key) {
                Some(value) => value.parse().expect("a counter is an integer"),
                None => panic!("no sample {key}"),
            }
        };
        let requests = |result: &str| {
            count(format!(
                "requests_total{{provider=\"busy\",result=\"{result}\"}}"
            ))
        };
        let calls = |outcome: &str| {
            count(format!(
                "calls_total{{provider=\"busy\",outcome=\"{outcome}\"}}"
            ))
        };

        // Each request that started made one attempt, which either returned (a deferred stream)
        // or was cancelled, and the request ended the same way.
        assert_eq!(requests("succeeded"), calls("success"), "round {round}");
        assert_eq!(requests("cancelled"), calls("cancelled"), "round {round}");
        assert_eq!(requests("failed"), 0);
        assert_eq!(requests("fallback"), 0);
        assert_eq!(calls("rejected"), 0);
        let ended = requests("succeeded") + requests("cancelled");
        if full {
            assert_eq!(ended - ended_before, TASKS as u64, "round {round}");
        } else {
            assert!(ended - ended_before <= TASKS as u64, "round {round}");
        }
        ended_before = ended;

        // Only the calls that returned are timed.
        assert_eq!(
            count("call_duration_seconds_count{provider=\"busy\"}".to_string()),
            calls("success")
        );
        let slots = count("bulkhead_queue_wait_seconds_count{provider=\"busy\"}".to_string());
        if full {
            assert!(slots - slots_before >= 8, "round {round}");
        }
        slots_before = slots;
    }

    // Every slot is free again: eight calls run at once.
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let manager = manager.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                manager
                    .execute("busy", |_| {
                        let barrier = barrier.clone();
                        async move {
                            barrier.wait().await;
                            Ok::<_, UpstreamError>(())
                        }
                    })
                    .await
            })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn disabled_patterns_have_no_series() {
    const TOML: &str = r#"
        enable_bulkhead = false
        enable_retry = false

        [providers.plain]
    "#;
    let mut registry = Registry::default();
    let manager = manager(TOML, &mut registry);
    manager
        .execute("plain", |_| async { Ok::<_, UpstreamError>(()) })
        .await
        .unwrap();

    let text = scrape(&registry);
    let scraped = samples(&text);
    assert_sample(&scraped, "circuit_breaker_state{provider=\"plain\"}", "0");
    assert_outcomes(&scraped, "plain", &[("success", 1)]);
    assert!(!text.contains("bulkhead_active_requests{"));
    assert!(!text.contains("bulkhead_queue_wait_seconds_count{"));
    assert!(!text.contains("retry_total{"));
}

#[tokio::test]
async fn providers_created_on_first_use_are_scraped() {
    let mut registry = Registry::default();
    let manager = manager("", &mut registry);
    assert!(!scrape(&registry).contains("provider=\"later\""));

    manager
        .execute("later", |_| async { Ok::<_, UpstreamError>(()) })
        .await
        .unwrap();

    let scraped = samples(&scrape(&registry));
    assert_outcomes(&scraped, "later", &[("success", 1)]);
    assert_sample(
        &scraped,
        "requests_total{provider=\"later\",result=\"succeeded\"}",
        "1",
    );
}

#[tokio::test]
async fn replaced_provider_restarts_at_zero() {
    let mut registry = Registry::default();
    let manager = manager("[providers.swapped]", &mut registry);
    manager
        .execute("swapped", |_| async { Ok::<_, UpstreamError>(()) })
        .await
        .unwrap();

    manager
        .set_provider_config("swapped", resilience::ProviderConfig::default())
        .unwrap();

    let text = scrape(&registry);
    let scraped = samples(&text);
    assert_outcomes(&scraped, "swapped", &[]);
    assert_eq!(text.matches("circuit_breaker_state{").count(), 1);
}

#[tokio::test]
async fn dropped_manager_leaves_no_series() {
    let mut registry = Registry::default();
    let manager = manager("[providers.gone]", &mut registry);
    assert!(scrape(&registry).contains("provider=\"gone\""));

    drop(manager);

    assert!(!scrape(&registry).contains("provider=\"gone\""));
}

#[tokio::test]
async fn neutral_outcomes_are_labelled() {
    let mut registry = Registry::default();
    let config = Config::from_toml_str("[providers.neutral]").unwrap();
    let classify = |result: &Result<(), bool>| match result {
        Ok(()) => Outcome::Success,
        Err(true) => Outcome::Neutral(NeutralReason::CallerError),
        Err(false) => Outcome::Neutral(NeutralReason::Cancelled),
    };
    let manager: Manager<String, _> = Manager::builder(config)
        .classifier(classify)
        .metrics(&mut registry)
        .build()
        .unwrap();
    for caller_error in [true, false, true] {
        let result = manager
            .execute("neutral", |_| async move { Err::<(), _>(caller_error) })
            .await;
        assert!(result.is_err());
    }

    let scraped = samples(&scrape(&registry));
    assert_outcomes(
        &scraped,
        "neutral",
        &[("caller_error", 2), ("cancelled", 1)],
    );
    assert_sample(&scraped, "retry_total{provider=\"neutral\"}", "0");
}

#[tokio::test(start_paused = true)]
async fn reset_keeps_transitions_and_calls() {
    let mut registry = Registry::default();
    let manager = manager(FLAKY, &mut registry);
    let failing = AtomicBool::new(true);
    for _ in 0..2 {
        let _ = call_flaky(&manager, &failing, None).await;
    }
    assert_sample(
        &samples(&scrape(&registry)),
        "circuit_breaker_state{provider=\"flaky\"}",
        "2",
    );

    assert!(manager.reset_provider("flaky"));

    let scraped = samples(&scrape(&registry));
    assert_sample(&scraped, "circuit_breaker_state{provider=\"flaky\"}", "0");
    assert_sample(
        &scraped,
        "circuit_breaker_rejections_total{provider=\"flaky\"}",
        "0",
    );
    assert_sample(&scraped, "retry_total{provider=\"flaky\"}", "0");
    assert_sample(
        &scraped,
        "requests_total{provider=\"flaky\",result=\"failed\"}",
        "0",
    );
    for (from, to, count) in [("closed", "open", "1"), ("open", "closed", "1")] {
        let key = format!(
            "circuit_breaker_transitions_total{{provider=\"flaky\",from=\"{from}\",to=\"{to}\"}}"
        );
        assert_sample(&scraped, &key, count);
    }
    assert_outcomes(&scraped, "flaky", &[("server", 3), ("rejected", 1)]);
    assert_sample(
        &scraped,
        "call_duration_seconds_count{provider=\"flaky\"}",
        "3",
    );
}

/// A tracing subscriber that keeps every event's level, message and fields.
#[derive(Clone, Default)]
struct EventLog {
    events: Arc<std::sync::Mutex<Vec<LoggedEvent>>>,
}

#[derive(Debug, Clone)]
struct LoggedEvent {
    level: tracing::Level,
    fields: BTreeMap<String, String>,
}

impl EventLog {
    fn with_message(&self, message: &str) -> Vec<LoggedEvent> {
        let events = self.events.lock().unwrap();
        events
            .iter()
            .filter(|event| event.fields.get("message").map(String::as_str) == Some(message))
            .cloned()
            .collect()
    }
}

struct FieldVisitor<'a>(&'a mut BTreeMap<String, String>);

impl tracing::field::Visit for FieldVisitor<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl tracing::Subscriber for EventLog {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = BTreeMap::new();
        event.record(&mut FieldVisitor(&mut fields));
        self.events.lock().unwrap().push(LoggedEvent {
            level: *event.metadata().level(),
            fields,
        });
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

// The tracing events of an opening circuit and of its rejections, next to the metrics that
// count the same rejections.
#[tokio::test(start_paused = true)]
async fn circuit_rejection_events_are_rate_limited() {
    const TOML: &str = r#"
        [providers.down.circuit_breaker]
        failure_threshold = 1
        timeout = "60s"

        [providers.down.retry]
        max_retries = 0
    "#;
    let log = EventLog::default();
    let _default = tracing::subscriber::set_default(log.clone());
    let mut registry = Registry::default();
    let manager = manager(TOML, &mut registry);
    let call = || {
        manager.execute("down", |_| async {
            Err::<(), _>(UpstreamError::Unavailable)
        })
    };

    let _ = call().await;
    let opened = log.with_message("circuit opened");
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0].level, tracing::Level::WARN);
    assert_eq!(opened[0].fields["provider"], "down");
    assert_eq!(opened[0].fields["reason"], "1 consecutive failures");

    // Ten events a second are logged; the rest are counted.
    for _ in 0..15 {
        assert_eq!(call().await.unwrap_err().kind(), CallErrorKind::CircuitOpen);
    }
    let rejected = log.with_message("circuit breaker rejected a call");
    assert_eq!(rejected.len(), 10);
    assert!(rejected
        .iter()
        .all(|event| event.level == tracing::Level::DEBUG));
    assert_eq!(rejected[0].fields["provider"], "down");
    assert_eq!(rejected[0].fields["remaining_ms"], "60000");

    tokio::time::advance(Duration::from_secs(1)).await;
    let _ = call().await;
    let rejected = log.with_message("circuit breaker rejected a call");
    assert_eq!(rejected.len(), 11);
    assert_eq!(rejected[10].fields["suppressed"], "5");
    assert_eq!(rejected[10].fields["remaining_ms"], "59000");

    let scraped = samples(&scrape(&registry));
    assert_sample(
        &scraped,
        "circuit_breaker_rejections_total{provider=\"down\"}",
        "16",
    );
}
