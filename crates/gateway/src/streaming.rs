//! Forwarding a committed stream to the client: no retry after the first content event, an
//! explicit error event on a break, a stall or a missing finish reason, and the outcome recorded
//! when the stream ends.

use std::convert::Infallible;

use bytes::Bytes;
use futures_util::{stream, Stream, StreamExt};
use resilience::{FailureClass, Outcome};
use serde_json::json;
use tokio::time::{timeout_at, Instant};

use crate::metrics::{Metrics, StreamEnd};
use crate::sse::{EventKind, SseEvent};
use crate::upstream::{stream_error_class, CommittedStream};

/// Returns the bytes to send to the client for a committed stream.
///
/// When the returned stream is dropped before it ends (the client went away), the upstream
/// connection closes and the outcome handle is dropped, which frees the bulkhead slot at once and
/// counts the attempt as cancelled.
pub fn forward(
    committed: CommittedStream,
    metrics: Metrics,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send {
    let state = Forwarder {
        committed,
        finished: false,
        metrics,
    };
    stream::unfold(Some(state), |state| async move {
        let mut state = state?;
        match state.next().await {
            Step::Send(bytes) => Some((Ok(bytes), Some(state))),
            Step::End(bytes) => Some((Ok(bytes), None)),
        }
    })
}

struct Forwarder {
    committed: CommittedStream,
    /// Whether a chunk with a `finish_reason` was sent.
    finished: bool,
    metrics: Metrics,
}

enum Step {
    Send(Bytes),
    End(Bytes),
}

impl Forwarder {
    async fn next(&mut self) -> Step {
        loop {
            if let Some(event) = self.committed.pending.pop_front() {
                return self.forward_event(event);
            }
            if let Some(end) = self.read_upstream().await {
                return end;
            }
        }
    }

    fn forward_event(&mut self, event: SseEvent) -> Step {
        match event.kind() {
            EventKind::Done if self.finished => self.end_clean(),
            EventKind::Done => self.end_with_error(StreamEnd::Truncated),
            EventKind::Error => {
                let class = stream_error_class(&event.data);
                self.end_with_error(StreamEnd::UpstreamError(class))
            }
            EventKind::Content { finished, .. } => {
                self.finished |= finished;
                Step::Send(event.to_bytes())
            }
            EventKind::Empty | EventKind::Unparsed => Step::Send(event.to_bytes()),
        }
    }

    /// Reads the next upstream chunk into `pending`; returns the end of the stream if it ended.
    async fn read_upstream(&mut self) -> Option<Step> {
        let deadline = self
            .committed
            .deadline
            .min(Instant::now() + self.committed.idle);
        let chunk = match timeout_at(deadline, self.committed.body.next()).await {
            Err(_) => return Some(self.end_with_error(StreamEnd::Stalled)),
            Ok(None) if self.finished => return Some(self.end_clean()),
            Ok(None) => return Some(self.end_with_error(StreamEnd::Truncated)),
            Ok(Some(Err(_))) => return Some(self.end_with_error(StreamEnd::Broken)),
            Ok(Some(Ok(chunk))) => chunk,
        };
        let mut events = Vec::new();
        if self.committed.parser.push(&chunk, &mut events).is_err() {
            return Some(self.end_with_error(StreamEnd::Broken));
        }
        self.committed.pending.extend(events);
        None
    }

    fn end_clean(&mut self) -> Step {
        self.record(Outcome::Success, StreamEnd::Complete);
        Step::End(Bytes::from_static(b"data: [DONE]\n\n"))
    }

    fn end_with_error(&mut self, end: StreamEnd) -> Step {
        let (class, code, message) = match end {
            StreamEnd::Stalled => (
                FailureClass::Timeout,
                "stream_stalled",
                "the upstream stopped sending before the answer was complete",
            ),
            StreamEnd::Truncated => (
                FailureClass::Transport,
                "stream_truncated",
                "the upstream ended the stream without a finish reason; the answer is incomplete",
            ),
            StreamEnd::UpstreamError(class) => (
                class,
                "upstream_stream_error",
                "the upstream sent an error in the middle of the stream; the answer is incomplete",
            ),
            StreamEnd::Broken | StreamEnd::Complete | StreamEnd::ClientGone => (
                FailureClass::Transport,
                "stream_broken",
                "the connection to the upstream broke before the answer was complete",
            ),
        };
        self.record(Outcome::failure(class), end);
        tracing::warn!(provider = %self.committed.provider, code, "stream ended with an error");

        let event = json!({
            "error": {"message": message, "type": "upstream_error", "param": null, "code": code}
        });
        Step::End(Bytes::from(format!("data: {event}\n\n")))
    }

    fn record(&mut self, outcome: Outcome, end: StreamEnd) {
        if let Some(handle) = self.committed.handle.take() {
            handle.record(outcome);
        }
        self.metrics.stream_ended(end);
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        // Dropped before an end was recorded: the client went away. Dropping the handle counts
        // the attempt as cancelled and frees its bulkhead slot.
        if self.committed.handle.take().is_some() {
            self.metrics.stream_ended(StreamEnd::ClientGone);
        }
    }
}
