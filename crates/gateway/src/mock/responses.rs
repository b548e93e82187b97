//! The bodies a mock provider sends: completions, OpenAI error objects and server-sent events.

use std::convert::Infallible;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use serde_json::{json, Value};

use super::config::StreamConfig;

pub(super) type MockBody = BoxBody<Bytes, io::Error>;

/// The completion's `created` field: a fixed time, so responses are the same on every run.
const CREATED: u64 = 1_700_000_000;

pub(super) fn completion(
    provider: &str,
    model: &str,
    reply: &str,
    request: u64,
) -> Response<MockBody> {
    let body = json!({
        "id": format!("chatcmpl-{provider}-{request}"),
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": reply},
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}
    });
    json_response(StatusCode::OK, &body)
}

pub(super) fn error(
    status: StatusCode,
    kind: &str,
    code: &str,
    message: &str,
) -> Response<MockBody> {
    let body = json!({
        "error": {"message": message, "type": kind, "param": null, "code": code}
    });
    json_response(status, &body)
}

pub(super) fn error_for_status(status: StatusCode) -> Response<MockBody> {
    let (kind, code) = match status.as_u16() {
        400 | 409 | 413 | 415 | 422 => ("invalid_request_error", "invalid_request"),
        401 => ("invalid_request_error", "invalid_api_key"),
        403 => ("invalid_request_error", "forbidden"),
        404 => ("invalid_request_error", "model_not_found"),
        529 => ("overloaded_error", "overloaded"),
        _ => ("server_error", "server_error"),
    };
    let message = format!("simulated {status}");
    error(status, kind, code, &message)
}

pub(super) fn html_error(status: StatusCode) -> Response<MockBody> {
    let text = format!("<html><body><h1>{status}</h1></body></html>");
    let mut response = Response::new(full(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

pub(super) fn rate_limited(retry_after: Option<Duration>) -> Response<MockBody> {
    let mut response = error(
        StatusCode::TOO_MANY_REQUESTS,
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests. Please try again later.",
    );
    if let Some(delay) = retry_after {
        let seconds = format!("{:.3}", delay.as_secs_f64());
        if let Ok(value) = HeaderValue::from_str(&seconds) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
    }
    response
}

pub(super) fn quota_exhausted() -> Response<MockBody> {
    error(
        StatusCode::TOO_MANY_REQUESTS,
        "insufficient_quota",
        "insufficient_quota",
        "You exceeded your current quota, please check your plan and billing details.",
    )
}

fn json_response(status: StatusCode, body: &Value) -> Response<MockBody> {
    let mut response = Response::new(full(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn full(text: String) -> MockBody {
    Full::new(Bytes::from(text))
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// What a streamed response needs to know besides its [`StreamConfig`].
pub(super) struct StreamPlan {
    pub(super) provider: String,
    pub(super) model: String,
    pub(super) reply: String,
    pub(super) request: u64,
    pub(super) stall_limit: Duration,
    pub(super) open_streams: Arc<AtomicU64>,
}

/// One step of a streamed response.
enum Step {
    Event(Value),
    PlainError(&'static str),
    Done,
    Delay(Duration),
    Break,
}

pub(super) fn stream(plan: StreamPlan, config: &StreamConfig) -> Response<MockBody> {
    let steps = stream_steps(&plan, config);
    let guard = OpenStream::new(plan.open_streams.clone());

    let frames = stream::iter(steps).then(move |step| {
        // The guard lives as long as the body, so a client that goes away lowers the count.
        let _guard = &guard;
        async move {
            match step {
                Step::Event(event) => {
                    Some(Ok(Frame::data(Bytes::from(format!("data: {event}\n\n")))))
                }
                Step::PlainError(text) => Some(Ok(Frame::data(Bytes::from(format!(
                    "event: error\ndata: {text}\n\n"
                ))))),
                Step::Done => Some(Ok(Frame::data(Bytes::from_static(b"data: [DONE]\n\n")))),
                Step::Delay(delay) => {
                    tokio::time::sleep(delay).await;
                    None
                }
                Step::Break => Some(Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "simulated break in the stream",
                ))),
            }
        }
    });
    let frames = frames.filter_map(|frame| async move { frame });

    let mut response = Response::new(BodyExt::boxed(StreamBody::new(frames)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    response
}

fn stream_steps(plan: &StreamPlan, config: &StreamConfig) -> Vec<Step> {
    let id = format!("chatcmpl-{}-{}", plan.provider, plan.request);
    let chunk = |delta: Value, finish_reason: Value| {
        json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": plan.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
        })
    };

    let mut steps = vec![Step::Event(chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    ))];
    if config.error_event {
        steps.push(Step::Event(json!({
            "error": {"type": "overloaded_error", "message": "simulated overload in the stream"}
        })));
        return steps;
    }
    for (index, piece) in split_reply(&plan.reply, config.chunks)
        .into_iter()
        .enumerate()
    {
        if config.break_after == Some(index) {
            // A pause first, so hyper flushes the chunks sent so far before the connection breaks.
            steps.push(Step::Delay(Duration::from_millis(20)));
            steps.push(Step::Break);
            return steps;
        }
        if config.plain_error_after == Some(index) {
            steps.push(Step::PlainError("simulated upstream failure"));
            return steps;
        }
        if config.stall_after == Some(index) {
            steps.push(Step::Delay(plan.stall_limit));
            return steps;
        }
        if !config.chunk_delay.is_zero() {
            steps.push(Step::Delay(config.chunk_delay));
        }
        steps.push(Step::Event(chunk(json!({"content": piece}), Value::Null)));
    }
    if config.omit_finish_reason {
        return steps;
    }
    steps.push(Step::Event(chunk(json!({}), json!("stop"))));
    if config.stall_after_finish {
        steps.push(Step::Delay(plan.stall_limit));
        return steps;
    }
    steps.push(Step::Done);
    steps
}

/// Splits `reply` into `parts` non-empty pieces at character boundaries (fewer if it is short).
fn split_reply(reply: &str, parts: usize) -> Vec<String> {
    let length = reply.chars().count();
    let parts = parts.clamp(1, length.max(1));
    let size = length.div_ceil(parts).max(1);

    // Slices at every `size`-th character, so a long reply is copied once, not char by char.
    if reply.is_ascii() {
        return (0..length.div_ceil(size).max(1))
            .map(|index| reply[index * size..length.min((index + 1) * size)].to_owned())
            .collect();
    }
    let mut pieces = Vec::with_capacity(parts);
    let mut start = 0;
    for (index, (offset, _)) in reply.char_indices().enumerate() {
        if index > 0 && index % size == 0 {
            pieces.push(reply[start..offset].to_owned());
            start = offset;
        }
    }
    pieces.push(reply[start..].to_owned());
    pieces
}

/// Counts a stream as open from its creation until its body is dropped.
struct OpenStream(Arc<AtomicU64>);

impl OpenStream {
    fn new(counter: Arc<AtomicU64>) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        OpenStream(counter)
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::split_reply;

    #[test]
    fn split_reply_keeps_text() {
        assert_eq!(split_reply("", 3), vec![String::new()]);
        let multibyte = split_reply("héllo wörld", 4);
        assert_eq!(multibyte.concat(), "héllo wörld");
        assert_eq!(multibyte.len(), 4);
        for parts in [1, 2, 3, 7, 100] {
            let pieces = split_reply("Hello from primary.", parts);
            assert_eq!(pieces.concat(), "Hello from primary.", "parts {parts}");
            assert!(
                pieces.iter().all(|piece| !piece.is_empty()),
                "parts {parts}"
            );
            assert!(pieces.len() <= parts, "parts {parts}");
        }
    }
}
