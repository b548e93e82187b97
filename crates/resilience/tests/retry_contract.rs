//! Contract tests of `Retry`: exact delays under paused time, what is retried, retry-after hints,
//! jitter bounds, statistics and shared state.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use resilience::{
    FailureClass, JitterMode, NeutralReason, Outcome, Retry, RetryConfig, RetryStats,
};
use tokio::time::Instant;

/// The operations in these tests return the outcome they want to be classified as.
fn classify(result: &Result<u32, Outcome>) -> Outcome {
    match result {
        Ok(_) => Outcome::Success,
        Err(outcome) => *outcome,
    }
}

fn server_failure() -> Outcome {
    Outcome::failure(FailureClass::Server)
}

fn failure_with_hint(hint: Duration) -> Outcome {
    Outcome::Failure(
        resilience::Failure::new(FailureClass::RateLimited).with_retry_after(Some(hint)),
    )
}

/// 100 ms doubling up to 1 s, without jitter.
fn exact_config(max_retries: u32) -> RetryConfig {
    RetryConfig {
        max_retries,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(1),
        backoff_multiplier: 2.0,
        jitter: false,
        ..RetryConfig::default()
    }
}

/// Runs `retry` on an operation that returns `outcomes[i]` on attempt `i` (the last one repeats)
/// and returns the result with the time of each attempt, relative to the start.
async fn run_recording(
    retry: &Retry,
    outcomes: Vec<Option<Outcome>>,
) -> (Result<u32, Outcome>, Vec<Duration>) {
    let start = Instant::now();
    let times = Mutex::new(Vec::new());
    let result = retry
        .execute_with(&classify, || {
            let mut times = times.lock().expect("times lock");
            let attempt = times.len();
            times.push(start.elapsed());
            let outcome = outcomes[attempt.min(outcomes.len() - 1)];
            async move {
                match outcome {
                    None => Ok(attempt as u32),
                    Some(outcome) => Err(outcome),
                }
            }
        })
        .await;
    let times = times.into_inner().expect("times lock");
    (result, times)
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// Returns the gaps between consecutive attempt times.
fn gaps(times: &[Duration]) -> Vec<Duration> {
    times.windows(2).map(|pair| pair[1] - pair[0]).collect()
}

#[test]
fn retry_is_send_sync_and_clone() {
    fn assert_shareable<T: Send + Sync + Clone + 'static>() {}
    assert_shareable::<Retry>();
    assert_shareable::<RetryConfig>();
}

#[tokio::test(start_paused = true)]
async fn delays_are_exact_without_jitter() {
    let retry = Retry::new(exact_config(5)).unwrap();

    let (result, times) = run_recording(&retry, vec![Some(server_failure())]).await;

    assert_eq!(result, Err(server_failure()));
    assert_eq!(
        gaps(&times),
        [ms(100), ms(200), ms(400), ms(800), ms(1_000)]
    );
    assert_eq!(times.last().copied(), Some(ms(2_500)));
}

#[tokio::test(start_paused = true)]
async fn fractional_multiplier_delays_are_exact() {
    let config = RetryConfig {
        max_retries: 4,
        initial_backoff: ms(400),
        max_backoff: ms(1_000),
        backoff_multiplier: 1.5,
        jitter: false,
        ..RetryConfig::default()
    };
    let retry = Retry::new(config).unwrap();

    let (_, times) = run_recording(&retry, vec![Some(server_failure())]).await;

    assert_eq!(gaps(&times), [ms(400), ms(600), ms(900), ms(1_000)]);
}

#[tokio::test(start_paused = true)]
async fn success_after_retries_is_returned() {
    let retry = Retry::new(exact_config(5)).unwrap();
    let outcomes = vec![Some(server_failure()), Some(server_failure()), None];

    let (result, times) = run_recording(&retry, outcomes).await;

    assert_eq!(result, Ok(2));
    assert_eq!(times, [ms(0), ms(100), ms(300)]);
    assert_eq!(
        retry.stats(),
        RetryStats {
            attempts: 3,
            retries: 2,
            succeeded_after_retry: 1,
            gave_up: 0,
        }
    );
}

#[tokio::test(start_paused = true)]
async fn first_attempt_success_is_not_counted_as_retry() {
    let retry = Retry::new(exact_config(5)).unwrap();

    let (result, times) = run_recording(&retry, vec![None]).await;

    assert_eq!(result, Ok(0));
    assert_eq!(times, [ms(0)]);
    assert_eq!(retry.stats().attempts, 1);
    assert_eq!(retry.stats().retries, 0);
    assert_eq!(retry.stats().succeeded_after_retry, 0);
}

#[tokio::test(start_paused = true)]
async fn max_retries_bounds_attempts() {
    for max_retries in [0, 1, 3, 7] {
        let retry = Retry::new(exact_config(max_retries)).unwrap();

        let (result, times) = run_recording(&retry, vec![Some(server_failure())]).await;

        assert_eq!(result, Err(server_failure()), "max_retries {max_retries}");
        assert_eq!(
            times.len() as u32,
            max_retries + 1,
            "max_retries {max_retries}"
        );
        assert_eq!(
            retry.stats(),
            RetryStats {
                attempts: u64::from(max_retries) + 1,
                retries: u64::from(max_retries),
                succeeded_after_retry: 0,
                gave_up: 1,
            },
            "max_retries {max_retries}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn non_retryable_failure_is_returned_at_once() {
    let retry = Retry::new(exact_config(5)).unwrap();
    let quota =
        Outcome::Failure(resilience::Failure::new(FailureClass::QuotaExhausted).retryable(false));

    let (result, times) = run_recording(&retry, vec![Some(quota), None]).await;

    assert_eq!(result, Err(quota));
    assert_eq!(times, [ms(0)]);
    assert_eq!(
        retry.stats(),
        RetryStats {
            attempts: 1,
            retries: 0,
            succeeded_after_retry: 0,
            gave_up: 0,
        }
    );
}

#[tokio::test(start_paused = true)]
async fn neutral_outcomes_are_not_retried() {
    for reason in [NeutralReason::Cancelled, NeutralReason::CallerError] {
        let retry = Retry::new(exact_config(5)).unwrap();
        let neutral = Outcome::Neutral(reason);

        let (result, times) = run_recording(&retry, vec![Some(neutral), None]).await;

        assert_eq!(result, Err(neutral), "{reason:?}");
        assert_eq!(times, [ms(0)], "{reason:?}");
        assert_eq!(retry.stats().retries, 0, "{reason:?}");
        assert_eq!(retry.stats().gave_up, 0, "{reason:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn failure_that_does_not_trip_is_still_retried() {
    let retry = Retry::new(exact_config(5)).unwrap();
    let local =
        Outcome::Failure(resilience::Failure::new(FailureClass::Transport).trips_circuit(false));

    let (result, times) = run_recording(&retry, vec![Some(local), None]).await;

    assert_eq!(result, Ok(1));
    assert_eq!(times, [ms(0), ms(100)]);
}

#[tokio::test(start_paused = true)]
async fn retry_after_hint_is_minimum_delay() {
    let retry = Retry::new(exact_config(5)).unwrap();
    let outcomes = vec![
        Some(failure_with_hint(ms(750))),
        // Shorter than the 200 ms backoff of the second retry: the backoff wins.
        Some(failure_with_hint(ms(50))),
        None,
    ];

    let (result, times) = run_recording(&retry, outcomes).await;

    assert_eq!(result, Ok(2));
    assert_eq!(gaps(&times), [ms(750), ms(200)]);
}

#[tokio::test(start_paused = true)]
async fn hint_equal_to_max_backoff_is_honoured() {
    let retry = Retry::new(exact_config(5)).unwrap();
    let outcomes = vec![Some(failure_with_hint(ms(1_000))), None];

    let (result, times) = run_recording(&retry, outcomes).await;

    assert_eq!(result, Ok(1));
    assert_eq!(gaps(&times), [ms(1_000)]);
}

#[tokio::test(start_paused = true)]
async fn hint_above_max_backoff_stops_retries() {
    let retry = Retry::new(exact_config(5)).unwrap();
    let too_long = failure_with_hint(ms(1_001));
    let start = Instant::now();

    let (result, times) = run_recording(&retry, vec![Some(too_long), None]).await;

    assert_eq!(result, Err(too_long));
    assert_eq!(times, [ms(0)]);
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(
        retry.stats(),
        RetryStats {
            attempts: 1,
            retries: 0,
            succeeded_after_retry: 0,
            gave_up: 1,
        }
    );
}

#[tokio::test(start_paused = true)]
async fn hint_above_max_backoff_after_retries_stops() {
    let retry = Retry::new(exact_config(5)).unwrap();
    let too_long = failure_with_hint(Duration::from_secs(30));
    let outcomes = vec![Some(server_failure()), Some(too_long), None];

    let (result, times) = run_recording(&retry, outcomes).await;

    assert_eq!(result, Err(too_long));
    assert_eq!(times, [ms(0), ms(100)]);
    assert_eq!(retry.stats().gave_up, 1);
    assert_eq!(retry.stats().retries, 1);
}

#[tokio::test(start_paused = true)]
async fn full_jitter_delays_stay_within_base() {
    let config = RetryConfig {
        max_retries: 1,
        initial_backoff: ms(100),
        max_backoff: ms(1_000),
        jitter: true,
        jitter_mode: JitterMode::Full,
        ..RetryConfig::default()
    };
    let retry = Retry::new(config).unwrap();
    let mut delays = Vec::new();

    for _ in 0..200 {
        let (_, times) = run_recording(&retry, vec![Some(server_failure())]).await;
        delays.extend(gaps(&times));
    }

    assert_eq!(delays.len(), 200);
    assert!(delays.iter().all(|delay| *delay <= ms(100)), "{delays:?}");
    // Full jitter spreads delays over [0, 100 ms]; proportional jitter of 0.1 would keep them in
    // [90, 110] ms. The chance that 200 uniform draws all fall on one side of 50 ms is 2^-199.
    assert!(delays.iter().any(|delay| *delay < ms(50)), "{delays:?}");
    assert!(delays.iter().any(|delay| *delay > ms(50)), "{delays:?}");
}

#[test]
fn full_jitter_delay_for_is_within_zero_and_base() {
    let config = RetryConfig {
        initial_backoff: ms(100),
        max_backoff: ms(10_000),
        jitter_mode: JitterMode::Full,
        ..RetryConfig::default()
    };
    let retry = Retry::new(config).unwrap();

    for retry_number in 0..10u32 {
        let base = ms(100) * 2u32.pow(retry_number);
        let base = base.min(ms(10_000));
        for _ in 0..100 {
            let delay = retry.delay_for(retry_number);
            assert!(delay <= base, "retry {retry_number}: {delay:?} > {base:?}");
        }
    }
}

#[test]
fn proportional_jitter_stays_within_fraction() {
    let config = RetryConfig {
        initial_backoff: ms(1_000),
        max_backoff: ms(3_000),
        jitter_fraction: 0.25,
        ..RetryConfig::default()
    };
    let retry = Retry::new(config).unwrap();
    let mut seen = Vec::new();

    for _ in 0..500 {
        let first = retry.delay_for(0);
        assert!(first >= ms(750) && first <= ms(1_250), "{first:?}");
        seen.push(first);

        // At the cap (4 s capped to 3 s), jitter may only move the delay down.
        let capped = retry.delay_for(2);
        assert!(capped >= ms(2_250) && capped <= ms(3_000), "{capped:?}");
    }
    assert!(
        seen.iter().any(|delay| *delay != seen[0]),
        "jitter never moved the delay"
    );
}

#[test]
fn jitter_off_delay_for_is_exact() {
    let retry = Retry::new(exact_config(5)).unwrap();

    let delays: Vec<Duration> = (0..6).map(|n| retry.delay_for(n)).collect();

    assert_eq!(
        delays,
        [ms(100), ms(200), ms(400), ms(800), ms(1_000), ms(1_000)]
    );
    assert_eq!(retry.delay_for(u32::MAX), ms(1_000));
}

#[tokio::test(start_paused = true)]
async fn clones_share_statistics() {
    let retry = Retry::new(exact_config(2)).unwrap();
    let clone = retry.clone();

    let (_, _) = run_recording(&clone, vec![Some(server_failure())]).await;

    assert_eq!(retry.stats().attempts, 3);
    assert_eq!(retry.stats().gave_up, 1);

    retry.reset_stats();
    assert_eq!(
        clone.stats(),
        RetryStats {
            attempts: 0,
            retries: 0,
            succeeded_after_retry: 0,
            gave_up: 0,
        }
    );
}

#[tokio::test(start_paused = true)]
async fn dropped_future_starts_no_more_attempts() {
    let retry = Retry::new(exact_config(5)).unwrap();
    let attempts = Arc::new(AtomicU32::new(0));

    let task = tokio::spawn({
        let retry = retry.clone();
        let attempts = attempts.clone();
        async move {
            retry
                .execute(|| {
                    attempts.fetch_add(1, Ordering::SeqCst);
                    async { Err::<(), _>("unavailable") }
                })
                .await
        }
    });
    // Attempts at 0 and 100 ms; the third would start at 300 ms.
    tokio::time::sleep(ms(150)).await;
    task.abort();
    assert!(task.await.expect_err("the task was aborted").is_cancelled());
    tokio::time::sleep(Duration::from_secs(10)).await;

    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    assert_eq!(retry.stats().attempts, 2);
    assert_eq!(retry.stats().gave_up, 0);
}

#[tokio::test(start_paused = true)]
async fn default_classifier_retries_every_error() {
    let retry = Retry::new(exact_config(2)).unwrap();
    let calls = AtomicU32::new(0);

    let result: Result<(), std::io::Error> = retry
        .execute(|| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(std::io::Error::other("connection reset")) }
        })
        .await;

    // The caller's own error comes back, not a wrapper.
    let error = result.expect_err("every attempt failed");
    assert_eq!(error.to_string(), "connection reset");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_calls_add_up_in_statistics() {
    let config = RetryConfig {
        max_retries: 2,
        initial_backoff: Duration::ZERO,
        max_backoff: ms(1),
        jitter: false,
        ..RetryConfig::default()
    };
    let retry = Retry::new(config).unwrap();
    let mut tasks = tokio::task::JoinSet::new();

    for call in 0..400u32 {
        let retry = retry.clone();
        tasks.spawn(async move {
            let attempt = AtomicU32::new(0);
            // Call c fails on its first (c % 4) attempts: 0, 1 or 2 retries, or gives up after 3.
            retry
                .execute(|| {
                    let failed = attempt.fetch_add(1, Ordering::SeqCst) < call % 4;
                    async move {
                        tokio::task::yield_now().await;
                        if failed {
                            Err("unavailable")
                        } else {
                            Ok(())
                        }
                    }
                })
                .await
        });
    }
    let mut failed_calls = 0;
    while let Some(joined) = tasks.join_next().await {
        if joined.expect("retry task panicked").is_err() {
            failed_calls += 1;
        }
    }

    // Per 4 calls: attempts 1 + 2 + 3 + 3, retries 0 + 1 + 2 + 2, one success after a retry
    // for c % 4 in {1, 2}, and one call that gave up.
    assert_eq!(failed_calls, 100);
    assert_eq!(
        retry.stats(),
        RetryStats {
            attempts: 100 * 9,
            retries: 100 * 5,
            succeeded_after_retry: 200,
            gave_up: 100,
        }
    );
}
