//! Unit tests of the breaker against brute-force models of its rules, and of its closed-state path
//! with the transition lock held.

use std::sync::mpsc;
use std::time::Duration;

use proptest::prelude::*;

use super::{CircuitBreaker, CircuitBreakerConfig, CircuitState, FailureRateConfig};
use crate::outcome::{Failure, FailureClass, NeutralReason, Outcome};

/// Returns one of the four kinds of outcome that a closed breaker treats differently.
fn outcome(kind: u8) -> Outcome {
    match kind {
        0 => Outcome::Success,
        1 => Outcome::failure(FailureClass::Server),
        2 => Outcome::Neutral(NeutralReason::Cancelled),
        _ => Outcome::Failure(Failure::new(FailureClass::Rejected).trips_circuit(false)),
    }
}

fn rate_breaker(window_size: u32, minimum_calls: u32, threshold: f64) -> CircuitBreaker {
    CircuitBreaker::new(CircuitBreakerConfig {
        failure_rate: Some(FailureRateConfig {
            window_size,
            minimum_calls,
            threshold,
        }),
        ..CircuitBreakerConfig::default()
    })
    .unwrap()
}

proptest! {
    /// Replays random outcomes on a breaker in failure-rate mode and on a brute-force model that
    /// keeps every counted call and recounts the last `window_size` after each one.
    #[test]
    fn rate_mode_matches_recount(
        window_size in 1u32..40,
        minimum_calls in 1u32..40,
        threshold in prop_oneof![Just(1.0f64), 0.05f64..=1.0],
        kinds in proptest::collection::vec(0u8..4, 0..300),
    ) {
        let minimum_calls = minimum_calls.min(window_size);
        let breaker = rate_breaker(window_size, minimum_calls, threshold);
        let mut history: Vec<bool> = Vec::new();

        for (index, kind) in kinds.iter().enumerate() {
            let outcome = outcome(*kind);
            breaker.try_acquire().expect("the model says the circuit is closed").record(outcome);
            match outcome {
                Outcome::Success => history.push(false),
                Outcome::Failure(failure) if failure.trips_circuit => history.push(true),
                _ => {}
            }

            let window = &history[history.len().saturating_sub(window_size as usize)..];
            let calls = window.len() as u64;
            let failures = window.iter().filter(|failed| **failed).count() as u64;
            let should_open =
                calls >= u64::from(minimum_calls) && failures as f64 >= threshold * calls as f64;
            if should_open {
                prop_assert_eq!(breaker.state(), CircuitState::Open, "call {}", index);
                break;
            }
            prop_assert_eq!(breaker.state(), CircuitState::Closed, "call {}", index);
            prop_assert_eq!(breaker.stats().window_calls, calls, "call {}", index);
            prop_assert_eq!(breaker.stats().window_failures, failures, "call {}", index);
        }
    }

    /// Replays random outcomes on a breaker that counts consecutive failures: a success resets
    /// the count, neutral outcomes and failures that do not trip leave it as it is.
    #[test]
    fn consecutive_mode_matches_model(
        failure_threshold in 1u32..8,
        kinds in proptest::collection::vec(0u8..4, 0..200),
    ) {
        let breaker = CircuitBreaker::new(CircuitBreakerConfig {
            failure_threshold,
            ..CircuitBreakerConfig::default()
        })
        .unwrap();
        let mut consecutive = 0;

        for (index, kind) in kinds.iter().enumerate() {
            let outcome = outcome(*kind);
            breaker.try_acquire().expect("the model says the circuit is closed").record(outcome);
            match outcome {
                Outcome::Success => consecutive = 0,
                Outcome::Failure(failure) if failure.trips_circuit => consecutive += 1,
                _ => {}
            }

            prop_assert_eq!(breaker.stats().consecutive_failures, consecutive, "call {}", index);
            if consecutive >= failure_threshold {
                prop_assert_eq!(breaker.state(), CircuitState::Open, "call {}", index);
                break;
            }
            prop_assert_eq!(breaker.state(), CircuitState::Closed, "call {}", index);
        }
    }
}

#[test]
fn closed_path_takes_no_transition_lock() {
    let breaker = rate_breaker(100, 100, 1.0);
    let guard = breaker
        .inner
        .transition_lock
        .lock()
        .expect("no other test holds it");

    // If the closed path took the lock, this thread would block until the guard is dropped, which
    // happens only after the timeout below.
    let (done, finished) = mpsc::channel();
    let worker = breaker.clone();
    let thread = std::thread::spawn(move || {
        for round in 0..1_000 {
            let outcome = if round % 2 == 0 {
                Outcome::Success
            } else {
                Outcome::failure(FailureClass::Server)
            };
            worker.try_acquire().expect("closed").record(outcome);
        }
        let _ = done.send(worker.stats());
    });
    let stats = finished.recv_timeout(Duration::from_secs(60));
    drop(guard);
    thread.join().expect("the recording thread panicked");

    let stats = stats.expect("the closed path waited for the transition lock");
    assert_eq!(stats.successes, 500);
    assert_eq!(stats.failures, 500);
    assert_eq!(stats.state, CircuitState::Closed);
}

#[test]
fn probe_slot_is_counted_in_state_word() {
    let breaker = CircuitBreaker::new(CircuitBreakerConfig {
        failure_threshold: 1,
        half_open_max_requests: 2,
        timeout: Duration::from_nanos(1),
        ..CircuitBreakerConfig::default()
    })
    .unwrap();
    breaker
        .try_acquire()
        .unwrap()
        .record(Outcome::failure(FailureClass::Server));
    // Wait for the 1 ns open period without a clock: every call after it moves to half-open.
    let first = loop {
        if let Ok(probe) = breaker.try_acquire() {
            break probe;
        }
    };

    let second = breaker.try_acquire().expect("a second slot is free");
    assert_eq!(breaker.inner.load().in_flight(), 2);
    drop(first);
    assert_eq!(breaker.inner.load().in_flight(), 1);
    second.record(Outcome::Success);

    let word = breaker.inner.load();
    assert_eq!(word.state(), CircuitState::HalfOpen);
    assert_eq!(word.in_flight(), 0);
    assert_eq!(word.successes(), 1);
}
