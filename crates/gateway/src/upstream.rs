//! Calls to upstream providers: the request, the phase timeouts, the upstream's errors and their
//! classification, and the part of a stream that arrives before its first content event.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::{header, HeaderMap, HeaderValue, StatusCode};
use resilience::http::HttpClassifier;
use resilience::{Classify, FailureClass, Outcome, OutcomeHandle};
use tokio::time::{timeout_at, Instant};

use crate::config::{Timeouts, UpstreamConfig};
use crate::deadline;
use crate::sse::{EventKind, SseEvent, SseParser};

/// The largest upstream response body read into memory; a larger one fails the attempt.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// Events kept before the first content event; a stream that sends more fails the attempt.
const MAX_EVENTS_BEFORE_CONTENT: usize = 256;

/// One upstream provider, with its API key resolved.
pub struct Upstream {
    /// The provider's name.
    pub name: Arc<str>,
    /// The URL of its chat completions endpoint.
    pub url: String,
    api_key: Option<String>,
    /// The models it serves; the first is used when it serves as an alternate for another provider's model.
    pub models: Vec<String>,
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The API key is left out on purpose.
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("has_api_key", &self.api_key.is_some())
            .field("models", &self.models)
            .finish()
    }
}

impl Upstream {
    /// Creates an upstream from its configuration and its API key.
    pub fn new(config: &UpstreamConfig, api_key: Option<String>) -> Self {
        Upstream {
            name: Arc::from(config.name.as_str()),
            url: format!("{}/chat/completions", config.base_url.trim_end_matches('/')),
            api_key,
            models: config.models.clone(),
        }
    }

    /// Returns the request body for this upstream: `body` unchanged when it serves `model`, or
    /// with `model` replaced by this upstream's first model when it serves as an alternate.
    pub fn body_for(&self, model: &str, body: &Bytes) -> Bytes {
        if self.models.iter().any(|served| served == model) {
            return body.clone();
        }
        let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(body) else {
            return body.clone();
        };
        if let (Some(object), Some(own)) = (value.as_object_mut(), self.models.first()) {
            object.insert("model".to_owned(), serde_json::Value::String(own.clone()));
        }
        serde_json::to_vec(&value)
            .map(Bytes::from)
            .unwrap_or_else(|_| body.clone())
    }
}

/// A request on its way upstream.
#[derive(Debug)]
pub struct UpstreamCall<'a> {
    /// The HTTP client.
    pub client: &'a reqwest::Client,
    /// The provider.
    pub upstream: &'a Upstream,
    /// The body to send.
    pub body: Bytes,
    /// The phase timeouts.
    pub timeouts: Timeouts,
    /// When the client's request times out; every phase ends by then.
    pub deadline: Instant,
}

/// A response from upstream, as the manager stores and the fallback cache clones it.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A complete response body.
    Complete(Arc<CompleteReply>),
    /// A stream whose first content event has arrived.
    Stream(StreamCell),
}

/// A complete response body and its content type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompleteReply {
    /// The upstream's status.
    pub status: StatusCode,
    /// The upstream's `Content-Type`.
    pub content_type: Option<HeaderValue>,
    /// The body, unchanged.
    pub body: Bytes,
}

/// A committed stream that can be taken once. It is shared so that [`Reply`] can be cloned, but
/// streams are never cached, so only the request that made it takes it.
#[derive(Clone)]
pub struct StreamCell(Arc<Mutex<Option<CommittedStream>>>);

impl fmt::Debug for StreamCell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StreamCell")
    }
}

impl StreamCell {
    fn new(stream: CommittedStream) -> Self {
        StreamCell(Arc::new(Mutex::new(Some(stream))))
    }

    /// Takes the stream; returns `None` if it was taken already.
    pub fn take(&self) -> Option<CommittedStream> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// The upstream's byte stream.
pub type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// A stream past its first content event: what was received and not yet sent, and the rest.
pub struct CommittedStream {
    /// The provider that sends it.
    pub provider: Arc<str>,
    /// Events received and not yet sent to the client.
    pub pending: VecDeque<SseEvent>,
    /// The rest of the upstream's body.
    pub body: ByteStream,
    /// The parser holding any partial event.
    pub parser: SseParser,
    /// Keeps the breaker permit and the bulkhead slot until the stream ends.
    pub handle: Option<OutcomeHandle>,
    /// The maximum gap between two upstream reads.
    pub idle: std::time::Duration,
    /// When the attempt times out.
    pub deadline: Instant,
}

impl fmt::Debug for CommittedStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommittedStream")
            .field("provider", &self.provider)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

/// Why an upstream attempt failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// The upstream responded with a status other than 2xx.
    #[error("upstream responded with status {status}")]
    Status {
        /// The status.
        status: StatusCode,
        /// The response headers.
        headers: HeaderMap,
        /// The response body.
        body: Bytes,
    },
    /// The connection failed or broke.
    #[error("upstream connection failed: {0}")]
    Transport(#[source] reqwest::Error),
    /// A phase of the attempt took too long.
    #[error("timed out waiting for the upstream's {phase}")]
    Timeout {
        /// The phase: `status`, `body`, `first event`.
        phase: &'static str,
    },
    /// The response body exceeded [`MAX_RESPONSE_BYTES`].
    #[error("upstream response body exceeded {MAX_RESPONSE_BYTES} bytes")]
    BodyTooLarge,
    /// The stream sent an error event before its first content event.
    #[error("upstream stream sent an error event before any content")]
    StreamError {
        /// The event's data.
        data: String,
    },
    /// The stream ended, or sent `[DONE]`, before its first content event.
    #[error("upstream stream ended before any content")]
    StreamEndedEarly,
    /// The stream was malformed before its first content event.
    #[error("upstream stream is malformed: {reason}")]
    StreamMalformed {
        /// What was wrong.
        reason: &'static str,
    },
}

/// Classifies upstream results with the library's [`HttpClassifier`].
///
/// The gateway's own timeouts are not retried on the same provider, because a provider that
/// accepts a connection and then stays silent would otherwise cost one timeout per retry; they
/// still count against its circuit, and the fallback chain runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct GatewayClassifier {
    http: HttpClassifier,
}

impl Classify<Reply, UpstreamError> for GatewayClassifier {
    fn classify(&self, result: &Result<Reply, UpstreamError>) -> Outcome {
        let Err(error) = result else {
            return Outcome::Success;
        };
        match error {
            UpstreamError::Status {
                status,
                headers,
                body,
            } => self.http.classify_response(*status, headers, Some(body)),
            UpstreamError::Transport(error) => self.http.classify_error(error),
            UpstreamError::Timeout { .. } => {
                Outcome::Failure(resilience::Failure::new(FailureClass::Timeout).retryable(false))
            }
            UpstreamError::BodyTooLarge => Outcome::Failure(
                resilience::Failure::new(FailureClass::Other)
                    .retryable(false)
                    .trips_circuit(false),
            ),
            UpstreamError::StreamError { data } => Outcome::failure(stream_error_class(data)),
            UpstreamError::StreamEndedEarly | UpstreamError::StreamMalformed { .. } => {
                Outcome::failure(FailureClass::Transport)
            }
        }
    }
}

/// Returns the class of an in-band stream error from its data.
pub fn stream_error_class(data: &str) -> FailureClass {
    if data.contains("overloaded") {
        FailureClass::Overloaded
    } else {
        FailureClass::Server
    }
}

impl UpstreamCall<'_> {
    /// Sends the request and waits for the status line; a non-2xx status becomes
    /// [`UpstreamError::Status`] with its body.
    async fn send(&self, attempt_deadline: Instant) -> Result<reqwest::Response, UpstreamError> {
        let mut request = self
            .client
            .post(&self.upstream.url)
            .header(header::CONTENT_TYPE, "application/json")
            .body(self.body.clone());
        if let Some(key) = &self.upstream.api_key {
            request = request.bearer_auth(key);
        }
        let status_deadline = deadline::within(attempt_deadline, self.timeouts.status);
        let response = timeout_at(status_deadline, request.send())
            .await
            .map_err(|_| UpstreamError::Timeout { phase: "status" })?
            .map_err(UpstreamError::Transport)?;
        if response.status().is_success() {
            return Ok(response);
        }

        let status = response.status();
        let headers = response.headers().clone();
        let body = read_body(response, attempt_deadline).await?;
        Err(UpstreamError::Status {
            status,
            headers,
            body,
        })
    }

    /// Makes a non-streaming attempt and returns the whole response.
    pub async fn complete(self) -> Result<Reply, UpstreamError> {
        let attempt_deadline = self.attempt_deadline();
        let response = self.send(attempt_deadline).await?;
        let status = response.status();
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
        let body = read_body(response, attempt_deadline).await?;
        Ok(Reply::Complete(Arc::new(CompleteReply {
            status,
            content_type,
            body,
        })))
    }

    /// Makes a streaming attempt and returns once the first content event has arrived, so that a
    /// failure before it can still be retried or fall back.
    pub async fn stream(self, handle: OutcomeHandle) -> Result<Reply, UpstreamError> {
        let attempt_deadline = self.attempt_deadline();
        let response = self.send(attempt_deadline).await?;
        let mut body: ByteStream = Box::pin(response.bytes_stream());
        let mut parser = SseParser::new();
        let mut pending = VecDeque::new();
        let first_event_deadline = deadline::within(attempt_deadline, self.timeouts.first_event);

        loop {
            let chunk = timeout_at(first_event_deadline, body.next())
                .await
                .map_err(|_| UpstreamError::Timeout {
                    phase: "first event",
                })?;
            let chunk = match chunk {
                Some(chunk) => chunk.map_err(UpstreamError::Transport)?,
                None => return Err(UpstreamError::StreamEndedEarly),
            };
            let mut events = Vec::new();
            parser
                .push(&chunk, &mut events)
                .map_err(|_| UpstreamError::StreamMalformed {
                    reason: "an event line is too long",
                })?;

            let mut events = events.into_iter();
            while let Some(event) = events.next() {
                match event.kind() {
                    EventKind::Done => return Err(UpstreamError::StreamEndedEarly),
                    EventKind::Error => {
                        return Err(UpstreamError::StreamError { data: event.data })
                    }
                    EventKind::Content { .. } => {
                        pending.push_back(event);
                        pending.extend(events);
                        return Ok(Reply::Stream(StreamCell::new(CommittedStream {
                            provider: self.upstream.name.clone(),
                            pending,
                            body,
                            parser,
                            handle: Some(handle),
                            idle: self.timeouts.idle,
                            deadline: attempt_deadline,
                        })));
                    }
                    EventKind::Empty | EventKind::Unparsed => {
                        if pending.len() >= MAX_EVENTS_BEFORE_CONTENT {
                            return Err(UpstreamError::StreamMalformed {
                                reason: "too many events before the first content event",
                            });
                        }
                        pending.push_back(event);
                    }
                }
            }
        }
    }

    fn attempt_deadline(&self) -> Instant {
        deadline::within(self.deadline, self.timeouts.attempt)
    }
}

async fn read_body(
    mut response: reqwest::Response,
    deadline: Instant,
) -> Result<Bytes, UpstreamError> {
    let read = async {
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(UpstreamError::Transport)? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(UpstreamError::BodyTooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(body))
    };
    timeout_at(deadline, read)
        .await
        .map_err(|_| UpstreamError::Timeout { phase: "body" })?
}
