//! The demo's providers, their faults, and the gateway configuration in front of them.

use std::time::Duration;

use crate::mock::{MockConfig, MockProvider};

/// The model the load requests; the primary provider serves it.
pub(super) const MODEL: &str = "demo-model";

/// When the primary provider is down, measured from its start.
pub(super) const OUTAGE: std::ops::Range<Duration> =
    Duration::from_millis(800)..Duration::from_millis(1600);

/// The primary provider: a share of 503s, 429s with `Retry-After`, resets, slow responses, and an
/// outage window.
pub(super) fn primary(seed: u64) -> MockConfig {
    MockConfig {
        seed,
        latency: Duration::from_millis(40),
        server_error_share: 0.10,
        rate_limit_share: 0.05,
        rate_limit_retry_after: Some(Duration::from_millis(150)),
        reset_share: 0.03,
        slow_share: 0.05,
        slow_latency: Duration::from_millis(400),
        outages: vec![OUTAGE],
        ..MockConfig::named("primary")
    }
}

/// The alternate provider: healthy, a little slower.
pub(super) fn secondary(seed: u64) -> MockConfig {
    MockConfig {
        seed: seed.wrapping_add(1),
        latency: Duration::from_millis(60),
        ..MockConfig::named("secondary")
    }
}

/// The smallest bulkhead of each provider in the demo's gateway.
const MIN_BULKHEAD: usize = 32;

/// Returns the gateway configuration for the two providers, with a bulkhead that admits
/// `concurrency` requests at once on each provider, so that the report shows the faults of the
/// providers and not a bulkhead smaller than the load.
pub(super) fn gateway_toml(
    primary: &MockProvider,
    secondary: &MockProvider,
    concurrency: usize,
) -> String {
    let max_concurrent = concurrency.max(MIN_BULKHEAD);
    let max_queue = 2 * max_concurrent;
    format!(
        r#"
[server]
max_body_bytes = 65536
request_timeout = "5s"

[timeouts]
connect = "500ms"
status = "1s"
first_event = "1s"
idle = "1s"
attempt = "3s"

[degraded]
message = "The assistant is busy right now. Please try again in a minute."

[[upstreams]]
name = "primary"
base_url = "{primary}"
models = ["{MODEL}"]
resilience = {{ fallback = {{ alternate_providers = ["secondary"] }} }}

[[upstreams]]
name = "secondary"
base_url = "{secondary}"
models = ["demo-backup"]

[resilience.defaults.circuit_breaker]
failure_threshold = 5
success_threshold = 2
timeout = "300ms"
half_open_max_requests = 2

[resilience.defaults.bulkhead]
max_concurrent = {max_concurrent}
max_queue = {max_queue}
queue_timeout = "1s"

[resilience.defaults.retry]
max_retries = 2
initial_backoff = "20ms"
max_backoff = "400ms"

[resilience.defaults.fallback]
strategies = ["cache", "provider", "stale", "degraded", "error"]
cache_ttl = "1s"
stale_ttl = "1m"
"#,
        primary = primary.base_url(),
        secondary = secondary.base_url(),
    )
}
