//! The Prometheus collector: reads every provider's statistics and metric handles at scrape time
//! and writes them as metric families.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::histogram::HistogramSnapshot;
use super::provider::{OUTCOME_LABELS, STATES};
use crate::circuit_breaker::CircuitState;
use crate::fallback::Strategy;
use crate::manager::{provider_stats, ProviderStack, ProviderStats};

/// The stacks that a manager's collector reads, by provider name. The manager adds a stack when
/// it creates or replaces a provider, so a replaced stack is no longer scraped.
#[derive(Debug, Default)]
pub(crate) struct TrackedProviders {
    stacks: Mutex<BTreeMap<Arc<str>, Weak<ProviderStack>>>,
}

impl TrackedProviders {
    /// Scrapes `stack` from now on under its provider name, in place of any earlier stack.
    pub(crate) fn track(&self, stack: &Arc<ProviderStack>) {
        self.lock()
            .insert(stack.name_arc().clone(), Arc::downgrade(stack));
    }

    /// Returns the stacks still in use, in provider-name order, and removes those of a manager
    /// that was dropped.
    fn live(&self) -> Vec<Arc<ProviderStack>> {
        let mut stacks = self.lock();
        stacks.retain(|_, stack| stack.strong_count() > 0);
        stacks.values().filter_map(Weak::upgrade).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Arc<str>, Weak<ProviderStack>>> {
        self.stacks.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Encodes the metrics of every tracked provider on each scrape.
#[derive(Debug)]
pub(crate) struct ManagerCollector {
    pub(crate) providers: Arc<TrackedProviders>,
}

/// One provider as read at the start of a scrape, so that every family shows the same moment.
struct Scraped {
    stack: Arc<ProviderStack>,
    stats: ProviderStats,
}

impl Scraped {
    fn name(&self) -> &str {
        self.stack.name()
    }
}

impl Collector for ManagerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let providers: Vec<Scraped> = self
            .providers
            .live()
            .into_iter()
            .map(|stack| Scraped {
                stats: provider_stats(&stack, 0),
                stack,
            })
            .collect();

        encode_circuit_breaker(&mut encoder, &providers)?;
        encode_bulkhead(&mut encoder, &providers)?;
        encode_retry_and_fallback(&mut encoder, &providers)?;
        encode_calls(&mut encoder, &providers)
    }
}

fn encode_circuit_breaker(encoder: &mut DescriptorEncoder, providers: &[Scraped]) -> fmt::Result {
    let mut state = Vec::new();
    let mut rejections = Vec::new();
    let mut transitions = Vec::new();
    for provider in providers {
        let Some(stats) = &provider.stats.circuit_breaker else {
            continue;
        };
        state.push(([("provider", provider.name())], stats.state.as_gauge()));
        rejections.push(([("provider", provider.name())], stats.rejections));
        let Some(metrics) = provider.stack.metrics() else {
            continue;
        };
        for (from, to) in transition_pairs() {
            let labels = [
                ("provider", provider.name()),
                ("from", from.as_str()),
                ("to", to.as_str()),
            ];
            transitions.push((labels, metrics.transition_count(from, to)));
        }
    }

    gauges(
        encoder,
        "circuit_breaker_state",
        "State of the provider's circuit breaker: 0 closed, 1 half-open, 2 open.",
        &state,
    )?;
    counters(
        encoder,
        "circuit_breaker_transitions",
        "Circuit breaker state changes, by the state left and the state entered.",
        &transitions,
    )?;
    counters(
        encoder,
        "circuit_breaker_rejections",
        "Calls rejected without running because the circuit was open, or half-open with every \
         probe slot taken.",
        &rejections,
    )
}

/// Returns every pair of different states except closed to half-open, which no breaker makes.
fn transition_pairs() -> impl Iterator<Item = (CircuitState, CircuitState)> {
    STATES
        .into_iter()
        .flat_map(|from| STATES.into_iter().map(move |to| (from, to)))
        .filter(|&(from, to)| {
            from != to && (from, to) != (CircuitState::Closed, CircuitState::HalfOpen)
        })
}

fn encode_bulkhead(encoder: &mut DescriptorEncoder, providers: &[Scraped]) -> fmt::Result {
    let mut active = Vec::new();
    let mut queued = Vec::new();
    let mut rejections = Vec::new();
    let mut waits = Vec::new();
    for provider in providers {
        let Some(stats) = &provider.stats.bulkhead else {
            continue;
        };
        let name = provider.name();
        active.push(([("provider", name)], gauge_value(stats.active)));
        queued.push(([("provider", name)], gauge_value(stats.queued)));
        rejections.push((
            [("provider", name), ("reason", "full")],
            stats.rejected_full,
        ));
        rejections.push((
            [("provider", name), ("reason", "queue_timeout")],
            stats.rejected_queue_timeout,
        ));
        if let Some(metrics) = provider.stack.metrics() {
            waits.push(([("provider", name)], metrics.queue_wait.snapshot()));
        }
    }

    gauges(
        encoder,
        "bulkhead_active_requests",
        "Calls holding a bulkhead slot now, streams that are still running included.",
        &active,
    )?;
    gauges(
        encoder,
        "bulkhead_queued_requests",
        "Calls waiting for a bulkhead slot now.",
        &queued,
    )?;
    counters(
        encoder,
        "bulkhead_rejections",
        "Calls the bulkhead rejected: full when every slot and queue place was taken, \
         queue_timeout when the wait for a slot timed out.",
        &rejections,
    )?;
    histograms(
        encoder,
        "bulkhead_queue_wait",
        "Time calls waited for a bulkhead slot, 0 when one was free; a wait that timed out is \
         included.",
        &waits,
    )
}

fn encode_retry_and_fallback(
    encoder: &mut DescriptorEncoder,
    providers: &[Scraped],
) -> fmt::Result {
    let mut retries = Vec::new();
    let mut served = Vec::new();
    let mut found_nothing = Vec::new();
    let mut requests = Vec::new();
    for provider in providers {
        let name = provider.name();
        if let Some(stats) = &provider.stats.retry {
            retries.push(([("provider", name)], stats.retries));
        }
        let stats = &provider.stats.requests;
        for strategy in ALL_STRATEGIES {
            let labels = [("provider", name), ("strategy", strategy.as_str())];
            served.push((labels, stats.fallbacks.get(strategy)));
        }
        found_nothing.push(([("provider", name)], stats.fallbacks.found_nothing));
        for (result, value) in [
            ("succeeded", stats.succeeded),
            ("failed", stats.failed),
            ("cancelled", stats.cancelled),
            ("fallback", stats.fallbacks.served()),
        ] {
            requests.push(([("provider", name), ("result", result)], value));
        }
    }

    counters(
        encoder,
        "retry",
        "Retry attempts: every attempt after the first one of a request on this provider.",
        &retries,
    )?;
    counters(
        encoder,
        "fallback",
        "Failed requests that a fallback strategy served; error is the structured error of the \
         error strategy.",
        &served,
    )?;
    counters(
        encoder,
        "fallback_found_nothing",
        "Failed requests whose fallback strategies all ran without serving a response.",
        &found_nothing,
    )?;
    counters(
        encoder,
        "requests",
        "Requests through the manager by how they ended: succeeded, failed, cancelled, or served \
         by a fallback strategy.",
        &requests,
    )
}

fn encode_calls(encoder: &mut DescriptorEncoder, providers: &[Scraped]) -> fmt::Result {
    let mut outcomes = Vec::new();
    let mut durations = Vec::new();
    for provider in providers {
        let Some(metrics) = provider.stack.metrics() else {
            continue;
        };
        let name = provider.name();
        for (label, value) in OUTCOME_LABELS.into_iter().zip(metrics.outcome_counts()) {
            outcomes.push(([("provider", name), ("outcome", label)], value));
        }
        durations.push(([("provider", name)], metrics.call_duration.snapshot()));
    }

    counters(
        encoder,
        "calls",
        "Calls (attempts) on the provider by outcome: success, the failure's class, \
         caller_error, or cancelled when the caller dropped the request.",
        &outcomes,
    )?;
    histograms(
        encoder,
        "call_duration",
        "Duration of the calls that ran, from taking the bulkhead slot to the result; rejected \
         and cancelled calls are not included.",
        &durations,
    )
}

const ALL_STRATEGIES: [Strategy; 5] = [
    Strategy::Cache,
    Strategy::Stale,
    Strategy::Provider,
    Strategy::Degraded,
    Strategy::Error,
];

/// Writes a counter family. OpenMetrics names a counter's sample `<family>_total`, so the family
/// `retry` is scraped as `retry_total`.
fn counters<const N: usize>(
    encoder: &mut DescriptorEncoder,
    family: &str,
    help: &str,
    samples: &[([(&str, &str); N], u64)],
) -> fmt::Result {
    let mut metric = encoder.encode_descriptor(family, help, None, MetricType::Counter)?;
    for (labels, value) in samples {
        metric
            .encode_family(labels)?
            .encode_counter::<NoLabelSet, _, u64>(value, None)?;
    }
    Ok(())
}

fn gauges(
    encoder: &mut DescriptorEncoder,
    family: &str,
    help: &str,
    samples: &[([(&str, &str); 1], i64)],
) -> fmt::Result {
    let mut metric = encoder.encode_descriptor(family, help, None, MetricType::Gauge)?;
    for (labels, value) in samples {
        metric.encode_family(labels)?.encode_gauge(value)?;
    }
    Ok(())
}

/// Writes a histogram family in seconds: the family `call_duration` is scraped as
/// `call_duration_seconds_bucket`, `_sum` and `_count`.
fn histograms(
    encoder: &mut DescriptorEncoder,
    family: &str,
    help: &str,
    samples: &[([(&str, &str); 1], HistogramSnapshot)],
) -> fmt::Result {
    let unit = Unit::Seconds;
    let mut metric = encoder.encode_descriptor(family, help, Some(&unit), MetricType::Histogram)?;
    for (labels, snapshot) in samples {
        metric
            .encode_family(labels)?
            .encode_histogram::<NoLabelSet>(
                snapshot.sum,
                snapshot.count,
                &snapshot.buckets,
                None,
            )?;
    }
    Ok(())
}

fn gauge_value(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
