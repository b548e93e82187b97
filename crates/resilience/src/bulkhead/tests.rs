//! Unit tests of the bulkhead's queue accounting, driven through its internal wait.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use super::{Bulkhead, BulkheadConfig, BulkheadRejection};
use crate::error::BulkheadFull;

fn bulkhead(max_queue: usize) -> Bulkhead {
    Bulkhead::new(BulkheadConfig {
        max_concurrent: 1,
        max_queue,
        queue_timeout: Duration::from_secs(1),
    })
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn dropped_wait_returns_queue_place() {
    let bulkhead = bulkhead(2);
    let mut waiting = Box::pin(bulkhead.inner.wait(std::future::pending::<Result<(), _>>));

    let mut context = Context::from_waker(Waker::noop());
    assert!(waiting.as_mut().poll(&mut context).is_pending());
    assert_eq!(bulkhead.inner.queued.load(Ordering::SeqCst), 1);
    drop(waiting);

    assert_eq!(bulkhead.inner.queued.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn full_queue_rejects_without_acquiring() {
    let bulkhead = bulkhead(0);
    let acquire_calls = AtomicUsize::new(0);

    let result = bulkhead
        .inner
        .wait(|| {
            acquire_calls.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<Result<(), _>>()
        })
        .await;

    assert_eq!(
        result.unwrap_err(),
        BulkheadRejection::Full(BulkheadFull {
            max_concurrent: 1,
            max_queue: 0,
        })
    );
    assert_eq!(acquire_calls.load(Ordering::SeqCst), 0);
    assert_eq!(bulkhead.inner.queued.load(Ordering::SeqCst), 0);
    assert_eq!(bulkhead.stats().rejected_full, 1);
}

#[tokio::test(start_paused = true)]
async fn timed_out_wait_returns_queue_place() {
    let bulkhead = bulkhead(1);

    let result = bulkhead
        .inner
        .wait(std::future::pending::<Result<(), _>>)
        .await;

    assert!(matches!(
        result,
        Err(BulkheadRejection::QueueTimeout(timeout)) if timeout.waited == Duration::from_secs(1)
    ));
    assert_eq!(bulkhead.inner.queued.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn queue_accepts_exactly_max_queue_waiters() {
    let bulkhead = bulkhead(3);
    let mut context = Context::from_waker(Waker::noop());
    let mut waiters = Vec::new();

    for _ in 0..3 {
        let mut waiting = Box::pin(bulkhead.inner.wait(std::future::pending::<Result<(), _>>));
        assert!(waiting.as_mut().poll(&mut context).is_pending());
        waiters.push(waiting);
    }
    let mut extra = Box::pin(bulkhead.inner.wait(std::future::pending::<Result<(), _>>));
    let rejected = extra.as_mut().poll(&mut context);

    assert!(matches!(
        rejected,
        Poll::Ready(Err(BulkheadRejection::Full(_)))
    ));
    assert_eq!(bulkhead.stats().queued, 3);
    drop(waiters);
    assert_eq!(bulkhead.stats().queued, 0);
}
