//! Contract tests of `CircuitBreaker`: every transition, the open period and its hints, late
//! results, the two-step permit, listeners, reset, statistics, and half-open probe limits under
//! concurrency and cancellation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::Duration;

use resilience::{
    CircuitBreaker, CircuitBreakerConfig, CircuitBreakerStats, CircuitOpen, CircuitState, Error,
    Failure, FailureClass, FailureRateConfig, NeutralReason, Outcome, StateChange,
    TransitionReason,
};
use tokio::task::JoinSet;

// --- Allocation counting, for the closed-state hot path ---------------------------------------

/// Counts the allocations made by the current thread, so that tests running in parallel on other
/// threads do not disturb the count.
struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call forwards to the system allocator unchanged; the counter is a thread-local
// `Cell` with a const initializer, which neither allocates nor locks.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we pass on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with this layout, in `alloc` above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn round_trip_marker() -> u64 {
    0x5eed
}

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

// --- Helpers ------------------------------------------------------------------------------------

const TIMEOUT: Duration = Duration::from_secs(60);

fn config(
    failure_threshold: u32,
    success_threshold: u32,
    half_open_max: u32,
) -> CircuitBreakerConfig {
    CircuitBreakerConfig {
        failure_threshold,
        success_threshold,
        timeout: TIMEOUT,
        half_open_max_requests: half_open_max,
        failure_rate: None,
    }
}

fn rate_config(window_size: u32, minimum_calls: u32, threshold: f64) -> CircuitBreakerConfig {
    CircuitBreakerConfig {
        failure_rate: Some(FailureRateConfig {
            window_size,
            minimum_calls,
            threshold,
        }),
        ..config(1, 1, 1)
    }
}

fn breaker(config: CircuitBreakerConfig) -> CircuitBreaker {
    CircuitBreaker::new(config).unwrap()
}

/// Builds a breaker whose state changes are collected in the returned list.
fn recorded_breaker(
    config: CircuitBreakerConfig,
) -> (CircuitBreaker, Arc<Mutex<Vec<StateChange>>>) {
    let changes = Arc::new(Mutex::new(Vec::new()));
    let sink = changes.clone();
    let breaker = CircuitBreaker::builder(config)
        .name("test")
        .on_state_change(move |change| sink.lock().unwrap().push(change.clone()))
        .build()
        .unwrap();
    (breaker, changes)
}

fn server_failure() -> Outcome {
    Outcome::failure(FailureClass::Server)
}

fn failure_with_hint(hint: Duration) -> Outcome {
    Outcome::Failure(Failure::new(FailureClass::RateLimited).with_retry_after(Some(hint)))
}

/// Admits one call and records `outcome` on it at once.
fn record(breaker: &CircuitBreaker, outcome: Outcome) {
    breaker
        .try_acquire()
        .expect("the circuit should admit this call")
        .record(outcome);
}

/// Records `failures` failures that count against the circuit.
fn fail(breaker: &CircuitBreaker, failures: u32) {
    for _ in 0..failures {
        record(breaker, server_failure());
    }
}

/// The operations in these tests return the outcome they want to be classified as.
fn classify(result: &Result<u32, Outcome>) -> Outcome {
    match result {
        Ok(_) => Outcome::Success,
        Err(outcome) => *outcome,
    }
}

fn transition(from: CircuitState, to: CircuitState, reason: TransitionReason) -> StateChange {
    StateChange { from, to, reason }
}

/// Opens a fresh breaker with `config` and moves it to half-open by letting the open period pass.
async fn half_open(config: CircuitBreakerConfig) -> CircuitBreaker {
    let timeout = config.timeout;
    let breaker = breaker(config);
    let threshold = breaker.config().failure_threshold;
    fail(&breaker, threshold);
    assert_eq!(breaker.state(), CircuitState::Open);
    tokio::time::advance(timeout).await;
    drop(breaker.try_acquire().expect("the open period has passed"));
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    breaker
}

/// Runs `body` on its own thread and fails the test if it has not finished within a minute,
/// so that a deadlock fails instead of hanging the test run.
fn within_a_minute(body: impl FnOnce() + Send + 'static) {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        body();
        let _ = done.send(());
    });
    finished
        .recv_timeout(Duration::from_secs(60))
        .expect("the test body deadlocked or panicked");
}

// --- Sharing ------------------------------------------------------------------------------------

#[test]
fn breaker_is_send_sync_and_clone() {
    fn assert_shareable<T: Send + Sync + Clone + 'static>() {}
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_shareable::<CircuitBreaker>();
    assert_shareable::<CircuitBreakerConfig>();
    assert_send_sync::<resilience::CircuitPermit>();
}

#[tokio::test(start_paused = true)]
async fn clones_share_state() {
    let breaker = breaker(config(2, 1, 1));
    let clone = breaker.clone();

    fail(&clone, 2);

    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(breaker.stats().failures, 2);
    breaker.reset();
    assert_eq!(clone.state(), CircuitState::Closed);
}

// --- Closed to open -----------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn opens_after_consecutive_failures() {
    let (breaker, changes) = recorded_breaker(config(3, 1, 1));

    fail(&breaker, 2);
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(breaker.stats().consecutive_failures, 2);
    fail(&breaker, 1);

    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(breaker.stats().consecutive_failures, 3);
    assert_eq!(
        *changes.lock().unwrap(),
        [transition(
            CircuitState::Closed,
            CircuitState::Open,
            TransitionReason::ConsecutiveFailures { failures: 3 }
        )]
    );
}

#[tokio::test(start_paused = true)]
async fn success_resets_consecutive_failures() {
    let breaker = breaker(config(3, 1, 1));

    fail(&breaker, 2);
    record(&breaker, Outcome::Success);
    fail(&breaker, 2);
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(breaker.stats().consecutive_failures, 2);

    fail(&breaker, 1);
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn open_circuit_rejects_without_running() {
    let breaker = breaker(config(1, 1, 1));
    fail(&breaker, 1);
    let runs = AtomicUsize::new(0);

    let result = breaker
        .execute(|| async {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ()>(())
        })
        .await;

    let Err(Error::CircuitOpen(open)) = result else {
        panic!("expected a rejection, got {result:?}");
    };
    assert_eq!(open.remaining, TIMEOUT);
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    assert_eq!(breaker.stats().rejections, 1);
}

#[tokio::test(start_paused = true)]
async fn neutral_outcomes_never_open() {
    let breaker = breaker(config(1, 1, 1));

    for _ in 0..100 {
        record(&breaker, Outcome::Neutral(NeutralReason::Cancelled));
        record(&breaker, Outcome::Neutral(NeutralReason::CallerError));
    }

    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(breaker.stats().neutral, 200);
    assert_eq!(breaker.stats().failures, 0);
    assert_eq!(breaker.stats().consecutive_failures, 0);
}

#[tokio::test(start_paused = true)]
async fn non_tripping_failures_never_open() {
    let breaker = breaker(config(1, 1, 1));
    let local = Outcome::Failure(Failure::new(FailureClass::Rejected).trips_circuit(false));
    let hinted = Outcome::Failure(
        Failure::new(FailureClass::RateLimited)
            .trips_circuit(false)
            .with_retry_after(Some(Duration::from_secs(600))),
    );

    for _ in 0..100 {
        record(&breaker, local);
        record(&breaker, hinted);
    }

    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(breaker.stats().ignored_failures, 200);
    assert_eq!(breaker.stats().failures, 0);
}

#[tokio::test(start_paused = true)]
async fn rate_opens_only_after_minimum_calls() {
    let (breaker, changes) = recorded_breaker(rate_config(10, 5, 0.5));

    // Four failures out of four calls: a rate of 1, but below the minimum of 5 calls.
    fail(&breaker, 4);
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(breaker.stats().window_calls, 4);
    assert_eq!(breaker.stats().window_failures, 4);

    fail(&breaker, 1);
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(
        *changes.lock().unwrap(),
        [transition(
            CircuitState::Closed,
            CircuitState::Open,
            TransitionReason::FailureRate {
                failures: 5,
                calls: 5
            }
        )]
    );
}

#[tokio::test(start_paused = true)]
async fn rate_reached_by_minimum_call_opens() {
    let (breaker, changes) = recorded_breaker(rate_config(10, 5, 0.5));

    // The fifth call is a success, yet it completes the minimum with 4 failures in 5 calls.
    fail(&breaker, 4);
    record(&breaker, Outcome::Success);

    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(
        *changes.lock().unwrap(),
        [transition(
            CircuitState::Closed,
            CircuitState::Open,
            TransitionReason::FailureRate {
                failures: 4,
                calls: 5
            }
        )]
    );
}

#[tokio::test(start_paused = true)]
async fn rate_below_threshold_stays_closed() {
    let breaker = breaker(rate_config(10, 4, 0.5));

    // Two successes, then a failure: any 10 consecutive calls hold at most 4 failures.
    for _ in 0..20 {
        record(&breaker, Outcome::Success);
        record(&breaker, Outcome::Success);
        fail(&breaker, 1);
    }

    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(breaker.stats().window_calls, 10);
    assert_eq!(breaker.stats().failures, 20);
}

#[tokio::test(start_paused = true)]
async fn rate_window_slides() {
    let breaker = breaker(rate_config(4, 4, 0.75));

    // F F S S leaves 2 failures in 4 calls; S S then pushes both failures out.
    fail(&breaker, 2);
    record(&breaker, Outcome::Success);
    record(&breaker, Outcome::Success);
    record(&breaker, Outcome::Success);
    record(&breaker, Outcome::Success);
    assert_eq!(breaker.stats().window_calls, 4);
    assert_eq!(breaker.stats().window_failures, 0);

    // Two failures make S S F F: a rate of 1/2, still closed. A third makes S F F F: 3/4.
    fail(&breaker, 2);
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(breaker.stats().window_failures, 2);
    fail(&breaker, 1);
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn rate_mode_ignores_consecutive_threshold() {
    // failure_threshold is 1, but with a failure rate only the rate decides.
    let breaker = breaker(rate_config(10, 3, 1.0));

    fail(&breaker, 2);
    assert_eq!(breaker.state(), CircuitState::Closed);
    fail(&breaker, 1);
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn rate_window_ignores_neutral_outcomes() {
    let breaker = breaker(rate_config(4, 2, 1.0));

    fail(&breaker, 1);
    record(&breaker, Outcome::Neutral(NeutralReason::CallerError));
    record(
        &breaker,
        Outcome::Failure(Failure::new(FailureClass::Rejected).trips_circuit(false)),
    );
    assert_eq!(breaker.stats().window_calls, 1);
    assert_eq!(breaker.state(), CircuitState::Closed);

    fail(&breaker, 1);
    assert_eq!(breaker.state(), CircuitState::Open);
}

// --- Open to half-open --------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn half_open_after_timeout() {
    let (breaker, changes) = recorded_breaker(config(1, 1, 1));
    fail(&breaker, 1);

    tokio::time::advance(TIMEOUT - Duration::from_millis(1)).await;
    let early = breaker.try_acquire();
    assert_eq!(
        early.err(),
        Some(CircuitOpen {
            remaining: Duration::from_millis(1)
        })
    );
    assert_eq!(breaker.state(), CircuitState::Open);

    tokio::time::advance(Duration::from_millis(1)).await;
    let probe = breaker.try_acquire().expect("the open period has passed");

    assert!(probe.is_probe());
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    assert_eq!(breaker.stats().half_open_in_flight, 1);
    assert_eq!(
        changes.lock().unwrap()[1],
        transition(
            CircuitState::Open,
            CircuitState::HalfOpen,
            TransitionReason::OpenTimeoutElapsed { open_for: TIMEOUT }
        )
    );
}

#[tokio::test(start_paused = true)]
async fn remaining_open_counts_down() {
    let breaker = breaker(config(1, 1, 1));
    assert_eq!(breaker.remaining_open(), None);
    fail(&breaker, 1);

    // (time to advance, then the remaining open time)
    let steps = [
        (0, 60_000),
        (1, 59_999),
        (29_999, 30_000),
        (29_000, 1_000),
        (999, 1),
    ];
    for (advance_ms, remaining_ms) in steps {
        tokio::time::advance(Duration::from_millis(advance_ms)).await;
        let remaining = Duration::from_millis(remaining_ms);

        let open = breaker.try_acquire().expect_err("the circuit is open");

        assert_eq!(open.remaining, remaining);
        assert_eq!(breaker.remaining_open(), Some(remaining));
        assert_eq!(breaker.stats().remaining_open_ms, remaining_ms);
        let error: Error<()> = open.into();
        assert_eq!(error.retry_after(), Some(remaining));
    }
}

// --- Half-open to closed or open ----------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn probes_close_after_success_threshold() {
    let breaker = half_open(config(1, 2, 3)).await;

    record(&breaker, Outcome::Success);
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    record(&breaker, Outcome::Success);

    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(breaker.stats().half_open_in_flight, 0);
    assert_eq!(breaker.stats().consecutive_failures, 0);
}

#[tokio::test(start_paused = true)]
async fn one_slot_closes_after_three_probes() {
    let (breaker, changes) = recorded_breaker(config(1, 3, 1));
    fail(&breaker, 1);
    tokio::time::advance(TIMEOUT).await;

    for probe_number in 1..=3u32 {
        let probe = breaker.try_acquire().expect("a probe slot is free");
        assert!(probe.is_probe(), "probe {probe_number}");
        let busy = breaker.try_acquire();
        assert_eq!(
            busy.err(),
            Some(CircuitOpen {
                remaining: Duration::ZERO
            })
        );
        probe.record(Outcome::Success);
    }

    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(
        changes.lock().unwrap().last(),
        Some(&transition(
            CircuitState::HalfOpen,
            CircuitState::Closed,
            TransitionReason::ProbesSucceeded { successes: 3 }
        ))
    );
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_at_most_max_probes() {
    let breaker = half_open(config(1, 10, 3)).await;

    let probes: Vec<_> = (0..3)
        .map(|_| breaker.try_acquire().expect("a probe slot is free"))
        .collect();
    let rejected = breaker.try_acquire();

    assert_eq!(
        rejected.err(),
        Some(CircuitOpen {
            remaining: Duration::ZERO
        })
    );
    assert_eq!(breaker.stats().half_open_in_flight, 3);
    drop(probes);
    assert_eq!(breaker.stats().half_open_in_flight, 0);
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn probe_failure_reopens() {
    let (breaker, changes) = recorded_breaker(config(1, 3, 3));
    fail(&breaker, 1);
    tokio::time::advance(TIMEOUT).await;
    record(&breaker, Outcome::Success);
    record(&breaker, Outcome::Success);

    tokio::time::advance(Duration::from_secs(5)).await;
    fail(&breaker, 1);

    assert_eq!(breaker.state(), CircuitState::Open);
    // The open period starts again from the failed probe.
    assert_eq!(breaker.remaining_open(), Some(TIMEOUT));
    assert_eq!(
        changes.lock().unwrap().last(),
        Some(&transition(
            CircuitState::HalfOpen,
            CircuitState::Open,
            TransitionReason::ProbeFailed
        ))
    );
    // The successes of the earlier half-open period do not carry over.
    tokio::time::advance(TIMEOUT).await;
    record(&breaker, Outcome::Success);
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn non_tripping_probe_frees_slot_only() {
    let breaker = half_open(config(1, 1, 1)).await;

    record(
        &breaker,
        Outcome::Failure(Failure::new(FailureClass::Rejected).trips_circuit(false)),
    );
    record(&breaker, Outcome::Neutral(NeutralReason::CallerError));
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    assert_eq!(breaker.stats().half_open_in_flight, 0);

    record(&breaker, Outcome::Success);
    assert_eq!(breaker.state(), CircuitState::Closed);
}

// --- Open period and hints ----------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn open_period_is_max_of_timeout_and_hint() {
    for (hint_s, period_s) in [(10, 60), (60, 60), (90, 90)] {
        let breaker = breaker(config(1, 1, 1));

        record(&breaker, failure_with_hint(Duration::from_secs(hint_s)));
        assert_eq!(
            breaker.remaining_open(),
            Some(Duration::from_secs(period_s)),
            "hint {hint_s} s"
        );

        tokio::time::advance(Duration::from_secs(period_s) - Duration::from_millis(1)).await;
        assert!(breaker.try_acquire().is_err(), "hint {hint_s} s");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(breaker.try_acquire().is_ok(), "hint {hint_s} s");
    }
}

#[tokio::test(start_paused = true)]
async fn probe_failure_hint_sets_open_period() {
    let breaker = half_open(config(1, 1, 1)).await;

    record(&breaker, failure_with_hint(Duration::from_secs(300)));

    assert_eq!(breaker.remaining_open(), Some(Duration::from_secs(300)));
}

#[tokio::test(start_paused = true)]
async fn later_hint_only_extends_open_period() {
    let breaker = breaker(config(2, 1, 1));
    let late = [
        breaker.try_acquire().unwrap(),
        breaker.try_acquire().unwrap(),
        breaker.try_acquire().unwrap(),
    ];
    fail(&breaker, 2);
    assert_eq!(breaker.remaining_open(), Some(TIMEOUT));
    let [shorter, longer, shortest] = late;

    // 10 s later, a hint that ends before the open period does not shorten it.
    tokio::time::advance(Duration::from_secs(10)).await;
    shorter.record(failure_with_hint(Duration::from_secs(20)));
    assert_eq!(breaker.remaining_open(), Some(Duration::from_secs(50)));

    // A hint that ends after it extends it.
    longer.record(failure_with_hint(Duration::from_secs(120)));
    assert_eq!(breaker.remaining_open(), Some(Duration::from_secs(120)));

    shortest.record(failure_with_hint(Duration::from_secs(1)));
    assert_eq!(breaker.remaining_open(), Some(Duration::from_secs(120)));
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(breaker.stats().late_results, 3);

    tokio::time::advance(Duration::from_secs(120) - Duration::from_millis(1)).await;
    assert!(breaker.try_acquire().is_err());
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(breaker.try_acquire().is_ok());
}

#[tokio::test(start_paused = true)]
async fn late_non_tripping_hint_is_ignored() {
    let breaker = breaker(config(1, 1, 1));
    let admitted_while_closed = breaker.try_acquire().unwrap();
    fail(&breaker, 1);

    // A failure that does not count against the circuit says nothing about the provider.
    admitted_while_closed.record(Outcome::Failure(
        Failure::new(FailureClass::Rejected)
            .trips_circuit(false)
            .with_retry_after(Some(Duration::from_secs(600))),
    ));

    assert_eq!(breaker.remaining_open(), Some(TIMEOUT));
    assert_eq!(breaker.stats().ignored_failures, 1);
    assert_eq!(breaker.stats().late_results, 1);
}

// --- Late results -------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn late_success_does_not_close_open_circuit() {
    let breaker = breaker(config(1, 1, 1));
    let admitted_while_closed = breaker.try_acquire().unwrap();
    fail(&breaker, 1);

    admitted_while_closed.record(Outcome::Success);

    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(breaker.stats().successes, 1);
    assert_eq!(breaker.stats().late_results, 1);
}

#[tokio::test(start_paused = true)]
async fn late_closed_results_do_not_touch_half_open() {
    let breaker = breaker(config(1, 1, 1));
    let admitted_while_closed = [
        breaker.try_acquire().unwrap(),
        breaker.try_acquire().unwrap(),
    ];
    fail(&breaker, 1);
    tokio::time::advance(TIMEOUT).await;
    let probe = breaker.try_acquire().unwrap();
    let [late_failure, late_success] = admitted_while_closed;

    late_failure.record(server_failure());
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    late_success.record(Outcome::Success);
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    assert_eq!(breaker.stats().half_open_in_flight, 1);

    probe.record(Outcome::Success);
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(breaker.stats().late_results, 2);
}

#[tokio::test(start_paused = true)]
async fn late_probe_failure_does_not_reopen() {
    let breaker = half_open(config(1, 1, 2)).await;
    let slow_probe = breaker.try_acquire().unwrap();
    record(&breaker, Outcome::Success);
    assert_eq!(breaker.state(), CircuitState::Closed);

    slow_probe.record(server_failure());

    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(breaker.stats().consecutive_failures, 0);
    assert_eq!(breaker.stats().failures, 2);
    assert_eq!(breaker.stats().late_results, 1);
}

#[tokio::test(start_paused = true)]
async fn late_probe_does_not_count_in_next_half_open() {
    let breaker = half_open(config(1, 2, 2)).await;
    let slow_probe = breaker.try_acquire().unwrap();
    fail(&breaker, 1);
    tokio::time::advance(TIMEOUT).await;
    let fresh_probe = breaker.try_acquire().unwrap();

    // The old probe gives back its own slot but does not count as a success of the new period.
    slow_probe.record(Outcome::Success);
    assert_eq!(breaker.stats().half_open_in_flight, 1);
    fresh_probe.record(Outcome::Success);
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    record(&breaker, Outcome::Success);
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn reopened_circuit_counts_running_probes() {
    let breaker = half_open(config(1, 1, 2)).await;
    let slow_probe = breaker.try_acquire().unwrap();
    fail(&breaker, 1);
    tokio::time::advance(TIMEOUT).await;

    // The slow probe of the earlier half-open period still runs, so one slot is left.
    let fresh_probe = breaker.try_acquire().expect("one slot is free");
    assert!(fresh_probe.is_probe());
    assert_eq!(breaker.stats().half_open_in_flight, 2);
    assert_eq!(
        breaker.try_acquire().err(),
        Some(CircuitOpen {
            remaining: Duration::ZERO
        })
    );

    slow_probe.record(Outcome::Neutral(NeutralReason::Cancelled));
    assert_eq!(breaker.stats().half_open_in_flight, 1);
    let next_probe = breaker
        .try_acquire()
        .expect("the slow probe's slot is free");
    assert!(next_probe.is_probe());
    drop((fresh_probe, next_probe));
    assert_eq!(breaker.stats().half_open_in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn probe_running_across_close_counts_later() {
    let breaker = half_open(config(1, 1, 1)).await;
    let slow_probe = breaker.try_acquire().unwrap();
    // Reset closes the circuit while the probe runs; the probe still holds its slot.
    breaker.reset();
    fail(&breaker, 1);
    tokio::time::advance(TIMEOUT).await;

    assert_eq!(
        breaker.try_acquire().err(),
        Some(CircuitOpen {
            remaining: Duration::ZERO
        })
    );
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    drop(slow_probe);
    assert!(breaker.try_acquire().unwrap().is_probe());
}

// --- Two-step permit ----------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn dropped_permit_is_neutral() {
    let breaker = breaker(config(1, 1, 1));

    drop(breaker.try_acquire().unwrap());

    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(breaker.stats().neutral, 1);
}

#[tokio::test(start_paused = true)]
async fn dropped_probe_frees_slot() {
    let breaker = half_open(config(1, 1, 1)).await;
    let probe = breaker.try_acquire().unwrap();
    assert!(breaker.try_acquire().is_err());

    drop(probe);

    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    assert_eq!(breaker.stats().half_open_in_flight, 0);
    let next = breaker.try_acquire().expect("the slot is free again");
    assert!(next.is_probe());
}

#[tokio::test(start_paused = true)]
async fn dropped_execute_frees_probe_slot() {
    let breaker = half_open(config(1, 1, 1)).await;
    let ran = AtomicUsize::new(0);

    let timed_out = tokio::time::timeout(
        Duration::from_secs(1),
        breaker.execute(|| async {
            ran.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<Result<(), ()>>().await
        }),
    )
    .await;

    assert!(timed_out.is_err());
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    assert_eq!(breaker.stats().half_open_in_flight, 0);
    assert_eq!(breaker.stats().neutral, 2);
    assert!(breaker.try_acquire().unwrap().is_probe());
}

#[tokio::test(start_paused = true)]
async fn execute_classifies_with_classifier() {
    let breaker = breaker(config(2, 1, 1));

    let neutral = breaker
        .execute_with(&classify, || async {
            Err(Outcome::Neutral(NeutralReason::CallerError))
        })
        .await;
    let failed = breaker
        .execute_with(&classify, || async { Err(server_failure()) })
        .await;
    let ok = breaker.execute_with(&classify, || async { Ok(5) }).await;

    assert_eq!(
        neutral.unwrap_err().into_operation(),
        Some(Outcome::Neutral(NeutralReason::CallerError))
    );
    assert_eq!(failed.unwrap_err().operation(), Some(&server_failure()));
    assert_eq!(ok.unwrap(), 5);
    assert_eq!(breaker.stats().neutral, 1);
    assert_eq!(breaker.stats().failures, 1);
    assert_eq!(breaker.stats().successes, 1);
    assert_eq!(breaker.stats().consecutive_failures, 0);
}

#[tokio::test(start_paused = true)]
async fn closed_permit_is_not_probe() {
    let breaker = breaker(config(1, 1, 1));

    let permit = breaker.try_acquire().unwrap();

    assert!(!permit.is_probe());
    permit.record(Outcome::Success);
}

// --- Listener -----------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn listener_receives_changes_in_order() {
    let (breaker, changes) = recorded_breaker(config(2, 2, 2));

    fail(&breaker, 2);
    tokio::time::advance(TIMEOUT).await;
    fail(&breaker, 1);
    tokio::time::advance(Duration::from_secs(90)).await;
    record(&breaker, Outcome::Success);
    record(&breaker, Outcome::Success);
    fail(&breaker, 2);
    breaker.reset();
    breaker.reset();

    use CircuitState::{Closed, HalfOpen, Open};
    assert_eq!(
        *changes.lock().unwrap(),
        [
            transition(
                Closed,
                Open,
                TransitionReason::ConsecutiveFailures { failures: 2 }
            ),
            transition(
                Open,
                HalfOpen,
                TransitionReason::OpenTimeoutElapsed { open_for: TIMEOUT }
            ),
            transition(HalfOpen, Open, TransitionReason::ProbeFailed),
            transition(
                Open,
                HalfOpen,
                TransitionReason::OpenTimeoutElapsed {
                    open_for: Duration::from_secs(90)
                }
            ),
            transition(
                HalfOpen,
                Closed,
                TransitionReason::ProbesSucceeded { successes: 2 }
            ),
            transition(
                Closed,
                Open,
                TransitionReason::ConsecutiveFailures { failures: 2 }
            ),
            transition(Open, Closed, TransitionReason::Reset),
        ]
    );
}

#[test]
fn listener_calling_back_does_not_deadlock() {
    within_a_minute(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let handle: Arc<OnceLock<CircuitBreaker>> = Arc::new(OnceLock::new());
            let seen = Arc::new(Mutex::new(Vec::new()));
            let listener_handle = handle.clone();
            let listener_seen = seen.clone();
            let breaker = CircuitBreaker::builder(config(1, 1, 2))
                .on_state_change(move |change| {
                    let breaker = listener_handle.get().expect("set before the first call");
                    let state = breaker.state();
                    let _stats = breaker.stats();
                    let _remaining = breaker.remaining_open();
                    listener_seen.lock().unwrap().push((change.clone(), state));
                    match change.to {
                        // Probe from inside the listener, then drop the probe unrecorded.
                        CircuitState::HalfOpen => drop(breaker.try_acquire()),
                        // Close an opened circuit at once, the second time it opens.
                        CircuitState::Open if change.reason == TransitionReason::ProbeFailed => {
                            breaker.reset();
                        }
                        _ => {}
                    }
                })
                .build()
                .unwrap();
            handle.set(breaker.clone()).unwrap();

            fail(&breaker, 1);
            tokio::time::advance(TIMEOUT).await;
            fail(&breaker, 1);

            assert_eq!(breaker.state(), CircuitState::Closed);
            let seen = seen.lock().unwrap();
            let changes: Vec<_> = seen
                .iter()
                .map(|(change, _)| (change.from, change.to))
                .collect();
            use CircuitState::{Closed, HalfOpen, Open};
            assert_eq!(
                changes,
                [
                    (Closed, Open),
                    (Open, HalfOpen),
                    (HalfOpen, Open),
                    (Open, Closed)
                ]
            );
            // The listener ran after each change took effect.
            assert_eq!(seen[0].1, Open);
            assert_eq!(seen[1].1, HalfOpen);
            assert_eq!(breaker.stats().half_open_in_flight, 0);
        });
    });
}

#[test]
fn listeners_on_many_threads_do_not_deadlock() {
    within_a_minute(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .build()
            .unwrap();
        runtime.block_on(async {
            let handle: Arc<OnceLock<CircuitBreaker>> = Arc::new(OnceLock::new());
            let delivered = Arc::new(AtomicUsize::new(0));
            let listener_handle = handle.clone();
            let listener_delivered = delivered.clone();
            // A 1 ns open period lets the circuit cycle without a clock: every call after an
            // opening finds the period over.
            let breaker = CircuitBreaker::builder(CircuitBreakerConfig {
                timeout: Duration::from_nanos(1),
                ..config(1, 1, 2)
            })
            .on_state_change(move |change| {
                let breaker = listener_handle.get().expect("set before the first call");
                listener_delivered.fetch_add(1, Ordering::SeqCst);
                let _ = breaker.stats();
                if let Ok(permit) = breaker.try_acquire() {
                    permit.record(Outcome::Neutral(NeutralReason::Cancelled));
                }
                if change.to == CircuitState::Open && fastrand::u8(..) < 32 {
                    breaker.reset();
                }
            })
            .build()
            .unwrap();
            handle.set(breaker.clone()).unwrap();

            let mut tasks = JoinSet::new();
            for task in 0..8u64 {
                let breaker = breaker.clone();
                tasks.spawn(async move {
                    let mut rng = fastrand::Rng::with_seed(task);
                    for _ in 0..2_000 {
                        if let Ok(permit) = breaker.try_acquire() {
                            let outcome = if rng.bool() {
                                Outcome::Success
                            } else {
                                server_failure()
                            };
                            permit.record(outcome);
                        }
                        if rng.u8(..) < 8 {
                            tokio::task::yield_now().await;
                        }
                    }
                });
            }
            while let Some(joined) = tasks.join_next().await {
                joined.unwrap();
            }
            assert!(delivered.load(Ordering::SeqCst) > 0);
        });
    });
}

// --- Reset and statistics -----------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn reset_closes_and_clears() {
    let breaker = breaker(rate_config(10, 2, 0.5));
    let admitted_before_reset = breaker.try_acquire().unwrap();
    record(&breaker, Outcome::Success);
    fail(&breaker, 1);
    assert_eq!(breaker.state(), CircuitState::Open);

    breaker.reset();

    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(
        breaker.stats(),
        CircuitBreakerStats {
            state: CircuitState::Closed,
            consecutive_failures: 0,
            half_open_in_flight: 0,
            remaining_open_ms: 0,
            successes: 0,
            failures: 0,
            ignored_failures: 0,
            neutral: 0,
            rejections: 0,
            late_results: 0,
            transitions: 0,
            window_calls: 0,
            window_failures: 0,
        }
    );
    // A call admitted before the reset changes statistics only.
    admitted_before_reset.record(server_failure());
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(breaker.stats().window_calls, 0);
    assert_eq!(breaker.stats().late_results, 1);
}

#[tokio::test(start_paused = true)]
async fn reset_frees_half_open_slots() {
    let breaker = half_open(config(1, 1, 1)).await;
    let probe = breaker.try_acquire().unwrap();

    breaker.reset();
    probe.record(server_failure());

    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(breaker.stats().consecutive_failures, 0);
}

#[tokio::test(start_paused = true)]
async fn statistics_count_every_outcome() {
    let breaker = breaker(config(3, 1, 1));

    record(&breaker, Outcome::Success);
    record(&breaker, Outcome::Success);
    record(&breaker, Outcome::Neutral(NeutralReason::Cancelled));
    record(
        &breaker,
        Outcome::Failure(Failure::new(FailureClass::Rejected).trips_circuit(false)),
    );
    fail(&breaker, 3);
    let rejected = [
        breaker.try_acquire().is_err(),
        breaker.try_acquire().is_err(),
    ];
    tokio::time::advance(Duration::from_secs(15)).await;

    assert_eq!(rejected, [true, true]);
    assert_eq!(
        breaker.stats(),
        CircuitBreakerStats {
            state: CircuitState::Open,
            consecutive_failures: 3,
            half_open_in_flight: 0,
            remaining_open_ms: 45_000,
            successes: 2,
            failures: 3,
            ignored_failures: 1,
            neutral: 1,
            rejections: 2,
            late_results: 0,
            transitions: 1,
            window_calls: 0,
            window_failures: 0,
        }
    );
}

// --- Hot path -----------------------------------------------------------------------------------

#[test]
fn closed_path_does_not_allocate() {
    for config in [config(1_000, 1, 1), rate_config(100, 100, 1.0)] {
        let breaker = breaker(config);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();

        // Check that the counter counts this thread's allocations.
        let before = allocations();
        drop(std::hint::black_box(Box::new(round_trip_marker())));
        assert_eq!(allocations() - before, 1);

        let before = allocations();
        for round in 0..1_000 {
            let outcome = if round % 2 == 0 {
                Outcome::Success
            } else {
                server_failure()
            };
            breaker.try_acquire().unwrap().record(outcome);
        }
        let two_step = allocations() - before;
        let with_execute = runtime.block_on(async {
            let before = allocations();
            for _ in 0..1_000 {
                let result = breaker.execute(|| async { Ok::<_, ()>(()) }).await;
                assert!(result.is_ok());
            }
            allocations() - before
        });

        assert_eq!(two_step, 0, "{:?}", breaker.config());
        assert_eq!(with_execute, 0, "{:?}", breaker.config());
        assert_eq!(breaker.state(), CircuitState::Closed);
    }
}

// --- Concurrency --------------------------------------------------------------------------------

/// Counts probes running at once and remembers the maximum.
#[derive(Debug, Default)]
struct Gauge {
    running: AtomicUsize,
    max: AtomicUsize,
    entries: AtomicUsize,
}

impl Gauge {
    fn enter(self: &Arc<Self>) -> GaugeGuard {
        self.entries.fetch_add(1, Ordering::SeqCst);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        GaugeGuard(self.clone())
    }
}

struct GaugeGuard(Arc<Gauge>);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Builds a breaker that is half-open and stays half-open, because the success threshold is out of
/// reach and the probes in these tests never end in a failure that trips.
async fn sticky_half_open(half_open_max: u32) -> CircuitBreaker {
    let breaker = breaker(CircuitBreakerConfig {
        timeout: Duration::from_nanos(1),
        ..config(
            1,
            resilience::circuit_breaker::MAX_HALF_OPEN_COUNT,
            half_open_max,
        )
    });
    fail(&breaker, 1);
    // The 1 ns open period is over by the next call; spin until a call moves it to half-open.
    loop {
        if let Ok(probe) = breaker.try_acquire() {
            drop(probe);
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    breaker
}

fn probe_outcome(rng: &mut fastrand::Rng) -> Result<u32, Outcome> {
    match rng.u8(0..3) {
        0 => Ok(0),
        1 => Err(Outcome::Neutral(NeutralReason::CallerError)),
        _ => Err(Outcome::Failure(
            Failure::new(FailureClass::Rejected).trips_circuit(false),
        )),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_probes_never_exceed_limit() {
    const MAX_PROBES: u32 = 3;
    let breaker = sticky_half_open(MAX_PROBES).await;
    let gauge = Arc::new(Gauge::default());
    let mut tasks = JoinSet::new();

    for task in 0..64u64 {
        let breaker = breaker.clone();
        let gauge = gauge.clone();
        tasks.spawn(async move {
            let mut rng = fastrand::Rng::with_seed(task);
            let mut admitted = 0u32;
            for _ in 0..200 {
                let yields = rng.usize(0..8);
                let outcome = probe_outcome(&mut rng);
                let result = breaker
                    .execute_with(&classify, || async {
                        let _probe = gauge.enter();
                        for _ in 0..yields {
                            tokio::task::yield_now().await;
                        }
                        outcome
                    })
                    .await;
                if !matches!(result, Err(Error::CircuitOpen(_))) {
                    admitted += 1;
                }
                // The two-step permit shares the same slots.
                if let Ok(permit) = breaker.try_acquire() {
                    assert!(permit.is_probe());
                    let probe = gauge.enter();
                    tokio::task::yield_now().await;
                    drop(probe);
                    permit.record(Outcome::Success);
                }
            }
            admitted
        });
    }
    let mut admitted = 0;
    while let Some(joined) = tasks.join_next().await {
        admitted += joined.unwrap();
    }

    let max = gauge.max.load(Ordering::SeqCst);
    assert!(max <= MAX_PROBES as usize, "{max} probes ran at once");
    assert!(admitted > 0);
    let stats = breaker.stats();
    assert!(
        stats.rejections > 0,
        "no call was ever rejected: the test raced nothing"
    );
    assert_eq!(stats.state, CircuitState::HalfOpen);
    assert_eq!(stats.half_open_in_flight, 0);
    assert_eq!(gauge.running.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelled_probes_free_their_slots() {
    const MAX_PROBES: u32 = 2;
    const WAVES: usize = 40;
    const WAVE_SIZE: usize = 75;
    let breaker = sticky_half_open(MAX_PROBES).await;
    let gauge = Arc::new(Gauge::default());
    let finished = Arc::new(AtomicUsize::new(0));
    let mut rng = fastrand::Rng::with_seed(7);
    let mut aborted = 0;

    for _ in 0..WAVES {
        let mut tasks = JoinSet::new();
        let mut to_abort = Vec::new();
        for call in 0..WAVE_SIZE {
            let breaker = breaker.clone();
            let gauge = gauge.clone();
            let finished = finished.clone();
            let yields = rng.usize(0..30);
            let outcome = probe_outcome(&mut rng);
            let deadline = Duration::from_micros(rng.u64(0..500));
            let hold_permit = rng.bool();
            // Each call waits for a probe slot, keeps it for a random number of yields and
            // ends, unless it is cancelled first.
            let body = async move {
                loop {
                    if hold_permit {
                        let Ok(permit) = breaker.try_acquire() else {
                            tokio::task::yield_now().await;
                            continue;
                        };
                        let probe = gauge.enter();
                        for _ in 0..yields {
                            tokio::task::yield_now().await;
                        }
                        finished.fetch_add(1, Ordering::SeqCst);
                        // The probe stops running before its slot is given back.
                        drop(probe);
                        permit.record(classify(&outcome));
                        return;
                    }
                    let result = breaker
                        .execute_with(&classify, || async {
                            let _probe = gauge.enter();
                            for _ in 0..yields {
                                tokio::task::yield_now().await;
                            }
                            finished.fetch_add(1, Ordering::SeqCst);
                            outcome
                        })
                        .await;
                    if !matches!(result, Err(Error::CircuitOpen(_))) {
                        return;
                    }
                    tokio::task::yield_now().await;
                }
            };
            // A third dropped by a timeout, a third aborted, a third left to finish.
            match call % 3 {
                0 => {
                    tasks.spawn(async move {
                        let _ = tokio::time::timeout(deadline, body).await;
                    });
                }
                1 => to_abort.push(tasks.spawn(body)),
                _ => {
                    tasks.spawn(body);
                }
            }
        }

        // Let the wave run for a random while, then abort its third wherever each call is.
        for _ in 0..rng.usize(0..200) {
            tokio::task::yield_now().await;
        }
        for handle in to_abort {
            handle.abort();
        }
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(()) => {}
                Err(error) if error.is_cancelled() => aborted += 1,
                Err(error) => panic!("probe task panicked: {error}"),
            }
        }
    }

    let max = gauge.max.load(Ordering::SeqCst);
    let entries = gauge.entries.load(Ordering::SeqCst);
    let finished = finished.load(Ordering::SeqCst);
    assert!(max <= MAX_PROBES as usize, "{max} probes ran at once");
    assert!(entries > finished, "no probe was cancelled while it ran");
    assert!(aborted > 0, "no task was aborted before it finished");
    assert_eq!(gauge.running.load(Ordering::SeqCst), 0);
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    assert_eq!(breaker.stats().half_open_in_flight, 0);
    // Every slot is free: exactly MAX_PROBES probes can be taken at once.
    let probes: Vec<_> = (0..MAX_PROBES)
        .map(|_| breaker.try_acquire().expect("a probe slot leaked"))
        .collect();
    assert!(breaker.try_acquire().is_err());
    drop(probes);
    assert_eq!(breaker.stats().half_open_in_flight, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_failures_open_exactly_once() {
    let (breaker, changes) = recorded_breaker(config(10, 1, 1));
    let mut tasks = JoinSet::new();
    let permits: Vec<_> = (0..200).map(|_| breaker.try_acquire().unwrap()).collect();

    for permit in permits {
        tasks.spawn(async move {
            tokio::task::yield_now().await;
            permit.record(server_failure());
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.unwrap();
    }

    let stats = breaker.stats();
    assert_eq!(stats.state, CircuitState::Open);
    assert_eq!(stats.transitions, 1);
    assert_eq!(stats.failures, 200);
    assert_eq!(changes.lock().unwrap().len(), 1);
}

#[test]
fn racing_hints_all_extend_open_period() {
    const THREADS: u64 = 4;
    for round in 0..1_000 {
        let breaker = breaker(config(1, 1, 1));
        let barrier = Arc::new(std::sync::Barrier::new(THREADS as usize));
        let permits: Vec<_> = (0..THREADS)
            .map(|_| breaker.try_acquire().unwrap())
            .collect();

        // Every failure either opens the circuit or arrives just after it opened. Each hint is a
        // minimum wait, so the open period must last at least as long as the longest one.
        let threads: Vec<_> = permits
            .into_iter()
            .enumerate()
            .map(|(index, permit)| {
                let barrier = barrier.clone();
                let hint = Duration::from_secs(1_000 * (index as u64 + 1));
                std::thread::spawn(move || {
                    barrier.wait();
                    permit.record(failure_with_hint(hint));
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }

        let longest = Duration::from_secs(1_000 * THREADS);
        let remaining = breaker.remaining_open().expect("the circuit is open");
        assert!(
            remaining > longest - Duration::from_secs(60),
            "round {round}: open for {remaining:?}, but the longest hint was {longest:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reopening_never_exceeds_probe_limit() {
    const MAX_PROBES: u32 = 2;
    // With a 1 ns open period, a failed probe reopens the circuit and the next call finds it
    // half-open again, while probes of the earlier period may still be running.
    let breaker = breaker(CircuitBreakerConfig {
        timeout: Duration::from_nanos(1),
        ..config(1, 3, MAX_PROBES)
    });
    let gauge = Arc::new(Gauge::default());
    let mut tasks = JoinSet::new();

    for task in 0..32u64 {
        let breaker = breaker.clone();
        let gauge = gauge.clone();
        tasks.spawn(async move {
            let mut rng = fastrand::Rng::with_seed(task);
            for _ in 0..500 {
                let Ok(permit) = breaker.try_acquire() else {
                    tokio::task::yield_now().await;
                    continue;
                };
                let probe = permit.is_probe().then(|| gauge.enter());
                for _ in 0..rng.usize(0..10) {
                    tokio::task::yield_now().await;
                }
                drop(probe);
                let outcome = match rng.u8(0..4) {
                    0 => server_failure(),
                    1 => Outcome::Neutral(NeutralReason::Cancelled),
                    _ => Outcome::Success,
                };
                permit.record(outcome);
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.unwrap();
    }

    let max = gauge.max.load(Ordering::SeqCst);
    let stats = breaker.stats();
    assert!(
        max <= MAX_PROBES as usize,
        "{max} probes ran at once: {stats:?}"
    );
    assert!(
        stats.transitions > 10,
        "the circuit barely moved: {stats:?}"
    );
    assert_eq!(gauge.running.load(Ordering::SeqCst), 0);
}
