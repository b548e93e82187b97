//! The per-call cost of each pattern, beside a bare call and beside the peer crates.
//!
//! Every scenario runs on one current-thread tokio runtime, and every protected object (ours and
//! the peers') is built once, outside the measured loop. The upstream call is an `async fn` that
//! returns at once, so a scenario's time minus the bare call's time is the pattern's overhead.
//! The contention scenarios live in `contention.rs`.
//!
//! Run with `cargo bench -p resilience`; `BENCHMARKS.md` at the repository root records a run.

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use failsafe::futures::CircuitBreaker as _;
use resilience::{
    Bulkhead, BulkheadConfig, CircuitBreaker, CircuitBreakerConfig, Config, Manager, Retry,
    RetryConfig, Source,
};
use tower::{Service, ServiceExt};

use common::{
    current_thread_runtime, failing, failsafe_breaker, recloser_breaker, tower_breaker,
    tower_bulkhead, tower_retry, tower_stack, upstream, OPEN_FOR,
};

/// Times `iters` calls of a tower service, driven the way tower's own callers drive it:
/// `ready().await` then `call()`.
macro_rules! tower_loop {
    ($bencher:expr, $runtime:expr, $service:expr) => {
        $bencher.to_async($runtime).iter_custom(|iters| {
            let mut service = $service.clone();
            async move {
                let start = Instant::now();
                for _ in 0..iters {
                    let ready = service.ready().await.expect("the service is ready");
                    let _ = black_box(ready.call(black_box(1)).await);
                }
                start.elapsed()
            }
        })
    };
}

fn bare(c: &mut Criterion) {
    let runtime = current_thread_runtime();
    let mut group = c.benchmark_group("bare");
    group.bench_function("async_fn", |b| {
        b.to_async(&runtime).iter(|| upstream(black_box(1)))
    });
    let service = tower::service_fn(upstream);
    group.bench_function("tower_service_fn", |b| tower_loop!(b, &runtime, service));
    group.finish();
}

fn breaker_closed(c: &mut Criterion) {
    let runtime = current_thread_runtime();
    let mut group = c.benchmark_group("breaker_closed");

    let ours = CircuitBreaker::new(CircuitBreakerConfig::default()).expect("valid config");
    group.bench_function("resilience", |b| {
        b.to_async(&runtime)
            .iter(|| ours.execute(|| upstream(black_box(1))))
    });

    let tower = tower_breaker(5, tower::service_fn(upstream));
    group.bench_function("tower-resilience", |b| tower_loop!(b, &runtime, tower));

    let failsafe = failsafe_breaker(5);
    group.bench_function("failsafe", |b| {
        b.to_async(&runtime)
            .iter(|| failsafe.call(upstream(black_box(1))))
    });

    let recloser = recloser_breaker(100);
    group.bench_function("recloser", |b| {
        b.to_async(&runtime)
            .iter(|| recloser.call(upstream(black_box(1))))
    });
    group.finish();
}

fn breaker_open(c: &mut Criterion) {
    let runtime = current_thread_runtime();
    let mut group = c.benchmark_group("breaker_open");

    let ours = CircuitBreaker::new(CircuitBreakerConfig {
        failure_threshold: 1,
        timeout: OPEN_FOR,
        ..CircuitBreakerConfig::default()
    })
    .expect("valid config");
    let _ = runtime.block_on(ours.execute(|| failing(1)));
    assert!(
        runtime.block_on(ours.execute(|| upstream(1))).is_err(),
        "our circuit is open"
    );
    group.bench_function("resilience", |b| {
        b.to_async(&runtime)
            .iter(|| ours.execute(|| upstream(black_box(1))))
    });

    let mut tower = tower_breaker(1, tower::service_fn(failing));
    runtime.block_on(async {
        let _ = tower.ready().await.expect("ready").call(1).await;
        let rejected = tower.ready().await.expect("ready").call(1).await;
        assert!(
            rejected.is_err_and(|e| e.is_circuit_open()),
            "tower-resilience's circuit is open"
        );
    });
    group.bench_function("tower-resilience", |b| tower_loop!(b, &runtime, tower));

    let failsafe = failsafe_breaker(1);
    runtime.block_on(async {
        let _ = failsafe.call(failing(1)).await;
        let rejected = failsafe.call(upstream(1)).await;
        assert!(
            matches!(rejected, Err(failsafe::Error::Rejected)),
            "failsafe's circuit is open"
        );
    });
    group.bench_function("failsafe", |b| {
        b.to_async(&runtime)
            .iter(|| failsafe.call(upstream(black_box(1))))
    });

    let recloser = recloser_breaker(1);
    runtime.block_on(async {
        // recloser computes a failure rate only once its ring is full: the first failure fills
        // the ring of one call, the second opens the circuit.
        let _ = recloser.call(failing(1)).await;
        let _ = recloser.call(failing(1)).await;
        let rejected = recloser.call(upstream(1)).await;
        assert!(
            matches!(rejected, Err(recloser::Error::Rejected)),
            "recloser's circuit is open"
        );
    });
    group.bench_function("recloser", |b| {
        b.to_async(&runtime)
            .iter(|| recloser.call(upstream(black_box(1))))
    });
    group.finish();
}

fn bulkhead_uncontended(c: &mut Criterion) {
    let runtime = current_thread_runtime();
    let mut group = c.benchmark_group("bulkhead_uncontended");

    let ours = Bulkhead::new(BulkheadConfig::default()).expect("valid config");
    group.bench_function("resilience", |b| {
        b.to_async(&runtime)
            .iter(|| ours.execute(|| upstream(black_box(1))))
    });

    let tower = tower_bulkhead(tower::service_fn(upstream));
    group.bench_function("tower-resilience", |b| tower_loop!(b, &runtime, tower));

    let limit = tower::limit::ConcurrencyLimit::new(tower::service_fn(upstream), 10);
    group.bench_function("tower_concurrency_limit", |b| {
        tower_loop!(b, &runtime, limit)
    });
    group.finish();
}

fn retry_first_success(c: &mut Criterion) {
    let runtime = current_thread_runtime();
    let mut group = c.benchmark_group("retry_first_success");

    let ours = Retry::new(RetryConfig::default()).expect("valid config");
    group.bench_function("resilience", |b| {
        b.to_async(&runtime)
            .iter(|| ours.execute(|| upstream(black_box(1))))
    });

    let tower = tower_retry(tower::service_fn(upstream));
    group.bench_function("tower-resilience", |b| tower_loop!(b, &runtime, tower));
    group.finish();
}

fn manager(c: &mut Criterion) {
    let runtime = current_thread_runtime();
    let mut group = c.benchmark_group("manager");
    let ours: Manager<u64> = Manager::new(Config::default()).expect("valid config");

    group.bench_function("execute", |b| {
        b.to_async(&runtime)
            .iter(|| ours.execute("bench", |_| upstream(black_box(1))))
    });
    group.bench_function("execute_with_fallback_cache_key", |b| {
        b.to_async(&runtime)
            .iter(|| ours.execute_with_fallback("bench", Some("key"), |_| upstream(black_box(1))))
    });
    group.bench_function("execute_with_fallback_no_key", |b| {
        b.to_async(&runtime)
            .iter(|| ours.execute_with_fallback("bench", None, |_| upstream(black_box(1))))
    });

    // The peer of the whole stack: tower-resilience's retry around its breaker around its
    // bulkhead, the order the manager applies them in.
    let tower = tower_stack(tower::service_fn(upstream));
    group.bench_function("tower-resilience_stack", |b| {
        tower_loop!(b, &runtime, tower)
    });
    group.finish();
}

/// Times a cache hit served by `execute_with_fallback`, after the primary failed and after an open
/// circuit rejected it. Retries are off so that no backoff sleep is timed.
fn fallback_cache_hit(c: &mut Criterion) {
    let runtime = current_thread_runtime();
    let mut group = c.benchmark_group("fallback_cache_hit");

    // The failure threshold is never reached, so every call runs the failing primary first.
    let after_failure = cache_manager(u32::MAX);
    runtime.block_on(warm_cache(&after_failure));
    group.bench_function("after_primary_failed", |b| {
        b.to_async(&runtime).iter(|| {
            after_failure.execute_with_fallback("bench", Some("key"), |_| failing(black_box(1)))
        })
    });

    // One failure opens the circuit, so every call is rejected without running the primary.
    let after_open = cache_manager(1);
    runtime.block_on(async {
        warm_cache(&after_open).await;
        let _ = after_open
            .execute_with_fallback("bench", None, |_| failing(1))
            .await;
    });
    group.bench_function("after_circuit_open", |b| {
        b.to_async(&runtime).iter(|| {
            after_open.execute_with_fallback("bench", Some("key"), |_| upstream(black_box(1)))
        })
    });
    group.finish();
}

fn cache_manager(failure_threshold: u32) -> Manager<u64> {
    let mut config = Config {
        enable_retry: false,
        ..Config::default()
    };
    config.defaults.circuit_breaker.failure_threshold = failure_threshold;
    config.defaults.circuit_breaker.timeout = OPEN_FOR;
    Manager::new(config).expect("valid config")
}

/// Stores a response under "key" and checks that a failed call is then served from the cache.
async fn warm_cache(manager: &Manager<u64>) {
    let stored = manager
        .execute_with_fallback("bench", Some("key"), |_| upstream(7))
        .await
        .expect("the primary succeeds");
    assert_eq!(stored.source, Source::Primary);
    let served = manager
        .execute_with_fallback("bench", Some("key"), |_| failing(1))
        .await
        .expect("the cache serves the failed call");
    assert!(
        matches!(served.source, Source::Cache { .. }),
        "served from {:?}",
        served.source
    );
    assert_eq!(served.value, 7);
}

fn config() -> Criterion {
    // Short defaults: the machine has 2 cores and other builds often run beside the benches.
    // Command-line flags such as `--measurement-time` still override them.
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bare, breaker_closed, breaker_open, bulkhead_uncontended, retry_first_success,
        manager, fallback_cache_hit
}
criterion_main!(benches);
