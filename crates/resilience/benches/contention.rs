//! The breaker and the bulkhead shared by 2 threads that call at once (the machine has 2 cores).
//!
//! Each thread runs its own current-thread tokio runtime, waits at a barrier, then makes the same
//! number of calls on the shared object. The time reported per call is the slower thread's time
//! divided by its calls, so it reads like the single-thread figures in `overhead.rs`: a scenario
//! that did not slow down under contention shows the same time in both.

mod common;

use std::future::Future;
use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use failsafe::futures::CircuitBreaker as _;
use resilience::{Bulkhead, BulkheadConfig, CircuitBreaker, CircuitBreakerConfig};
use tower::{Service, ServiceExt};

use common::{
    current_thread_runtime, failsafe_breaker, recloser_breaker, tower_breaker, tower_bulkhead,
    upstream,
};

const THREADS: usize = 2;

/// Runs `calls(iters)` on each of [`THREADS`] threads at once and returns the slower thread's time.
fn contended<F, Fut>(iters: u64, calls: F) -> Duration
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()>,
{
    let barrier = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let barrier = barrier.clone();
            let calls = calls.clone();
            std::thread::spawn(move || {
                let runtime = current_thread_runtime();
                barrier.wait();
                let start = Instant::now();
                runtime.block_on(calls(iters));
                start.elapsed()
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|thread| thread.join().expect("a calling thread panicked"))
        .max()
        .unwrap_or_default()
}

/// Returns the calls of one thread on a tower service: `ready().await`, then `call()`.
fn tower_calls<S>(
    service: S,
) -> impl Fn(u64) -> std::pin::Pin<Box<dyn Future<Output = ()>>> + Clone + Send
where
    S: Service<u64> + Clone + Send + 'static,
    S::Error: std::fmt::Debug,
{
    move |iters| {
        let mut service = service.clone();
        Box::pin(async move {
            for _ in 0..iters {
                let ready = service.ready().await.expect("the service is ready");
                let _ = black_box(ready.call(black_box(1)).await);
            }
        })
    }
}

fn breaker_closed(c: &mut Criterion) {
    let mut group = c.benchmark_group("breaker_closed_2_threads");

    let ours = CircuitBreaker::new(CircuitBreakerConfig::default()).expect("valid config");
    group.bench_function("resilience", |b| {
        b.iter_custom(|iters| {
            let ours = ours.clone();
            contended(iters, move |iters| {
                let ours = ours.clone();
                async move {
                    for _ in 0..iters {
                        let _ = black_box(ours.execute(|| upstream(black_box(1))).await);
                    }
                }
            })
        })
    });

    let tower = tower_breaker(5, tower::service_fn(upstream));
    group.bench_function("tower-resilience", |b| {
        b.iter_custom(|iters| contended(iters, tower_calls(tower.clone())))
    });

    let failsafe = failsafe_breaker(5);
    group.bench_function("failsafe", |b| {
        b.iter_custom(|iters| {
            let failsafe = failsafe.clone();
            contended(iters, move |iters| {
                let failsafe = failsafe.clone();
                async move {
                    for _ in 0..iters {
                        let _ = black_box(failsafe.call(upstream(black_box(1))).await);
                    }
                }
            })
        })
    });

    let recloser = recloser_breaker(100);
    group.bench_function("recloser", |b| {
        b.iter_custom(|iters| {
            let recloser = recloser.clone();
            contended(iters, move |iters| {
                let recloser = recloser.clone();
                async move {
                    for _ in 0..iters {
                        let _ = black_box(recloser.call(upstream(black_box(1))).await);
                    }
                }
            })
        })
    });
    group.finish();
}

fn bulkhead(c: &mut Criterion) {
    let mut group = c.benchmark_group("bulkhead_2_threads");

    let ours = Bulkhead::new(BulkheadConfig::default()).expect("valid config");
    group.bench_function("resilience", |b| {
        b.iter_custom(|iters| {
            let ours = ours.clone();
            contended(iters, move |iters| {
                let ours = ours.clone();
                async move {
                    for _ in 0..iters {
                        let _ = black_box(ours.execute(|| upstream(black_box(1))).await);
                    }
                }
            })
        })
    });

    let tower = tower_bulkhead(tower::service_fn(upstream));
    group.bench_function("tower-resilience", |b| {
        b.iter_custom(|iters| contended(iters, tower_calls(tower.clone())))
    });

    let limit = tower::limit::ConcurrencyLimit::new(tower::service_fn(upstream), 10);
    group.bench_function("tower_concurrency_limit", |b| {
        b.iter_custom(|iters| contended(iters, tower_calls(limit.clone())))
    });
    group.finish();
}

fn config() -> Criterion {
    // Short defaults, as in `overhead.rs`. Command-line flags still override them.
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = breaker_closed, bulkhead
}
criterion_main!(benches);
