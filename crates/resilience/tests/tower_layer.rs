//! The tower layers: through the axum example on 127.0.0.1, and directly on tower services.

#[allow(dead_code)]
#[path = "../examples/axum_layer.rs"]
mod example;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::FutureExt;
use resilience::tower::{FallbackLayer, NoClone, ResilienceLayer};
use resilience::{CallErrorKind, CircuitState, Config, FailureClass, Manager, Source};
use tower::{service_fn, Layer, Service, ServiceExt};

fn manager(toml: &str) -> Manager<()> {
    Manager::new(Config::from_toml_str(toml).expect("valid test configuration"))
        .expect("valid test configuration")
}

const NO_BACKOFF: &str = r#"
[defaults.retry]
max_retries = 2
initial_backoff = "0s"
jitter = false
"#;

// ----- the axum example, served on 127.0.0.1 -----

struct Demo {
    manager: Manager<()>,
    flaky: example::Flaky,
    url: String,
    server: tokio::task::JoinHandle<()>,
}

impl Demo {
    async fn start() -> Demo {
        let manager: Manager<()> = Manager::new(example::config()).expect("valid configuration");
        let flaky = example::Flaky::default();
        let (address, server) = example::serve(example::app(manager.clone(), flaky.clone())).await;
        Demo {
            manager,
            flaky,
            url: format!("http://{address}/quote"),
            server,
        }
    }

    fn circuit_state(&self) -> CircuitState {
        self.manager.stats().providers[example::PROVIDER]
            .circuit_breaker
            .as_ref()
            .expect("the circuit breaker is enabled")
            .state
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.server.abort();
    }
}

#[tokio::test]
async fn axum_get_retried_until_success() {
    let demo = Demo::start().await;
    demo.flaky.fail_next(2);

    let response = reqwest::get(&demo.url).await.expect("the server answers");

    assert_eq!(response.status(), reqwest::StatusCode::OK);
    assert_eq!(demo.flaky.calls(), 3);
    let stats = &demo.manager.stats().providers[example::PROVIDER];
    assert_eq!(stats.requests.succeeded, 1);
    assert_eq!(stats.retry.as_ref().expect("retry is enabled").retries, 2);
}

#[tokio::test]
async fn axum_last_failure_passed_through() {
    let demo = Demo::start().await;
    demo.flaky.fail_next(3);

    let response = reqwest::get(&demo.url).await.expect("the server answers");

    assert_eq!(response.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(demo.flaky.calls(), 3);
    assert_eq!(
        response.text().await.expect("a body"),
        "upstream unavailable",
        "the handler's own response comes back after the last attempt"
    );
}

#[tokio::test]
async fn axum_open_circuit_rejects_without_call() {
    let demo = Demo::start().await;
    demo.flaky.fail_next(u32::MAX);
    reqwest::get(&demo.url).await.expect("the server answers");
    assert_eq!(demo.circuit_state(), CircuitState::Open);
    let calls_before = demo.flaky.calls();

    let response = reqwest::get(&demo.url).await.expect("the server answers");

    assert_eq!(response.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(demo.flaky.calls(), calls_before, "the handler did not run");
    let retry_after: u64 = response.headers()[reqwest::header::RETRY_AFTER]
        .to_str()
        .expect("ASCII header")
        .parse()
        .expect("seconds");
    assert!((1..=30).contains(&retry_after), "Retry-After {retry_after}");
    let body = response.text().await.expect("a body");
    assert!(body.contains("circuit open"), "body: {body}");
}

#[tokio::test]
async fn axum_post_with_body_sent_once() {
    let demo = Demo::start().await;
    demo.flaky.fail_next(1);

    let response = reqwest::Client::new()
        .post(&demo.url)
        .body("a body that the layer cannot copy")
        .send()
        .await
        .expect("the server answers");

    assert_eq!(response.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        demo.flaky.calls(),
        1,
        "a request with a body is not retried"
    );
    let retry = demo.manager.stats().providers[example::PROVIDER]
        .retry
        .clone()
        .expect("retry is enabled");
    assert_eq!(retry.retries, 0);
}

#[tokio::test]
async fn axum_state_shared_with_manager() {
    let demo = Demo::start().await;
    demo.flaky.fail_next(u32::MAX);
    reqwest::get(&demo.url).await.expect("the server answers");

    // The circuit that the route's service opened rejects a direct call through the manager.
    let error = demo
        .manager
        .execute(example::PROVIDER, |_| async { Ok::<_, Infallible>(()) })
        .await
        .expect_err("the circuit is open");
    assert_eq!(error.kind(), CallErrorKind::CircuitOpen);
}

// ----- the layers on plain tower services -----

/// Counts calls; fails with "unavailable" while `failures_left` is positive.
#[derive(Clone, Default)]
struct Counter {
    calls: Arc<AtomicU32>,
    failures_left: Arc<AtomicU32>,
}

impl Counter {
    fn failing(count: u32) -> Counter {
        let counter = Counter::default();
        counter.failures_left.store(count, Ordering::SeqCst);
        counter
    }

    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    fn service<Req: Send + 'static>(
        &self,
    ) -> impl Service<
        Req,
        Response = &'static str,
        Error = &'static str,
        Future = impl Future<Output = Result<&'static str, &'static str>> + Send,
    > + Clone
           + Send
           + 'static {
        let counter = self.clone();
        service_fn(move |_request: Req| {
            let counter = counter.clone();
            async move {
                counter.calls.fetch_add(1, Ordering::SeqCst);
                let failed = counter
                    .failures_left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                        left.checked_sub(1)
                    })
                    .is_ok();
                if failed {
                    Err("unavailable")
                } else {
                    Ok("answer")
                }
            }
        })
    }
}

#[tokio::test]
async fn service_retries_errors() {
    let counter = Counter::failing(2);
    let layer = ResilienceLayer::new(manager(NO_BACKOFF), "p");
    let service = layer.layer(counter.service::<String>());

    let response = service.oneshot("request".to_string()).await;

    assert_eq!(response.expect("the third attempt succeeds"), "answer");
    assert_eq!(counter.calls(), 3);
}

#[tokio::test]
async fn service_error_keeps_source() {
    let counter = Counter::failing(u32::MAX);
    let layer = ResilienceLayer::new(manager(NO_BACKOFF), "p");
    let service = layer.layer(counter.service::<String>());

    let error = service
        .oneshot("request".to_string())
        .await
        .expect_err("every attempt fails");

    assert_eq!(error.kind(), CallErrorKind::Failed(FailureClass::Other));
    assert_eq!(error.source_error(), Some(&"unavailable"));
    assert_eq!(error.attempts().len(), 3);
    assert_eq!(counter.calls(), 3);
}

/// A request type that is not `Clone`.
struct Upload(#[allow(dead_code)] Vec<u8>);

#[tokio::test]
async fn service_without_clone_sends_once() {
    let counter = Counter::failing(1);
    let manager = manager(NO_BACKOFF);
    let layer = ResilienceLayer::new(manager.clone(), "p").clone_request(NoClone);
    let service = layer.layer(counter.service::<Upload>());

    let error = service
        .oneshot(Upload(vec![1, 2, 3]))
        .await
        .expect_err("the only attempt fails");

    assert_eq!(counter.calls(), 1);
    assert_eq!(error.attempts().len(), 1);
    let retry = manager.stats().providers["p"]
        .retry
        .clone()
        .expect("retry is enabled");
    assert_eq!(retry.retries, 0);
}

#[tokio::test]
async fn service_clone_closure_copies_some() {
    let counter = Counter::failing(1);
    let copy_small = |upload: &Upload| (upload.0.len() < 4).then(|| Upload(upload.0.clone()));
    let layer = ResilienceLayer::new(manager(NO_BACKOFF), "p").clone_request(copy_small);
    let service = layer.layer(counter.service::<Upload>());

    let response = service.clone().oneshot(Upload(vec![1])).await;
    assert_eq!(response.expect("the retry succeeds"), "answer");
    assert_eq!(counter.calls(), 2);

    counter.failures_left.store(1, Ordering::SeqCst);
    let response = service.oneshot(Upload(vec![0; 16])).await;
    assert!(response.is_err(), "a large upload is sent once");
    assert_eq!(counter.calls(), 3);
}

#[tokio::test]
async fn clones_share_breaker() {
    let counter = Counter::failing(u32::MAX);
    let manager = manager(
        r#"
        [defaults.retry]
        max_retries = 0
        [defaults.circuit_breaker]
        failure_threshold = 2
        "#,
    );
    let service = ResilienceLayer::new(manager, "p").layer(counter.service::<u32>());
    let (mut first, mut second) = (service.clone(), service);

    first.ready().await.expect("always ready");
    let _ = first.call(1).await;
    second.ready().await.expect("always ready");
    let _ = second.call(2).await;

    let error = first.call(3).await.expect_err("the circuit is open");
    assert_eq!(error.kind(), CallErrorKind::CircuitOpen);
    assert_eq!(
        counter.calls(),
        2,
        "the rejected call never reached the service"
    );
}

#[tokio::test]
async fn open_circuit_ready_and_rejects() {
    let counter = Counter::failing(u32::MAX);
    let manager = manager(
        r#"
        [defaults.retry]
        max_retries = 0
        [defaults.circuit_breaker]
        failure_threshold = 1
        timeout = "60s"
        "#,
    );
    let mut service = ResilienceLayer::new(manager, "p").layer(counter.service::<u32>());
    let _ = service.call(1).await;

    let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
    assert!(matches!(service.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    let result = service
        .call(2)
        .now_or_never()
        .expect("a rejection completes on the first poll");
    let error = result.expect_err("the circuit is open");
    assert_eq!(error.kind(), CallErrorKind::CircuitOpen);
    assert!(error
        .retry_after()
        .is_some_and(|delay| delay > Duration::ZERO));
}

/// Returns a service whose calls wait until `release` is notified.
fn held_service(
    running: Arc<AtomicUsize>,
    release: Arc<tokio::sync::Notify>,
) -> impl Service<u32, Response = u32, Error = Infallible, Future = impl Send> + Clone + Send {
    service_fn(move |request: u32| {
        let running = running.clone();
        let release = release.clone();
        async move {
            running.fetch_add(1, Ordering::SeqCst);
            release.notified().await;
            running.fetch_sub(1, Ordering::SeqCst);
            Ok(request)
        }
    })
}

#[tokio::test]
async fn full_bulkhead_rejects_in_call() {
    let manager = manager(
        r#"
        [defaults.bulkhead]
        max_concurrent = 1
        max_queue = 0
        "#,
    );
    let running = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(tokio::sync::Notify::new());
    let service = ResilienceLayer::new(manager.clone(), "p")
        .layer(held_service(running.clone(), release.clone()));

    let holder = tokio::spawn(service.clone().oneshot(1));
    while running.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }

    let mut second = service.clone();
    let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
    assert!(matches!(second.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    let error = second
        .call(2)
        .now_or_never()
        .expect("a full bulkhead rejects on the first poll")
        .expect_err("the bulkhead is full");
    assert_eq!(error.kind(), CallErrorKind::BulkheadFull);

    release.notify_one();
    assert_eq!(
        holder
            .await
            .expect("no panic")
            .expect("the first call succeeds"),
        1
    );
    let bulkhead = manager.stats().providers["p"]
        .bulkhead
        .clone()
        .expect("enabled");
    assert_eq!(bulkhead.active, 0);
    assert_eq!(bulkhead.rejected_full, 1);
}

/// A service that is not ready the first time: its `poll_ready` fails once, then it succeeds.
#[derive(Clone)]
struct FailsReadinessOnce {
    failed: Arc<AtomicU32>,
}

impl Service<u32> for FailsReadinessOnce {
    type Response = u32;
    type Error = &'static str;
    type Future = Pin<Box<dyn Future<Output = Result<u32, &'static str>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.failed.fetch_add(1, Ordering::SeqCst) == 0 {
            Poll::Ready(Err("connection refused"))
        } else {
            Poll::Ready(Ok(()))
        }
    }

    fn call(&mut self, request: u32) -> Self::Future {
        Box::pin(async move { Ok(request) })
    }
}

#[tokio::test]
async fn readiness_error_retried() {
    let inner = FailsReadinessOnce {
        failed: Arc::new(AtomicU32::new(0)),
    };
    let manager = manager(NO_BACKOFF);
    let service = ResilienceLayer::new(manager.clone(), "p").layer(inner);

    assert_eq!(service.oneshot(7).await.expect("the retry succeeds"), 7);
    let retry = manager.stats().providers["p"]
        .retry
        .clone()
        .expect("enabled");
    assert_eq!(retry.retries, 1);
}

/// Counts a running call until it returns or is dropped.
struct Running<'a>(&'a AtomicUsize);

impl<'a> Running<'a> {
    fn enter(running: &'a AtomicUsize, max_running: &AtomicUsize) -> Self {
        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
        max_running.fetch_max(now, Ordering::SeqCst);
        Running(running)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_calls_counts_add_up() {
    const TASKS: usize = 90;
    const MAX_CONCURRENT: usize = 4;
    let manager = manager(
        r#"
        [defaults.bulkhead]
        max_concurrent = 4
        max_queue = 1000
        queue_timeout = "60s"
        "#,
    );
    let running = Arc::new(AtomicUsize::new(0));
    let max_running = Arc::new(AtomicUsize::new(0));
    let inner = {
        let (running, max_running) = (running.clone(), max_running.clone());
        service_fn(move |hang: bool| {
            let (running, max_running) = (running.clone(), max_running.clone());
            async move {
                let _running = Running::enter(&running, &max_running);
                if hang {
                    std::future::pending::<()>().await;
                }
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                }
                Ok::<_, Infallible>(())
            }
        })
    };
    let service = ResilienceLayer::new(manager.clone(), "p").layer(inner);

    // A third completes, a third is dropped after its first poll, a third hangs until a timeout
    // drops it while it waits for a slot or holds one.
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let service = service.clone();
            tokio::spawn(async move {
                match task % 3 {
                    0 => service.oneshot(false).await.map(|_| true).map_err(|_| ()),
                    1 => {
                        let mut service = service;
                        let dropped = service.call(false).now_or_never().is_none();
                        if dropped {
                            Ok(false)
                        } else {
                            Err(())
                        }
                    }
                    _ => {
                        let call = service.oneshot(true);
                        match tokio::time::timeout(Duration::from_millis(20), call).await {
                            Err(_elapsed) => Ok(false),
                            Ok(_) => Err(()),
                        }
                    }
                }
            })
        })
        .collect();
    let mut completed = 0_u64;
    for task in tasks {
        if task
            .await
            .expect("no panic")
            .expect("each call ends as planned")
        {
            completed += 1;
        }
    }

    assert_eq!(completed, (TASKS / 3) as u64);
    assert!(max_running.load(Ordering::SeqCst) <= MAX_CONCURRENT);
    let stats = &manager.stats().providers["p"];
    let bulkhead = stats.bulkhead.as_ref().expect("enabled");
    assert_eq!(bulkhead.active, 0, "every slot was freed");
    assert_eq!(bulkhead.queued, 0, "every queue place was freed");
    assert_eq!(stats.requests.succeeded, completed);
    assert_eq!(stats.requests.cancelled, (TASKS - TASKS / 3) as u64);
    assert_eq!(stats.requests.failed, 0);
    assert_eq!(stats.requests.total, TASKS as u64);
    assert_eq!(
        running.load(Ordering::SeqCst),
        0,
        "no hung call is left running"
    );
}

// ----- the fallback layer -----

fn fallback_manager(toml: &str) -> Manager<&'static str> {
    Manager::new(Config::from_toml_str(toml).expect("valid test configuration"))
        .expect("valid test configuration")
}

#[tokio::test]
async fn fallback_serves_cache_after_failure() {
    let counter = Counter::default();
    let manager = fallback_manager(NO_BACKOFF);
    let key = |request: &String| Some(format!("tenant:{request}"));
    let service = FallbackLayer::new(manager, "p", key).layer(counter.service::<String>());

    let first = service
        .clone()
        .oneshot("q".to_string())
        .await
        .expect("primary");
    assert_eq!(first.source, Source::Primary);

    counter.failures_left.store(u32::MAX, Ordering::SeqCst);
    let second = service
        .oneshot("q".to_string())
        .await
        .expect("from the cache");
    assert_eq!(second.value, "answer");
    assert!(matches!(second.source, Source::Cache { .. }));
    assert_eq!(second.attempts, 3);
}

/// A completion request that names its provider.
#[derive(Clone)]
struct Completion {
    provider: String,
}

#[tokio::test]
async fn fallback_routes_to_alternate() {
    let manager = fallback_manager(
        r#"
        [defaults.retry]
        max_retries = 0
        [providers.primary.fallback]
        alternate_providers = ["backup"]
        [providers.backup]
        "#,
    );
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let inner = {
        let seen = seen.clone();
        service_fn(move |request: Completion| {
            seen.lock()
                .expect("not poisoned")
                .push(request.provider.clone());
            async move {
                match request.provider.as_str() {
                    "backup" => Ok("from backup"),
                    _ => Err("primary is down"),
                }
            }
        })
    };
    let service = FallbackLayer::new(manager.clone(), "primary", |_: &Completion| None)
        .route(|request: &mut Completion, provider: &str| request.provider = provider.to_owned())
        .layer(inner);

    let served = service
        .oneshot(Completion {
            provider: String::new(),
        })
        .await
        .expect("the alternate answers");

    assert_eq!(served.value, "from backup");
    assert_eq!(
        served.source,
        Source::Alternate {
            provider: "backup".into()
        }
    );
    assert_eq!(*seen.lock().expect("not poisoned"), ["primary", "backup"]);
    assert_eq!(
        manager.stats().providers["primary"]
            .requests
            .fallbacks
            .provider,
        1
    );
}

#[tokio::test]
async fn fallback_neutral_response_not_cached() {
    let manager = fallback_manager(NO_BACKOFF);
    let calls = Arc::new(AtomicU32::new(0));
    let inner = {
        let calls = calls.clone();
        service_fn(move |_: ()| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>("400 bad request") }
        })
    };
    let neutral_400 = |result: &Result<&'static str, Infallible>| match result {
        Ok(body) if body.starts_with("400") => {
            resilience::Outcome::Neutral(resilience::NeutralReason::CallerError)
        }
        _ => resilience::Outcome::Success,
    };
    let service = FallbackLayer::new(manager.clone(), "p", |_: &()| Some("key".to_string()))
        .classifier(neutral_400)
        .layer(inner);

    let served = service
        .oneshot(())
        .await
        .expect("the caller's error comes back");

    assert_eq!(served.value, "400 bad request");
    assert_eq!(served.source, Source::Primary);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "a neutral outcome is not retried"
    );
    assert_eq!(manager.stats().providers["p"].cache_entries, 0);
}

#[tokio::test]
async fn fallback_failed_response_is_error() {
    let manager = fallback_manager(NO_BACKOFF);
    let inner = service_fn(|_: ()| async { Ok::<_, Infallible>("503") });
    let failed_503 = |result: &Result<&'static str, Infallible>| match result {
        Ok("503") => resilience::Outcome::failure(FailureClass::Server),
        _ => resilience::Outcome::Success,
    };
    let service = FallbackLayer::new(manager.clone(), "p", |_: &()| Some("key".to_string()))
        .classifier(failed_503)
        .layer(inner);

    let error = service
        .oneshot(())
        .await
        .expect_err("nothing to fall back to");

    assert_eq!(error.kind(), CallErrorKind::Failed(FailureClass::Server));
    assert_eq!(error.attempts().len(), 3);
    assert_eq!(
        manager.stats().providers["p"].cache_entries,
        0,
        "a failure is never cached"
    );
}
