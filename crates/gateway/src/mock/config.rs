//! What a mock provider does: its response, its random faults, its outage windows and its streams.

use std::ops::Range;
use std::time::Duration;

/// One fault, or a normal response, that a mock provider applies to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// A normal response after the configured latency.
    None,
    /// An OpenAI-shaped error with this status, such as 503, 400 or 401.
    Status(u16),
    /// An HTML error page with this status, as a proxy in front of a provider sends.
    HtmlStatus(u16),
    /// A 429 rate-limit error, with a `Retry-After` header (in seconds, decimals allowed) when set.
    RateLimited {
        /// The hint sent in `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// A 429 whose body states the quota is exhausted (`insufficient_quota`).
    QuotaExhausted,
    /// The connection is closed after the request was read, without any response.
    Reset,
    /// A normal response after this extra delay.
    Slow(Duration),
    /// No response until [`MockConfig::stall_limit`] passes or the client goes away.
    Stall,
    /// A normal response; a streamed one follows this [`StreamConfig`].
    Stream(StreamConfig),
}

/// Settings of a mock provider.
///
/// Shares are probabilities in `[0, 1]`, drawn per request in this order: reset, 503, 429, slow.
/// Their sum should stay at or below 1; whatever is left is a normal response.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use resilience_gateway::mock::MockConfig;
///
/// let config = MockConfig {
///     server_error_share: 0.2,
///     rate_limit_share: 0.1,
///     rate_limit_retry_after: Some(Duration::from_millis(50)),
///     ..MockConfig::named("primary")
/// };
/// assert_eq!(config.name, "primary");
/// ```
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// The provider's name, used in its responses' `id` and content.
    pub name: String,
    /// The seed of the fault draws; the same seed gives the same fault for the same request index.
    pub seed: u64,
    /// The text of every response.
    pub reply: String,
    /// The delay before every response.
    pub latency: Duration,
    /// The share of requests that get their response after [`slow_latency`](Self::slow_latency) more.
    pub slow_share: f64,
    /// The extra delay of a slow response.
    pub slow_latency: Duration,
    /// The share of requests that get 503.
    pub server_error_share: f64,
    /// The share of requests that get a 429 rate-limit error.
    pub rate_limit_share: f64,
    /// The `Retry-After` sent with a random 429.
    pub rate_limit_retry_after: Option<Duration>,
    /// The share of requests whose connection is closed without a response.
    pub reset_share: f64,
    /// Windows of time since the provider started during which it applies
    /// [`outage_fault`](Self::outage_fault) to every request.
    pub outages: Vec<Range<Duration>>,
    /// What the provider does during an outage (default: 503).
    pub outage_fault: Fault,
    /// Whether every request gets a quota-exhausted 429.
    pub quota_exhausted: bool,
    /// The API key the provider expects as `Authorization: Bearer KEY`; `None` accepts any request.
    pub api_key: Option<String>,
    /// The maximum time a stalled request or stream waits before the provider gives up on it.
    pub stall_limit: Duration,
    /// The behaviour of streamed responses.
    pub stream: StreamConfig,
}

impl MockConfig {
    /// Returns a healthy provider with this name: no faults, no latency, a fixed seed.
    pub fn named(name: &str) -> Self {
        MockConfig {
            name: name.to_owned(),
            seed: 1,
            reply: format!("Hello from {name}."),
            latency: Duration::ZERO,
            slow_share: 0.0,
            slow_latency: Duration::from_millis(200),
            server_error_share: 0.0,
            rate_limit_share: 0.0,
            rate_limit_retry_after: None,
            reset_share: 0.0,
            outages: Vec::new(),
            outage_fault: Fault::Status(503),
            quota_exhausted: false,
            api_key: None,
            stall_limit: Duration::from_secs(10),
            stream: StreamConfig::default(),
        }
    }
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig::named("mock")
    }
}

/// The behaviour of a streamed mock response (`"stream": true`).
///
/// A stream sends a role-only chunk, the reply split into [`chunks`](Self::chunks) content
/// chunks, a chunk with `finish_reason: "stop"`, and `data: [DONE]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConfig {
    /// The number of content chunks (at least 1).
    pub chunks: usize,
    /// The delay before each content chunk.
    pub chunk_delay: Duration,
    /// Breaks the connection after this many content chunks.
    pub break_after: Option<usize>,
    /// Stops sending, without closing, after this many content chunks.
    pub stall_after: Option<usize>,
    /// Leaves out the `finish_reason` chunk and `[DONE]`, so the stream just ends.
    pub omit_finish_reason: bool,
    /// Stops sending, without closing, after the `finish_reason` chunk instead of sending `[DONE]`.
    pub stall_after_finish: bool,
    /// Sends an in-band error event (an `overloaded_error`) in place of any content, then ends.
    pub error_event: bool,
    /// Sends `event: error` with plain-text data after this many content chunks, then ends.
    pub plain_error_after: Option<usize>,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            chunks: 3,
            chunk_delay: Duration::ZERO,
            break_after: None,
            stall_after: None,
            stall_after_finish: false,
            omit_finish_reason: false,
            error_event: false,
            plain_error_after: None,
        }
    }
}
