//! Statistics and health, as serializable snapshots.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::stack::ProviderStack;
use crate::bulkhead::BulkheadStats;
use crate::circuit_breaker::{CircuitBreakerStats, CircuitState};
use crate::fallback::Strategy;
use crate::retry::RetryStats;

/// Counters of the requests to one provider by how they ended. Every request ends in exactly one
/// counter.
#[derive(Debug, Default)]
pub(crate) struct CallCounters {
    pub(crate) succeeded: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) cancelled: AtomicU64,
    pub(crate) served_by: [AtomicU64; 5],
    pub(crate) found_nothing: AtomicU64,
}

impl CallCounters {
    pub(crate) fn served_by(&self, strategy: Strategy) -> &AtomicU64 {
        &self.served_by[strategy.index()]
    }

    pub(crate) fn reset(&self) {
        for counter in [
            &self.succeeded,
            &self.failed,
            &self.cancelled,
            &self.found_nothing,
        ]
        .into_iter()
        .chain(self.served_by.iter())
        {
            counter.store(0, Ordering::Relaxed);
        }
    }

    fn snapshot(&self) -> RequestStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let fallbacks = FallbackStats {
            cache: load(self.served_by(Strategy::Cache)),
            stale: load(self.served_by(Strategy::Stale)),
            provider: load(self.served_by(Strategy::Provider)),
            degraded: load(self.served_by(Strategy::Degraded)),
            error: load(self.served_by(Strategy::Error)),
            found_nothing: load(&self.found_nothing),
        };
        let succeeded = load(&self.succeeded);
        let failed = load(&self.failed);
        let cancelled = load(&self.cancelled);
        RequestStats {
            total: succeeded + failed + cancelled + fallbacks.served(),
            succeeded,
            failed,
            cancelled,
            fallbacks,
        }
    }
}

/// Requests to one provider by how they ended: `total` is the sum of `succeeded`, `failed`, `cancelled`
/// and every fallback that served a response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestStats {
    /// Requests that ended.
    pub total: u64,
    /// Requests that returned the provider's response, after retries or not. A response that the
    /// classifier calls the caller's error (neutral) counts here too, and is never cached.
    pub succeeded: u64,
    /// Requests that returned an error without a fallback serving them (the `error` strategy is
    /// counted under `fallbacks` instead).
    pub failed: u64,
    /// Requests whose future was dropped before they ended.
    pub cancelled: u64,
    /// Fallbacks by strategy.
    pub fallbacks: FallbackStats,
}

/// Fallbacks that served a response, by strategy, and those that found nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FallbackStats {
    /// Served from the fresh cache.
    pub cache: u64,
    /// Served from the stale cache.
    pub stale: u64,
    /// Served by an alternate provider.
    pub provider: u64,
    /// Served the degraded response.
    pub degraded: u64,
    /// Ended with the structured error of the `error` strategy.
    pub error: u64,
    /// Ran every strategy without one serving a response; also counted in `failed`.
    pub found_nothing: u64,
}

impl FallbackStats {
    /// Returns the fallbacks that served a response, the `error` strategy included.
    pub fn served(&self) -> u64 {
        self.cache + self.stale + self.provider + self.degraded + self.error
    }

    /// Returns the count for one strategy.
    pub fn get(&self, strategy: Strategy) -> u64 {
        match strategy {
            Strategy::Cache => self.cache,
            Strategy::Stale => self.stale,
            Strategy::Provider => self.provider,
            Strategy::Degraded => self.degraded,
            Strategy::Error => self.error,
        }
    }
}

/// A snapshot of one provider's statistics. A pattern the configuration turned off is `None`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderStats {
    /// The circuit breaker's statistics.
    pub circuit_breaker: Option<CircuitBreakerStats>,
    /// The bulkhead's statistics.
    pub bulkhead: Option<BulkheadStats>,
    /// The retry policy's statistics.
    pub retry: Option<RetryStats>,
    /// Requests by how they ended.
    pub requests: RequestStats,
    /// Responses in the fallback cache.
    pub cache_entries: u64,
}

/// A snapshot of every provider's statistics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManagerStats {
    /// Whether the manager was closed.
    pub closed: bool,
    /// Statistics by provider name.
    pub providers: BTreeMap<String, ProviderStats>,
}

/// The result of [`Manager::health_check`](super::Manager::health_check).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthReport {
    /// True when the manager is open and every provider is available.
    pub healthy: bool,
    /// Health by provider name.
    pub providers: BTreeMap<String, ProviderHealth>,
}

/// The health of one provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderHealth {
    /// False when a new call would be rejected at once: the circuit is open or the queue is full.
    pub available: bool,
    /// The problems found; empty when there are none.
    pub issues: Vec<HealthIssue>,
}

/// A problem of one provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "issue")]
pub enum HealthIssue {
    /// The circuit is open for this long.
    CircuitOpen {
        /// Milliseconds until the circuit admits probes.
        remaining_ms: u64,
    },
    /// The circuit is half-open: probes decide whether it closes.
    CircuitHalfOpen,
    /// Every bulkhead slot is taken; new calls wait in the queue.
    BulkheadSaturated {
        /// Calls running.
        active: usize,
        /// The configured limit.
        max_concurrent: usize,
    },
    /// The queue is full too; new calls are rejected.
    QueueFull {
        /// Callers waiting.
        queued: usize,
        /// The configured limit.
        max_queue: usize,
    },
}

pub(crate) fn provider_stats(stack: &ProviderStack, cache_entries: u64) -> ProviderStats {
    ProviderStats {
        circuit_breaker: stack.circuit_breaker().map(|breaker| breaker.stats()),
        bulkhead: stack.bulkhead().map(|bulkhead| bulkhead.stats()),
        retry: stack.retry().map(|retry| retry.stats()),
        requests: stack.counters.snapshot(),
        cache_entries,
    }
}

pub(crate) fn provider_health(stack: &ProviderStack) -> ProviderHealth {
    let mut issues = Vec::new();
    let mut available = true;
    if let Some(breaker) = stack.circuit_breaker() {
        match breaker.state() {
            CircuitState::Open => {
                let remaining = breaker.remaining_open().unwrap_or_default();
                // An open circuit whose period has ended admits the next call as a probe.
                if !remaining.is_zero() {
                    available = false;
                }
                issues.push(HealthIssue::CircuitOpen {
                    remaining_ms: u64::try_from(remaining.as_millis()).unwrap_or(u64::MAX),
                });
            }
            CircuitState::HalfOpen => issues.push(HealthIssue::CircuitHalfOpen),
            CircuitState::Closed => {}
        }
    }
    if let Some(bulkhead) = stack.bulkhead() {
        let stats = bulkhead.stats();
        if stats.active >= stats.max_concurrent {
            issues.push(HealthIssue::BulkheadSaturated {
                active: stats.active,
                max_concurrent: stats.max_concurrent,
            });
            if stats.queued >= stats.max_queue {
                available = false;
                issues.push(HealthIssue::QueueFull {
                    queued: stats.queued,
                    max_queue: stats.max_queue,
                });
            }
        }
    }
    ProviderHealth { available, issues }
}
