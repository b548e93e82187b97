//! The gateway's Prometheus metrics, served as OpenMetrics text on `/metrics`.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use resilience::FailureClass;

/// How a forwarded stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// With a finish reason and `[DONE]`.
    Complete,
    /// The upstream connection broke.
    Broken,
    /// The upstream sent nothing for longer than the idle timeout.
    Stalled,
    /// The attempt's deadline passed while the gateway waited for the upstream.
    TimedOut,
    /// The upstream ended without a finish reason.
    Truncated,
    /// The upstream sent an in-band error event.
    UpstreamError(FailureClass),
    /// The client went away first.
    ClientGone,
    /// The client took no event for the idle timeout, or until the attempt's deadline.
    ClientStalled,
}

impl StreamEnd {
    fn label(self) -> &'static str {
        match self {
            StreamEnd::Complete => "complete",
            StreamEnd::Broken => "broken",
            StreamEnd::Stalled => "stalled",
            StreamEnd::TimedOut => "timed_out",
            StreamEnd::Truncated => "truncated",
            StreamEnd::UpstreamError(_) => "upstream_error",
            StreamEnd::ClientGone => "client_gone",
            StreamEnd::ClientStalled => "client_stalled",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    source: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabels {
    end: &'static str,
}

/// The gateway's own metrics. Cloning is cheap; clones share the values.
#[derive(Debug, Clone)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    duration: Histogram,
    streams: Family<StreamLabels, Counter>,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Metrics {
            requests: Family::default(),
            duration: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            streams: Family::default(),
        };
        registry.register(
            "gateway_requests",
            "Chat completion requests by where the answer came from and the status sent",
            metrics.requests.clone(),
        );
        registry.register(
            "gateway_request_duration_seconds",
            "Time until the response head was sent, retries and fallbacks included",
            metrics.duration.clone(),
        );
        registry.register(
            "gateway_streams",
            "Forwarded streams by how they ended",
            metrics.streams.clone(),
        );
        metrics
    }

    /// Counts a request that ended with `status`, served from `source` (`primary`, `cache`,
    /// `stale`, `provider`, `degraded`, or `error` when the gateway responded with an error).
    pub fn request_finished(&self, source: &'static str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels { source, status })
            .inc();
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// Counts a stream that ended.
    pub fn stream_ended(&self, end: StreamEnd) {
        self.streams
            .get_or_create(&StreamLabels { end: end.label() })
            .inc();
    }
}
