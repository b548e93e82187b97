//! Prometheus metrics of the [`Manager`](crate::Manager), registered into the application's own
//! registry with [`ManagerBuilder::metrics`](crate::ManagerBuilder::metrics).
//!
//! Counters and gauges that the patterns already keep as statistics are read when the registry is
//! encoded, by a custom collector, so they cost nothing per call. What no statistic counts (the
//! outcome class of each call, transitions by state, the two histograms) is recorded into handles
//! that each provider's stack resolves once when it is created. Recording touches only atomics,
//! with no label lookup and no allocation. Without metrics the stack records nothing.
//!
//! # Metrics
//!
//! Every series has a `provider` label: a provider name from the configuration, or one the
//! application passed to the manager, which creates at most
//! [`max_providers`](crate::Config::max_providers) providers. Every other label is a fixed
//! enumeration.
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `circuit_breaker_state` | gauge | provider | 0 closed, 1 half-open, 2 open; an open circuit whose open period ended shows 2 until the next call moves it to half-open |
//! | `circuit_breaker_transitions_total` | counter | provider, from, to | state changes; `from` and `to` are `closed`, `half_open` or `open` |
//! | `circuit_breaker_rejections_total` | counter | provider | calls rejected because the circuit was open, or half-open with every probe slot taken |
//! | `bulkhead_active_requests` | gauge | provider | calls holding a slot, running streams included |
//! | `bulkhead_queued_requests` | gauge | provider | calls waiting for a slot |
//! | `bulkhead_rejections_total` | counter | provider, reason | `full`: every slot and queue place was taken; `queue_timeout`: the wait timed out |
//! | `bulkhead_queue_wait_seconds` | histogram | provider | time waited for a slot, 0 when one was free, timed-out waits included |
//! | `retry_total` | counter | provider | retry attempts: every attempt after the first of a request |
//! | `fallback_total` | counter | provider, strategy | failed requests that a strategy served: `cache`, `stale`, `provider`, `degraded`, `error` |
//! | `fallback_found_nothing_total` | counter | provider | failed requests for which every strategy ran without serving |
//! | `requests_total` | counter | provider, result | requests by how they ended: `succeeded`, `failed`, `cancelled`, `fallback` |
//! | `calls_total` | counter | provider, outcome | calls (attempts) by outcome: `success`, a failure class, `caller_error`, `cancelled` |
//! | `call_duration_seconds` | histogram | provider | duration of the calls that ran, from taking the slot to the result |
//!
//! A pattern that the configuration turned off has no series: with the bulkhead off there is no
//! `bulkhead_*` series, for example.
//!
//! A deferred call (see [`Attempt::defer`](crate::Attempt::defer)) is counted in `calls_total` and
//! timed in `call_duration_seconds` when its operation returns, before the stream ends; its
//! bulkhead slot counts in `bulkhead_active_requests` until the stream ends.
//!
//! # Names
//!
//! OpenMetrics names a counter family without its `_total` suffix and writes each sample with
//! it: the collector declares the families `retry` and `fallback`, so the text reads
//! `# TYPE retry counter` followed by samples named `retry_total`, and Prometheus stores the
//! series as `retry_total` and `fallback_total`. Histograms are declared with the unit seconds, so
//! their samples are `call_duration_seconds_bucket`, `_sum` and `_count`. A registry made with
//! `sub_registry_with_prefix` puts its prefix before every name.
//!
//! # Resets
//!
//! [`Manager::reset_provider`](crate::Manager::reset_provider) restarts the counters that come
//! from statistics at zero, which `rate()` and `increase()` treat as a counter reset; the
//! transitions, the calls and the histograms keep counting. A provider replaced with
//! [`Manager::set_provider_config`](crate::Manager::set_provider_config) gets a new stack, whose
//! metrics all start at zero.
//!
//! The registry type is prometheus-client 0.23's, re-exported as
//! [`prometheus_client`] so that an application can use the same version.

mod collector;
mod histogram;
mod provider;

use std::sync::Arc;

use prometheus_client::registry::Registry;

pub use prometheus_client;

pub(crate) use self::collector::TrackedProviders;
pub(crate) use self::provider::{AttemptRecorder, ProviderMetrics};

use self::collector::ManagerCollector;

/// Registers into `registry` a collector that reads the stacks of `providers` on each scrape.
pub(crate) fn register(registry: &mut Registry, providers: Arc<TrackedProviders>) {
    registry.register_collector(Box::new(ManagerCollector { providers }));
}
