//! The demo's report: the direct run and the gateway run side by side, as a table or JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use resilience::ManagerStats;
use serde::Serialize;

use super::load::Sample;

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    /// Requests sent in each run.
    pub requests: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// The seed of the injected faults.
    pub seed: u64,
    /// The load sent straight to the primary provider, without the resilience stack.
    pub direct: RunReport,
    /// The same load sent through the gateway.
    pub gateway: RunReport,
}

/// The results of one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Requests that got a 200 from a provider or from the cache.
    pub succeeded: usize,
    /// Requests that got the degraded message.
    pub degraded: usize,
    /// Requests that got an error or no response.
    pub failed: usize,
    /// `succeeded` as a share of all requests, in percent.
    pub success_rate: f64,
    /// Latency percentiles of every request, in milliseconds.
    pub latency_ms: Percentiles,
    /// Requests the providers received, retries included.
    pub upstream_requests: u64,
    /// Retries the gateway made (`None` for the direct run).
    pub retries: Option<u64>,
    /// Circuit breaker state changes (`None` for the direct run).
    pub circuit_transitions: Option<u64>,
    /// Fallbacks that served a request, by strategy (empty for the direct run).
    pub fallbacks: BTreeMap<String, u64>,
    /// Failed requests by status, or `no response`.
    pub failures: BTreeMap<String, usize>,
}

/// Latency percentiles, nearest rank.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Percentiles {
    /// The median.
    pub p50: f64,
    /// The 95th percentile.
    pub p95: f64,
    /// The 99th percentile.
    pub p99: f64,
}

impl RunReport {
    /// Summarizes the samples of a run; `stats` is the gateway's, `None` for the direct run.
    pub(super) fn new(
        samples: &[Sample],
        upstream_requests: u64,
        stats: Option<&ManagerStats>,
    ) -> Self {
        let mut succeeded = 0;
        let mut degraded = 0;
        let mut failures = BTreeMap::new();
        for sample in samples {
            match (sample.status, sample.source.as_deref()) {
                (Some(200), Some("degraded")) => degraded += 1,
                (Some(200), _) => succeeded += 1,
                (Some(status), _) => *failures.entry(status.to_string()).or_insert(0) += 1,
                (None, _) => *failures.entry("no response".to_owned()).or_insert(0) += 1,
            }
        }
        let failed = failures.values().sum();
        let success_rate = if samples.is_empty() {
            0.0
        } else {
            100.0 * succeeded as f64 / samples.len() as f64
        };

        let mut fallbacks = BTreeMap::new();
        let (mut retries, mut transitions) = (None, None);
        if let Some(stats) = stats {
            let mut retry_count = 0;
            let mut transition_count = 0;
            for provider in stats.providers.values() {
                retry_count += provider.retry.as_ref().map_or(0, |retry| retry.retries);
                transition_count += provider
                    .circuit_breaker
                    .as_ref()
                    .map_or(0, |breaker| breaker.transitions);
                let served = &provider.requests.fallbacks;
                for (name, count) in [
                    ("cache", served.cache),
                    ("stale", served.stale),
                    ("provider", served.provider),
                    ("degraded", served.degraded),
                    ("error", served.error),
                ] {
                    *fallbacks.entry(name.to_owned()).or_insert(0) += count;
                }
            }
            retries = Some(retry_count);
            transitions = Some(transition_count);
        }

        RunReport {
            succeeded,
            degraded,
            failed,
            success_rate,
            latency_ms: percentiles(samples),
            upstream_requests,
            retries,
            circuit_transitions: transitions,
            fallbacks,
            failures,
        }
    }
}

fn percentiles(samples: &[Sample]) -> Percentiles {
    let mut latencies: Vec<Duration> = samples.iter().map(|sample| sample.latency).collect();
    latencies.sort_unstable();
    let at = |quantile: f64| {
        if latencies.is_empty() {
            return 0.0;
        }
        let rank = (quantile * latencies.len() as f64).ceil() as usize;
        let index = rank.clamp(1, latencies.len()) - 1;
        latencies[index].as_secs_f64() * 1000.0
    };
    Percentiles {
        p50: at(0.50),
        p95: at(0.95),
        p99: at(0.99),
    }
}

impl DemoReport {
    /// Returns the report as a table of text.
    pub fn to_table(&self) -> String {
        let mut rows: Vec<(String, String, String)> = Vec::new();
        let mut row = |label: &str, direct: String, gateway: String| {
            rows.push((label.to_owned(), direct, gateway));
        };
        let (direct, gateway) = (&self.direct, &self.gateway);
        let dash = || "-".to_owned();
        let optional = |value: Option<u64>| value.map_or_else(dash, |value| value.to_string());

        row(
            "success rate",
            percent(direct.success_rate),
            percent(gateway.success_rate),
        );
        row(
            "answered",
            direct.succeeded.to_string(),
            gateway.succeeded.to_string(),
        );
        row(
            "degraded answers",
            direct.degraded.to_string(),
            gateway.degraded.to_string(),
        );
        row(
            "failed",
            direct.failed.to_string(),
            gateway.failed.to_string(),
        );
        let failure_keys: std::collections::BTreeSet<&String> = direct
            .failures
            .keys()
            .chain(gateway.failures.keys())
            .collect();
        for key in failure_keys {
            let count = |run: &RunReport| run.failures.get(key).copied().unwrap_or(0).to_string();
            row(&format!("  failed: {key}"), count(direct), count(gateway));
        }
        row(
            "latency p50",
            millis(direct.latency_ms.p50),
            millis(gateway.latency_ms.p50),
        );
        row(
            "latency p95",
            millis(direct.latency_ms.p95),
            millis(gateway.latency_ms.p95),
        );
        row(
            "latency p99",
            millis(direct.latency_ms.p99),
            millis(gateway.latency_ms.p99),
        );
        row(
            "requests the providers received",
            direct.upstream_requests.to_string(),
            gateway.upstream_requests.to_string(),
        );
        row(
            "retries",
            optional(direct.retries),
            optional(gateway.retries),
        );
        row(
            "circuit transitions",
            optional(direct.circuit_transitions),
            optional(gateway.circuit_transitions),
        );
        for (strategy, label) in [
            ("cache", "fallback: fresh cache"),
            ("stale", "fallback: stale cache"),
            ("provider", "fallback: alternate provider"),
            ("degraded", "fallback: degraded answer"),
            ("error", "fallback: error"),
        ] {
            let count = |run: &RunReport| {
                run.fallbacks
                    .get(strategy)
                    .map_or_else(dash, |count| count.to_string())
            };
            row(label, count(direct), count(gateway));
        }

        let mut text = String::new();
        let _ = writeln!(
            text,
            "{:<34}{:>20}{:>22}",
            "", "direct to provider", "through the gateway"
        );
        for (label, direct, gateway) in rows {
            let _ = writeln!(text, "{label:<34}{direct:>20}{gateway:>22}");
        }
        text
    }
}

fn percent(value: f64) -> String {
    format!("{value:.1} %")
}

fn millis(value: f64) -> String {
    format!("{value:.0} ms")
}
