//! Contract tests of `Bulkhead`: the concurrency limit, immediate rejection beyond the queue, the
//! queue timeout, first-in first-out service, cancellation, the owned permit and statistics.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use resilience::bulkhead::BulkheadRejection;
use resilience::{Bulkhead, BulkheadConfig, BulkheadFull, BulkheadStats, Error, QueueTimeout};
use tokio::task::JoinSet;
use tokio::time::Instant;

fn bulkhead(max_concurrent: usize, max_queue: usize, queue_timeout: Duration) -> Bulkhead {
    Bulkhead::new(BulkheadConfig {
        max_concurrent,
        max_queue,
        queue_timeout,
    })
    .unwrap()
}

/// Polls `future` once with a waker that does nothing.
fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    let mut context = Context::from_waker(Waker::noop());
    std::pin::Pin::new(future).poll(&mut context)
}

/// Yields a few times so that spawned tasks on this thread reach their first wait.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

/// Counts operations running at once and remembers the maximum.
#[derive(Debug, Default)]
struct Gauge {
    running: AtomicUsize,
    max: AtomicUsize,
}

impl Gauge {
    fn enter(&self) -> GaugeGuard<'_> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        GaugeGuard(self)
    }

    fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }
}

struct GaugeGuard<'a>(&'a Gauge);

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

fn full(max_concurrent: usize, max_queue: usize) -> BulkheadFull {
    BulkheadFull {
        max_concurrent,
        max_queue,
    }
}

#[test]
fn bulkhead_is_send_sync_and_clone() {
    fn assert_shareable<T: Send + Sync + Clone + 'static>() {}
    fn assert_send<T: Send + 'static>() {}
    assert_shareable::<Bulkhead>();
    assert_shareable::<BulkheadConfig>();
    assert_send::<resilience::BulkheadPermit>();
}

#[tokio::test(start_paused = true)]
async fn at_most_max_concurrent_run() {
    let bulkhead = bulkhead(3, 10, Duration::from_secs(5));
    let gauge = Arc::new(Gauge::default());
    let start = Instant::now();
    let mut tasks = JoinSet::new();

    for _ in 0..10 {
        let bulkhead = bulkhead.clone();
        let gauge = gauge.clone();
        tasks.spawn(async move {
            bulkhead
                .execute(|| async {
                    let _running = gauge.enter();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Ok::<_, ()>(())
                })
                .await
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.unwrap().unwrap();
    }

    assert_eq!(gauge.max(), 3);
    // Ten calls of 100 ms, three at a time: four rounds.
    assert_eq!(start.elapsed(), Duration::from_millis(400));
    assert_eq!(bulkhead.stats().active, 0);
    assert_eq!(bulkhead.stats().queued, 0);
}

#[tokio::test(start_paused = true)]
async fn caller_beyond_queue_is_rejected_at_once() {
    let bulkhead = bulkhead(2, 3, Duration::from_secs(5));
    let held = [
        bulkhead.acquire().await.unwrap(),
        bulkhead.acquire().await.unwrap(),
    ];
    let mut waiters = JoinSet::new();
    for _ in 0..3 {
        let bulkhead = bulkhead.clone();
        waiters.spawn(async move { bulkhead.execute(|| async { Ok::<_, ()>(()) }).await });
    }
    settle().await;
    assert_eq!(bulkhead.stats().queued, 3);

    let ran = AtomicBool::new(false);
    let start = Instant::now();
    let mut extra = Box::pin(bulkhead.execute(|| async {
        ran.store(true, Ordering::SeqCst);
        Ok::<_, ()>(())
    }));

    // The sixth caller is rejected on its first poll, without waiting.
    let Poll::Ready(result) = poll_once(&mut extra) else {
        panic!("the caller beyond the queue waited instead of being rejected");
    };
    assert!(matches!(result, Err(Error::BulkheadFull(rejection)) if rejection == full(2, 3)));
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert!(!ran.load(Ordering::SeqCst));

    let Poll::Ready(owned) = poll_once(&mut Box::pin(bulkhead.acquire())) else {
        panic!("acquire beyond the queue waited instead of being rejected");
    };
    assert_eq!(owned.err(), Some(BulkheadRejection::Full(full(2, 3))));
    assert_eq!(
        bulkhead.stats(),
        BulkheadStats {
            active: 2,
            queued: 3,
            max_concurrent: 2,
            max_queue: 3,
            rejected_full: 2,
            rejected_queue_timeout: 0,
        }
    );

    drop(held);
    while let Some(joined) = waiters.join_next().await {
        joined.unwrap().unwrap();
    }
    assert_eq!(bulkhead.stats().active, 0);
    assert_eq!(bulkhead.stats().queued, 0);
}

#[tokio::test(start_paused = true)]
async fn zero_queue_rejects_when_slots_taken() {
    let bulkhead = bulkhead(1, 0, Duration::from_secs(5));
    let _held = bulkhead.acquire().await.unwrap();
    let start = Instant::now();

    let result = bulkhead.execute(|| async { Ok::<_, ()>(()) }).await;

    assert!(matches!(result, Err(Error::BulkheadFull(rejection)) if rejection == full(1, 0)));
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn waiter_gets_queue_timeout() {
    let bulkhead = bulkhead(1, 5, Duration::from_millis(750));
    let _held = bulkhead.acquire().await.unwrap();
    let ran = AtomicBool::new(false);
    let start = Instant::now();

    let result = bulkhead
        .execute(|| async {
            ran.store(true, Ordering::SeqCst);
            Ok::<_, ()>(())
        })
        .await;

    let Err(Error::QueueTimeout(timeout)) = result else {
        panic!("expected a queue timeout, got {result:?}");
    };
    assert_eq!(
        timeout,
        QueueTimeout {
            waited: Duration::from_millis(750)
        }
    );
    assert_eq!(start.elapsed(), Duration::from_millis(750));
    assert!(!ran.load(Ordering::SeqCst));
    assert_eq!(bulkhead.stats().rejected_queue_timeout, 1);
    assert_eq!(bulkhead.stats().queued, 0);

    let owned = bulkhead.acquire().await;
    assert_eq!(
        owned.err(),
        Some(BulkheadRejection::QueueTimeout(QueueTimeout {
            waited: Duration::from_millis(750)
        }))
    );
    assert_eq!(bulkhead.stats().rejected_queue_timeout, 2);
}

#[tokio::test(start_paused = true)]
async fn waiter_served_just_before_timeout_runs() {
    let bulkhead = bulkhead(1, 5, Duration::from_secs(1));
    let held = bulkhead.acquire().await.unwrap();
    let waiter = tokio::spawn({
        let bulkhead = bulkhead.clone();
        async move { bulkhead.acquire().await.map(|permit| permit.waited()) }
    });

    tokio::time::sleep(Duration::from_millis(999)).await;
    drop(held);

    assert_eq!(waiter.await.unwrap(), Ok(Duration::from_millis(999)));
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_in_arrival_order() {
    let bulkhead = bulkhead(1, 20, Duration::from_secs(5));
    let held = bulkhead.acquire().await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = JoinSet::new();

    for id in 0..12 {
        let waiter = bulkhead.clone();
        let order = order.clone();
        // Alternate the two ways to wait: both share one queue.
        if id % 2 == 0 {
            tasks.spawn(async move {
                waiter
                    .execute(|| async {
                        order.lock().unwrap().push(id);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        Ok::<_, ()>(())
                    })
                    .await
                    .unwrap();
            });
        } else {
            tasks.spawn(async move {
                let _permit = waiter.acquire().await.unwrap();
                order.lock().unwrap().push(id);
                tokio::time::sleep(Duration::from_millis(10)).await;
            });
        }
        // Each waiter joins the queue before the next one is spawned.
        settle().await;
        assert_eq!(bulkhead.stats().queued, id + 1);
    }
    drop(held);
    while let Some(joined) = tasks.join_next().await {
        joined.unwrap();
    }

    assert_eq!(*order.lock().unwrap(), (0..12).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn timed_out_waiter_never_runs() {
    let bulkhead = bulkhead(1, 5, Duration::from_secs(1));
    let held = bulkhead.acquire().await.unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    let waiter = tokio::spawn({
        let bulkhead = bulkhead.clone();
        let ran = ran.clone();
        async move {
            bulkhead
                .execute(|| async {
                    ran.store(true, Ordering::SeqCst);
                    Ok::<_, ()>(())
                })
                .await
        }
    });

    tokio::time::sleep(Duration::from_secs(1)).await;
    let result = waiter.await.unwrap();
    drop(held);
    let later = bulkhead.execute(|| async { Ok::<_, ()>(7) }).await;
    tokio::time::sleep(Duration::from_secs(10)).await;

    assert!(matches!(result, Err(Error::QueueTimeout(_))), "{result:?}");
    assert_eq!(later.unwrap(), 7);
    assert!(!ran.load(Ordering::SeqCst));
    assert_eq!(bulkhead.stats().active, 0);
    assert_eq!(bulkhead.stats().queued, 0);
}

#[tokio::test(start_paused = true)]
async fn dropped_waiter_never_runs_or_blocks() {
    let bulkhead = bulkhead(1, 5, Duration::from_secs(5));
    let held = bulkhead.acquire().await.unwrap();
    let ran = AtomicBool::new(false);

    let mut dropped = Box::pin(bulkhead.execute(|| async {
        ran.store(true, Ordering::SeqCst);
        Ok::<_, ()>(())
    }));
    assert!(poll_once(&mut dropped).is_pending());
    assert_eq!(bulkhead.stats().queued, 1);
    let mut dropped_acquire = Box::pin(bulkhead.acquire());
    assert!(poll_once(&mut dropped_acquire).is_pending());
    assert_eq!(bulkhead.stats().queued, 2);
    let next = tokio::spawn({
        let bulkhead = bulkhead.clone();
        async move { bulkhead.acquire().await.map(|permit| permit.waited()) }
    });
    settle().await;
    assert_eq!(bulkhead.stats().queued, 3);

    drop(dropped);
    drop(dropped_acquire);
    assert_eq!(bulkhead.stats().queued, 1);
    tokio::time::sleep(Duration::from_millis(20)).await;
    drop(held);

    // The slot goes to the waiter behind the dropped ones, at once.
    assert_eq!(next.await.unwrap(), Ok(Duration::from_millis(20)));
    assert!(!ran.load(Ordering::SeqCst));
    assert_eq!(bulkhead.stats().active, 0);
    assert_eq!(bulkhead.stats().queued, 0);
    assert_eq!(bulkhead.stats().rejected_queue_timeout, 0);
}

#[tokio::test(start_paused = true)]
async fn dropped_running_call_frees_slot() {
    let bulkhead = bulkhead(1, 0, Duration::from_secs(5));
    let task = tokio::spawn({
        let bulkhead = bulkhead.clone();
        async move {
            bulkhead
                .execute(|| async {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    Ok::<_, ()>(())
                })
                .await
        }
    });
    settle().await;
    assert_eq!(bulkhead.stats().active, 1);

    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());

    assert_eq!(bulkhead.stats().active, 0);
    assert!(bulkhead.try_acquire().is_ok());
}

#[tokio::test(start_paused = true)]
async fn owned_permit_holds_slot_until_dropped() {
    let bulkhead = bulkhead(1, 1, Duration::from_secs(5));

    let permit = bulkhead.acquire().await.unwrap();
    assert_eq!(permit.waited(), Duration::ZERO);
    assert_eq!(bulkhead.stats().active, 1);
    tokio::time::sleep(Duration::from_secs(3_600)).await;
    assert_eq!(bulkhead.stats().active, 1);
    assert_eq!(bulkhead.try_acquire().err(), Some(full(1, 1)));

    let waiter = tokio::spawn({
        let bulkhead = bulkhead.clone();
        async move { bulkhead.acquire().await.map(|permit| permit.waited()) }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(permit);

    assert_eq!(waiter.await.unwrap(), Ok(Duration::from_secs(2)));
    assert_eq!(bulkhead.stats().active, 0);
}

#[tokio::test(start_paused = true)]
async fn try_acquire_never_waits() {
    let bulkhead = bulkhead(2, 10, Duration::from_secs(5));

    let first = bulkhead.try_acquire().unwrap();
    let second = bulkhead.try_acquire().unwrap();
    let third = bulkhead.try_acquire();

    assert_eq!(third.err(), Some(full(2, 10)));
    assert_eq!(bulkhead.stats().active, 2);
    assert_eq!(bulkhead.stats().queued, 0);
    assert_eq!(bulkhead.stats().rejected_full, 1);
    drop((first, second));
    assert_eq!(bulkhead.stats().active, 0);
}

#[tokio::test(start_paused = true)]
async fn operation_error_is_returned_unchanged() {
    let bulkhead = bulkhead(1, 0, Duration::from_secs(5));

    let result = bulkhead
        .execute(|| async { Err::<(), _>(std::io::Error::other("upstream reset")) })
        .await;

    let error = result.unwrap_err();
    assert!(!error.is_rejection());
    assert_eq!(
        error.into_operation().unwrap().to_string(),
        "upstream reset"
    );
    assert_eq!(bulkhead.stats().active, 0);
}

#[tokio::test(start_paused = true)]
async fn clones_share_slots_and_stats() {
    let bulkhead = bulkhead(1, 0, Duration::from_secs(5));
    let clone = bulkhead.clone();

    let held = clone.acquire().await.unwrap();
    let rejected = bulkhead.try_acquire();

    assert!(rejected.is_err());
    assert_eq!(bulkhead.stats().active, 1);
    assert_eq!(clone.stats().rejected_full, 1);
    bulkhead.reset_stats();
    assert_eq!(clone.stats().rejected_full, 0);
    drop(held);
    assert_eq!(bulkhead.stats().active, 0);
}

/// How one call of the cancellation test ended.
#[derive(Debug, Default)]
struct Tally {
    completed: AtomicUsize,
    full: AtomicUsize,
    timed_out: AtomicUsize,
    cancelled: AtomicUsize,
    /// Calls whose work started although the bulkhead rejected them.
    ran_after_rejection: AtomicUsize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousands_of_cancellations_leak_no_permit() {
    const CALLS: usize = 4_000;
    const MAX_CONCURRENT: usize = 8;
    let bulkhead = bulkhead(MAX_CONCURRENT, 256, Duration::from_millis(2));
    let gauge = Arc::new(Gauge::default());
    let tally = Arc::new(Tally::default());
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mut tasks = JoinSet::new();
    let mut handles = Vec::new();

    for call in 0..CALLS {
        let bulkhead = bulkhead.clone();
        let gauge = gauge.clone();
        let tally_for_body = tally.clone();
        let yields = rng.usize(0..50);
        let deadline = Duration::from_micros(rng.u64(0..3_000));
        let use_permit = rng.bool();
        let body = async move {
            let tally = tally_for_body;
            let started = AtomicBool::new(false);
            let work = || async {
                started.store(true, Ordering::SeqCst);
                let _running = gauge.enter();
                for _ in 0..yields {
                    tokio::task::yield_now().await;
                }
            };
            let result: Result<(), BulkheadRejection> = if use_permit {
                match bulkhead.acquire().await {
                    Ok(_permit) => {
                        work().await;
                        Ok(())
                    }
                    Err(rejection) => Err(rejection),
                }
            } else {
                match bulkhead
                    .execute(|| async {
                        work().await;
                        Ok::<_, ()>(())
                    })
                    .await
                {
                    Ok(()) => Ok(()),
                    Err(Error::BulkheadFull(full)) => Err(full.into()),
                    Err(Error::QueueTimeout(timeout)) => Err(timeout.into()),
                    Err(other) => panic!("unexpected error {other:?}"),
                }
            };
            let counter = match result {
                Ok(()) => &tally.completed,
                Err(BulkheadRejection::Full(_)) => &tally.full,
                Err(BulkheadRejection::QueueTimeout(_)) => &tally.timed_out,
            };
            counter.fetch_add(1, Ordering::SeqCst);
            if result.is_err() && started.load(Ordering::SeqCst) {
                tally.ran_after_rejection.fetch_add(1, Ordering::SeqCst);
            }
        };
        // A third of the calls are dropped by a timeout, a third aborted, a third run to the end.
        let tally_for_timeout = tally.clone();
        match call % 3 {
            0 => {
                tasks.spawn(async move {
                    if tokio::time::timeout(deadline, body).await.is_err() {
                        tally_for_timeout.cancelled.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
            1 => handles.push(tasks.spawn(body)),
            _ => {
                tasks.spawn(body);
            }
        }
        if call % 16 == 0 {
            for handle in handles.drain(..) {
                handle.abort();
            }
            tokio::task::yield_now().await;
        }
    }
    for handle in handles.drain(..) {
        handle.abort();
    }
    let mut aborted = 0;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(()) => {}
            Err(error) if error.is_cancelled() => aborted += 1,
            Err(error) => panic!("call task panicked: {error}"),
        }
    }

    let ended = tally.completed.load(Ordering::SeqCst)
        + tally.full.load(Ordering::SeqCst)
        + tally.timed_out.load(Ordering::SeqCst)
        + tally.cancelled.load(Ordering::SeqCst)
        + aborted;
    assert_eq!(ended, CALLS);
    assert!(gauge.max() <= MAX_CONCURRENT, "{} ran at once", gauge.max());
    assert!(tally.completed.load(Ordering::SeqCst) >= 1);
    assert_eq!(gauge.running.load(Ordering::SeqCst), 0);
    assert_eq!(tally.ran_after_rejection.load(Ordering::SeqCst), 0);

    let stats = bulkhead.stats();
    assert_eq!(stats.active, 0);
    assert_eq!(stats.queued, 0);
    assert_eq!(
        stats.rejected_full as usize,
        tally.full.load(Ordering::SeqCst)
    );
    assert_eq!(
        stats.rejected_queue_timeout as usize,
        tally.timed_out.load(Ordering::SeqCst)
    );
    // Every slot is free again: exactly MAX_CONCURRENT can be taken at once.
    let permits: Vec<_> = (0..MAX_CONCURRENT)
        .map(|_| bulkhead.try_acquire().expect("a slot leaked"))
        .collect();
    assert!(bulkhead.try_acquire().is_err());
    drop(permits);
    assert_eq!(bulkhead.stats().active, 0);
}

#[tokio::test(start_paused = true)]
async fn longest_queue_timeout_waits_without_panic() {
    let bulkhead = bulkhead(1, 1, Duration::MAX);
    let held = bulkhead.acquire().await.unwrap();
    let waiter = tokio::spawn({
        let bulkhead = bulkhead.clone();
        async move { bulkhead.acquire().await.map(|permit| permit.waited()) }
    });

    tokio::time::sleep(Duration::from_secs(365 * 24 * 3_600)).await;
    assert_eq!(bulkhead.stats().queued, 1);
    drop(held);

    assert_eq!(
        waiter.await.unwrap(),
        Ok(Duration::from_secs(365 * 24 * 3_600))
    );
}
