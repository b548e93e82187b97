//! The circuit breaker: stops calling a provider that keeps failing, then probes it back.
//!
//! A closed circuit admits every call and counts failures, either consecutive ones or a failure rate
//! over a [sliding window](FailureRateConfig). When it opens, calls are rejected at once with
//! [`CircuitOpen`] for the open period. After it, the circuit is half-open and admits at most
//! `half_open_max_requests` probes at a time: `success_threshold` successful probes close it, and any
//! failed probe opens it again.
//!
//! The closed-state path reads one atomic word to admit a call and touches a few atomic counters to
//! record its result: no lock and no allocation. Transitions take a lock, which is rare.

mod config;
mod events;
mod permit;
mod state;
mod stats;
mod window;

use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

pub use self::config::{
    CircuitBreakerConfig, FailureRateConfig, MAX_HALF_OPEN_COUNT, MAX_OPEN_TIMEOUT, MAX_WINDOW_SIZE,
};
pub use self::events::{Listener, StateChange, TransitionReason};
pub use self::permit::CircuitPermit;
pub use self::state::CircuitState;
pub use self::stats::CircuitBreakerStats;

use self::events::EventQueue;
use self::state::Word;
use self::stats::Counters;
use self::window::SlidingWindow;
use crate::error::{CircuitOpen, ConfigError, Error};
use crate::outcome::{Classify, DefaultClassifier, Outcome};

/// A circuit breaker. Cloning it is cheap and the clones share one state.
///
/// # Examples
///
/// ```
/// use resilience::{CircuitBreaker, CircuitBreakerConfig, Error};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let breaker = CircuitBreaker::new(CircuitBreakerConfig {
///     failure_threshold: 2,
///     ..Default::default()
/// }).unwrap();
///
/// for _ in 0..2 {
///     let result = breaker.execute(|| async { Err::<(), _>("upstream failed") }).await;
///     assert!(matches!(result, Err(Error::Operation("upstream failed"))));
/// }
/// // The circuit is open: the next call is rejected without running.
/// let result = breaker.execute(|| async { Ok::<_, &str>(()) }).await;
/// assert!(matches!(result, Err(Error::CircuitOpen(_))));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    config: CircuitBreakerConfig,
    name: Option<Arc<str>>,
    word: AtomicU64,
    consecutive_failures: AtomicU32,
    window: Option<SlidingWindow>,
    /// The end of the open period, in nanoseconds since `clock_base`.
    open_until: AtomicU64,
    /// When the circuit last opened, in nanoseconds since `clock_base`.
    opened_at: AtomicU64,
    clock_base: Instant,
    /// Held while a transition is decided and queued, so that listeners see transitions in order.
    transition_lock: Mutex<()>,
    events: EventQueue,
    counters: Counters,
}

/// The admission of one call: the epoch it was admitted in, and whether it is a half-open probe.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    epoch: u32,
    probe: bool,
}

/// Builds a [`CircuitBreaker`] with a name for its log events and listeners for its state changes.
#[derive(Default)]
pub struct CircuitBreakerBuilder {
    config: CircuitBreakerConfig,
    name: Option<Arc<str>>,
    listeners: Vec<Listener>,
}

impl std::fmt::Debug for CircuitBreakerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreakerBuilder")
            .field("config", &self.config)
            .field("name", &self.name)
            .field("listeners", &self.listeners.len())
            .finish()
    }
}

impl CircuitBreakerBuilder {
    /// Sets the name that log events carry in their `provider` field.
    #[must_use]
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Adds a function called with every state change, in order, outside any lock of the breaker.
    ///
    /// A listener may call back into the breaker. It runs on the thread that made the transition (or
    /// on a thread already delivering earlier changes), so it should return quickly.
    #[must_use]
    pub fn on_state_change(
        mut self,
        listener: impl Fn(&StateChange) + Send + Sync + 'static,
    ) -> Self {
        self.listeners.push(Arc::new(listener));
        self
    }

    /// Validates the configuration and builds the breaker.
    pub fn build(self) -> Result<CircuitBreaker, ConfigError> {
        self.config.validate()?;
        let window = self
            .config
            .failure_rate
            .as_ref()
            .map(|rate| SlidingWindow::new(rate.window_size));
        Ok(CircuitBreaker {
            inner: Arc::new(Inner {
                config: self.config,
                name: self.name,
                word: AtomicU64::new(Word::new(CircuitState::Closed, 0).0),
                consecutive_failures: AtomicU32::new(0),
                window,
                open_until: AtomicU64::new(0),
                opened_at: AtomicU64::new(0),
                clock_base: Instant::now(),
                transition_lock: Mutex::new(()),
                events: EventQueue::new(self.listeners),
                counters: Counters::default(),
            }),
        })
    }
}

impl CircuitBreaker {
    /// Creates a breaker, or returns an error naming the first invalid field.
    pub fn new(config: CircuitBreakerConfig) -> Result<Self, ConfigError> {
        Self::builder(config).build()
    }

    /// Starts a builder for a breaker with a name or state-change listeners.
    pub fn builder(config: CircuitBreakerConfig) -> CircuitBreakerBuilder {
        CircuitBreakerBuilder {
            config,
            ..CircuitBreakerBuilder::default()
        }
    }

    /// Runs `operation` if the circuit admits it and records its result, using
    /// [`DefaultClassifier`]: every `Err` counts as a failure.
    ///
    /// # Cancel safety
    ///
    /// Dropping the returned future releases the admission: a half-open probe slot frees at once and
    /// the call counts as neutral.
    pub async fn execute<T, E, F, Fut>(&self, operation: F) -> Result<T, Error<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.execute_with(&DefaultClassifier, operation).await
    }

    /// Runs `operation` if the circuit admits it and records its result as `classifier` sees it.
    ///
    /// # Cancel safety
    ///
    /// The same as [`execute`](Self::execute).
    pub async fn execute_with<T, E, C, F, Fut>(
        &self,
        classifier: &C,
        operation: F,
    ) -> Result<T, Error<E>>
    where
        C: Classify<T, E> + ?Sized,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let admission = self.admit()?;
        let result = operation().await;
        admission.finish(classifier.classify(&result));
        result.map_err(Error::Operation)
    }

    /// Admits one call and returns a permit to record its outcome on later, for work whose outcome is
    /// known late, such as a streamed response.
    ///
    /// # Examples
    ///
    /// ```
    /// use resilience::{CircuitBreaker, CircuitBreakerConfig, Outcome};
    ///
    /// let breaker = CircuitBreaker::new(CircuitBreakerConfig::default()).unwrap();
    /// let permit = breaker.try_acquire().expect("a closed circuit admits calls");
    /// // ... start the work, stream the response ...
    /// permit.record(Outcome::Success);
    /// assert_eq!(breaker.stats().successes, 1);
    /// ```
    pub fn try_acquire(&self) -> Result<CircuitPermit, CircuitOpen> {
        let ticket = self.inner.admit()?;
        Ok(CircuitPermit::new(self.inner.clone(), ticket))
    }

    /// Returns the current state. An open circuit whose period has ended reports `Open` until the
    /// next call moves it to half-open.
    pub fn state(&self) -> CircuitState {
        self.inner.load().state()
    }

    /// Returns how long the circuit stays open, or `None` when it is not open.
    pub fn remaining_open(&self) -> Option<Duration> {
        (self.state() == CircuitState::Open).then(|| self.inner.remaining_open())
    }

    /// Returns a snapshot of the statistics.
    pub fn stats(&self) -> CircuitBreakerStats {
        self.inner.stats()
    }

    /// Returns the configuration.
    pub fn config(&self) -> &CircuitBreakerConfig {
        &self.inner.config
    }

    /// Closes the circuit and clears its window and statistics. Calls admitted before the reset
    /// finish without changing the new state, but a half-open probe among them keeps its probe
    /// slot until it ends.
    pub fn reset(&self) {
        self.inner.reset();
    }
}

impl CircuitBreaker {
    /// Admits one call for the duration of a borrow, without cloning the shared state.
    #[inline]
    pub(crate) fn admit(&self) -> Result<Admission<'_>, CircuitOpen> {
        let ticket = self.inner.admit()?;
        Ok(Admission {
            inner: &self.inner,
            ticket: Some(ticket),
        })
    }
}

/// An admitted call borrowed from its breaker. Dropping it unfinished records a neutral outcome, so a
/// call whose future is dropped frees its half-open probe slot.
#[derive(Debug)]
pub(crate) struct Admission<'a> {
    inner: &'a Arc<Inner>,
    ticket: Option<Ticket>,
}

impl Admission<'_> {
    /// Records the call's outcome.
    #[inline]
    pub(crate) fn finish(mut self, outcome: Outcome) {
        if let Some(ticket) = self.ticket.take() {
            self.inner.record(ticket, outcome);
        }
    }

    /// Turns the admission into an owned permit, to record the outcome later.
    pub(crate) fn into_permit(mut self) -> Option<CircuitPermit> {
        let ticket = self.ticket.take()?;
        Some(CircuitPermit::new(self.inner.clone(), ticket))
    }
}

impl Drop for Admission<'_> {
    #[inline]
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.inner
                .record(ticket, Outcome::Neutral(crate::NeutralReason::Cancelled));
        }
    }
}

impl Inner {
    #[inline]
    fn load(&self) -> Word {
        Word(self.word.load(Ordering::Acquire))
    }

    fn now_nanos(&self) -> u64 {
        duration_nanos(Instant::now().saturating_duration_since(self.clock_base))
    }

    fn remaining_open(&self) -> Duration {
        let until = self.open_until.load(Ordering::Acquire);
        Duration::from_nanos(until.saturating_sub(self.now_nanos()))
    }

    /// Admits one call. The closed state is checked first and inline, because it is the hot path.
    #[inline]
    pub(crate) fn admit(&self) -> Result<Ticket, CircuitOpen> {
        let word = self.load();
        if word.state() == CircuitState::Closed {
            return Ok(Ticket {
                epoch: word.epoch(),
                probe: false,
            });
        }
        self.admit_not_closed()
    }

    /// Admits one call when the circuit was last seen open or half-open. It may have closed since.
    fn admit_not_closed(&self) -> Result<Ticket, CircuitOpen> {
        loop {
            let word = self.load();
            match word.state() {
                CircuitState::Closed => {
                    return Ok(Ticket {
                        epoch: word.epoch(),
                        probe: false,
                    })
                }
                CircuitState::Open => {
                    let now = self.now_nanos();
                    let until = self.open_until.load(Ordering::Acquire);
                    if now < until {
                        self.counters.rejections.fetch_add(1, Ordering::Relaxed);
                        return Err(CircuitOpen {
                            remaining: Duration::from_nanos(until - now),
                        });
                    }
                    let opened_at = self.opened_at.load(Ordering::Acquire);
                    let open_for = Duration::from_nanos(now.saturating_sub(opened_at));
                    self.transition(
                        word,
                        CircuitState::HalfOpen,
                        TransitionReason::OpenTimeoutElapsed { open_for },
                        None,
                    );
                }
                CircuitState::HalfOpen => {
                    if word.in_flight() >= self.config.half_open_max_requests {
                        self.counters.rejections.fetch_add(1, Ordering::Relaxed);
                        return Err(CircuitOpen {
                            remaining: Duration::ZERO,
                        });
                    }
                    let admitted = word.with_probe_admitted();
                    if self
                        .word
                        .compare_exchange_weak(
                            word.0,
                            admitted.0,
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        )
                        .is_ok()
                    {
                        return Ok(Ticket {
                            epoch: word.epoch(),
                            probe: true,
                        });
                    }
                }
            }
        }
    }

    pub(crate) fn record(&self, ticket: Ticket, outcome: Outcome) {
        self.counters.count(&outcome);
        if ticket.probe {
            self.finish_probe(ticket, outcome);
        } else {
            self.record_closed(ticket, outcome);
        }
    }

    fn record_closed(&self, ticket: Ticket, outcome: Outcome) {
        let word = self.load();
        if word.epoch() != ticket.epoch {
            self.record_late(word, outcome);
            return;
        }
        match outcome {
            Outcome::Success => {
                if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
                    self.consecutive_failures.store(0, Ordering::Relaxed);
                }
                // A success can complete the minimum number of calls while the rate is already
                // at the threshold, so it is checked here too.
                if let (Some(window), Some(rate)) = (&self.window, &self.config.failure_rate) {
                    let (calls, failed) = window.record(false);
                    if let Some(reason) = rate_reached(rate, calls, failed) {
                        self.transition(word, CircuitState::Open, reason, None);
                    }
                }
            }
            Outcome::Failure(failure) if failure.trips_circuit => {
                let failures = self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
                let reason = match (&self.window, &self.config.failure_rate) {
                    (Some(window), Some(rate)) => {
                        let (calls, failed) = window.record(true);
                        rate_reached(rate, calls, failed)
                    }
                    _ => (failures >= self.config.failure_threshold)
                        .then_some(TransitionReason::ConsecutiveFailures { failures }),
                };
                if let Some(reason) = reason {
                    self.transition(word, CircuitState::Open, reason, failure.retry_after);
                }
            }
            Outcome::Failure(_) | Outcome::Neutral(_) => {}
        }
    }

    fn finish_probe(&self, ticket: Ticket, outcome: Outcome) {
        let succeeded = outcome.is_success();
        let mut word = self.load();
        // The probe gives its slot back whatever the epoch, because the count of probes in
        // flight carries over to later epochs. Only a probe of the current epoch can succeed.
        let (same_epoch, finished) = loop {
            let same_epoch = word.epoch() == ticket.epoch;
            let finished = word.with_probe_finished(same_epoch && succeeded);
            match self.word.compare_exchange_weak(
                word.0,
                finished.0,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break (same_epoch, finished),
                Err(actual) => word = Word(actual),
            }
        };
        if !same_epoch {
            self.record_late(finished, outcome);
            return;
        }
        match outcome {
            Outcome::Success if finished.successes() >= self.config.success_threshold => {
                let reason = TransitionReason::ProbesSucceeded {
                    successes: finished.successes(),
                };
                self.transition(finished, CircuitState::Closed, reason, None);
            }
            Outcome::Failure(failure) if failure.trips_circuit => {
                let reason = TransitionReason::ProbeFailed;
                self.transition(finished, CircuitState::Open, reason, failure.retry_after);
            }
            _ => {}
        }
    }

    /// A result from a call admitted in an earlier epoch changes no state. The retry-after hint of
    /// a failure that trips the circuit can still extend an open period, never shorten it.
    fn record_late(&self, word: Word, outcome: Outcome) {
        self.counters.late_results.fetch_add(1, Ordering::Relaxed);
        let hint = outcome
            .as_failure()
            .filter(|failure| failure.trips_circuit)
            .and_then(|failure| failure.retry_after);
        self.extend_open(word, hint);
    }

    /// Makes an open circuit stay open for at least `hint` from now. It never shortens the period.
    fn extend_open(&self, word: Word, hint: Option<Duration>) {
        if let (CircuitState::Open, Some(hint)) = (word.state(), hint) {
            let until = self
                .now_nanos()
                .saturating_add(duration_nanos(hint.min(MAX_OPEN_TIMEOUT)));
            self.open_until.fetch_max(until, Ordering::AcqRel);
        }
    }

    /// Moves from `expected` to `to` unless another thread already left `expected`'s epoch.
    fn transition(
        &self,
        expected: Word,
        to: CircuitState,
        reason: TransitionReason,
        retry_after: Option<Duration>,
    ) {
        let guard = self
            .transition_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let current = self.load();
        if current.epoch() != expected.epoch() || current.state() != expected.state() {
            // A failure that raced with the one that opened the circuit keeps its hint.
            if to == CircuitState::Open {
                self.extend_open(current, retry_after);
            }
            return;
        }
        let from = current.state();
        match to {
            CircuitState::Open => {
                let now = self.now_nanos();
                let period = retry_after
                    .map_or(self.config.timeout, |hint| hint.max(self.config.timeout))
                    .min(MAX_OPEN_TIMEOUT);
                self.opened_at.store(now, Ordering::Release);
                self.open_until.store(
                    now.saturating_add(duration_nanos(period)),
                    Ordering::Release,
                );
            }
            CircuitState::Closed => self.clear_failures(),
            CircuitState::HalfOpen => {}
        }
        self.advance_epoch(to);
        self.counters.transitions.fetch_add(1, Ordering::Relaxed);
        self.events.push(StateChange { from, to, reason });
        drop(guard);

        log_transition(self.name.as_deref(), from, to, reason);
        self.events.deliver();
    }

    /// Moves the word to the next epoch in `to`. The caller holds the transition lock, so only
    /// probe admissions and results change the word meanwhile, and the update keeps their count.
    fn advance_epoch(&self, to: CircuitState) {
        let _ = self
            .word
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |bits| {
                Some(Word(bits).next(to).0)
            });
    }

    fn clear_failures(&self) {
        self.consecutive_failures.store(0, Ordering::Release);
        if let Some(window) = &self.window {
            window.reset();
        }
    }

    fn reset(&self) {
        let guard = self
            .transition_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let current = self.load();
        self.clear_failures();
        self.open_until.store(0, Ordering::Release);
        self.advance_epoch(CircuitState::Closed);
        self.counters.reset();
        if current.state() != CircuitState::Closed {
            self.events.push(StateChange {
                from: current.state(),
                to: CircuitState::Closed,
                reason: TransitionReason::Reset,
            });
        }
        drop(guard);
        self.events.deliver();
    }

    fn stats(&self) -> CircuitBreakerStats {
        let word = self.load();
        let (window_calls, window_failures) =
            self.window.as_ref().map_or((0, 0), SlidingWindow::totals);
        CircuitBreakerStats {
            state: word.state(),
            consecutive_failures: self.consecutive_failures.load(Ordering::Relaxed),
            half_open_in_flight: if word.state() == CircuitState::HalfOpen {
                word.in_flight()
            } else {
                0
            },
            remaining_open_ms: if word.state() == CircuitState::Open {
                self.remaining_open().as_millis() as u64
            } else {
                0
            },
            window_calls,
            window_failures,
            ..self.counters.snapshot()
        }
    }
}

fn log_transition(
    name: Option<&str>,
    from: CircuitState,
    to: CircuitState,
    reason: TransitionReason,
) {
    let provider = name.unwrap_or("");
    match to {
        CircuitState::Open => tracing::warn!(
            provider,
            from = from.as_str(),
            to = to.as_str(),
            %reason,
            "circuit opened"
        ),
        CircuitState::Closed => tracing::info!(
            provider,
            from = from.as_str(),
            to = to.as_str(),
            %reason,
            "circuit closed"
        ),
        CircuitState::HalfOpen => tracing::info!(
            provider,
            from = from.as_str(),
            to = to.as_str(),
            %reason,
            "circuit half-open"
        ),
    }
}

/// Returns the reason to open when `failures` of `calls` in the window reach the rate's threshold
/// and the window contains at least its minimum number of calls.
fn rate_reached(rate: &FailureRateConfig, calls: u64, failures: u64) -> Option<TransitionReason> {
    let reached =
        calls >= u64::from(rate.minimum_calls) && failures as f64 >= rate.threshold * calls as f64;
    reached.then_some(TransitionReason::FailureRate { failures, calls })
}

/// Converts a duration to nanoseconds, saturating at `u64::MAX` (about 584 years).
fn duration_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
