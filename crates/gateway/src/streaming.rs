//! Forwarding a committed stream to the client: no retry after the first content event, an
//! explicit error event on a break, a stall or a missing finish reason, and the outcome recorded
//! when the stream ends.
//!
//! A spawned task owns the upstream body and the attempt's [`OutcomeHandle`](resilience::OutcomeHandle).
//! It reads the upstream and sends each event into a small bounded channel that the response body
//! reads. Both the read and the send are bounded by the idle timeout and the attempt's deadline.
//! Hyper stops polling a response body while the client's receive window is full, so a check made
//! only when the body is polled never runs for a client that stops reading. The task's own timers
//! free the bulkhead slot whatever the client does.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{stream, Stream, StreamExt};
use resilience::log_limit::LogLimit;
use resilience::{FailureClass, NeutralReason, Outcome};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{timeout_at, Instant};

use crate::deadline;
use crate::metrics::{Metrics, StreamEnd};
use crate::sse::{EventKind, SseEvent};
use crate::upstream::{stream_error_class, CommittedStream};

/// Events buffered between the upstream reader and the response body. Small, so that a client
/// that stops reading blocks the reader soon and the idle timeout starts counting.
const CHANNEL_EVENTS: usize = 8;

/// Returns the bytes to send to the client for a committed stream, and spawns the task that reads
/// the upstream. Call it inside a tokio runtime.
///
/// The stream ends with `data: [DONE]` after a finish reason, or with an error event in the
/// OpenAI error shape otherwise. The task ends, closes the upstream connection and frees the
/// bulkhead slot:
/// - when the upstream ends, breaks, stalls past the idle timeout or sends an error event;
/// - when the attempt's deadline passes;
/// - when the client has not taken an event for the idle timeout: the attempt counts as cancelled,
///   and a client that reads again gets what was buffered and then an error event;
/// - at once when the returned stream is dropped (the client went away): the attempt counts as
///   cancelled.
///
/// `error_log` limits the warnings of streams that the upstream failed.
pub fn forward(
    committed: CommittedStream,
    metrics: Metrics,
    error_log: Arc<LogLimit>,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send {
    let (events, events_rx) = mpsc::channel(CHANNEL_EVENTS);
    let (last, last_rx) = oneshot::channel();
    let pump = Pump {
        committed,
        choices: Choices::default(),
        events,
    };
    tokio::spawn(pump.run(last, metrics, error_log));
    body(events_rx, last_rx)
}

/// Builds the response body: every event the task sent, then its last event.
fn body(
    events: mpsc::Receiver<Bytes>,
    last: oneshot::Receiver<Bytes>,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send {
    stream::unfold((events, Some(last)), |(mut events, last)| async move {
        if let Some(bytes) = events.recv().await {
            return Some((Ok(bytes), (events, last)));
        }
        // A task that ended without a last event was aborted, which only a runtime shutdown does.
        let bytes = last?.await.unwrap_or_else(|_| {
            error_event(
                "stream_broken",
                "the gateway stopped forwarding the stream; the answer is incomplete",
            )
        });
        Some((Ok(bytes), (events, None)))
    })
}

/// The reason the task stopped forwarding.
enum Ending {
    /// A finish reason, then `[DONE]` or the end of the upstream body.
    Clean,
    /// The upstream failed the stream.
    Upstream(StreamEnd),
    /// The client did not take an event within the idle timeout.
    ClientStalled,
    /// The attempt's deadline passed while the task waited for the client to take an event.
    ClientTimedOut,
    /// The client went away.
    ClientGone,
}

struct Pump {
    committed: CommittedStream,
    choices: Choices,
    events: mpsc::Sender<Bytes>,
}

/// The choices seen in a stream and those that sent a `finish_reason`. With `n` > 1 the response is
/// complete only when every choice has finished.
#[derive(Debug, Default)]
struct Choices {
    started: BTreeSet<u64>,
    finished: BTreeSet<u64>,
}

impl Choices {
    fn record(&mut self, event: &SseEvent) {
        for (index, finished) in event.choice_finishes() {
            self.started.insert(index);
            if finished {
                self.finished.insert(index);
            }
        }
    }

    /// Returns true once a choice has finished and no choice is still open.
    fn complete(&self) -> bool {
        !self.finished.is_empty() && self.started.is_subset(&self.finished)
    }
}

impl Pump {
    async fn run(
        mut self,
        last: oneshot::Sender<Bytes>,
        metrics: Metrics,
        error_log: Arc<LogLimit>,
    ) {
        let ending = self.forward().await;
        let (outcome, end, last_event) = conclude(ending, &self.committed.provider, &error_log);

        if let Some(handle) = self.committed.handle.take() {
            handle.record(outcome);
        }
        metrics.stream_ended(end);
        if let Some(bytes) = last_event {
            // The client may be gone already; then nobody reads the last event.
            let _ = last.send(bytes);
        }
    }

    /// Forwards events until the stream ends, and returns how it ended.
    async fn forward(&mut self) -> Ending {
        loop {
            while let Some(event) = self.committed.pending.pop_front() {
                if let Err(ending) = self.forward_event(event).await {
                    return ending;
                }
            }
            if let Err(ending) = self.read_upstream().await {
                return ending;
            }
        }
    }

    async fn forward_event(&mut self, event: SseEvent) -> Result<(), Ending> {
        match event.kind() {
            EventKind::Done if self.choices.complete() => Err(Ending::Clean),
            EventKind::Done => Err(Ending::Upstream(StreamEnd::Truncated)),
            EventKind::Error => {
                let class = stream_error_class(&event.data);
                Err(Ending::Upstream(StreamEnd::UpstreamError(class)))
            }
            EventKind::Content { .. } | EventKind::Empty => {
                self.choices.record(&event);
                self.send(event.to_bytes()).await
            }
            EventKind::Unparsed => self.send(event.to_bytes()).await,
        }
    }

    /// Sends bytes to the response body, waiting at most the idle timeout and never past the
    /// attempt's deadline.
    ///
    /// NOTE: the wait measures how long the channel stays full, not the client's reads. A client
    /// that reads more slowly than the upstream sends fills the socket buffers (megabytes on
    /// loopback), and the kernel wakes the writer only after a large part of them drains, so such a
    /// client can be ended as stalled although it still reads a little.
    async fn send(&mut self, bytes: Bytes) -> Result<(), Ending> {
        let deadline = self.committed.deadline;
        if Instant::now() >= deadline {
            return Err(Ending::ClientTimedOut);
        }
        let send_deadline = deadline::within(deadline, self.committed.idle);
        match timeout_at(send_deadline, self.events.send(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Ending::ClientGone),
            Err(_) if send_deadline >= deadline => Err(Ending::ClientTimedOut),
            Err(_) => Err(Ending::ClientStalled),
        }
    }

    /// Reads the next upstream chunk into `pending`, waiting at most the idle timeout and never
    /// past the attempt's deadline; returns early when the client goes away.
    async fn read_upstream(&mut self) -> Result<(), Ending> {
        let deadline = self.committed.deadline;
        let read_deadline = deadline::within(deadline, self.committed.idle);
        let read = tokio::select! {
            biased;
            () = self.events.closed() => return Err(Ending::ClientGone),
            read = timeout_at(read_deadline, self.committed.body.next()) => read,
        };
        let chunk = match read {
            // A finish reason already arrived, so the response is complete. A provider that stalls
            // before closing (waiting to send usage, say) does not make it a failure.
            Err(_) if self.choices.complete() => return Err(Ending::Clean),
            Err(_) if read_deadline >= deadline => {
                return Err(Ending::Upstream(StreamEnd::TimedOut))
            }
            Err(_) => return Err(Ending::Upstream(StreamEnd::Stalled)),
            Ok(None) if self.choices.complete() => return Err(Ending::Clean),
            Ok(None) => return Err(Ending::Upstream(StreamEnd::Truncated)),
            Ok(Some(Err(_))) => return Err(Ending::Upstream(StreamEnd::Broken)),
            Ok(Some(Ok(chunk))) => chunk,
        };

        let mut events = Vec::new();
        if self.committed.parser.push(&chunk, &mut events).is_err() {
            return Err(Ending::Upstream(StreamEnd::Broken));
        }
        self.committed.pending.extend(events);
        Ok(())
    }
}

/// Returns the outcome to record, the metric's label and the last event to send for `ending`, and
/// logs the ending.
fn conclude(
    ending: Ending,
    provider: &str,
    error_log: &LogLimit,
) -> (Outcome, StreamEnd, Option<Bytes>) {
    match ending {
        Ending::Clean => (
            Outcome::Success,
            StreamEnd::Complete,
            Some(Bytes::from_static(b"data: [DONE]\n\n")),
        ),
        Ending::Upstream(end) => {
            let (class, code, message) = upstream_failure(end);
            if let Some(suppressed) = error_log.allow() {
                tracing::warn!(provider, code, suppressed, "stream ended with an error");
            }
            (
                Outcome::failure(class),
                end,
                Some(error_event(code, message)),
            )
        }
        Ending::ClientStalled => {
            tracing::debug!(provider, "ending a stream that the client stopped reading");
            (
                Outcome::Neutral(NeutralReason::Cancelled),
                StreamEnd::ClientStalled,
                Some(typed_error_event(
                    "invalid_request_error",
                    "client_read_timeout",
                    "the client did not read the stream within the idle timeout \
                     (timeouts.idle); the answer is incomplete",
                )),
            )
        }
        Ending::ClientTimedOut => {
            tracing::debug!(
                provider,
                "ending a stream that reached its deadline while the client was not reading"
            );
            (
                Outcome::Neutral(NeutralReason::Cancelled),
                StreamEnd::ClientStalled,
                Some(error_event(
                    "stream_timeout",
                    "the stream did not finish within timeouts.attempt or \
                     server.request_timeout; the answer is incomplete",
                )),
            )
        }
        Ending::ClientGone => (
            Outcome::Neutral(NeutralReason::Cancelled),
            StreamEnd::ClientGone,
            None,
        ),
    }
}

/// Returns the failure class, the error code and the message for an upstream failure.
fn upstream_failure(end: StreamEnd) -> (FailureClass, &'static str, &'static str) {
    match end {
        StreamEnd::Stalled => (
            FailureClass::Timeout,
            "stream_stalled",
            "the upstream stopped sending before the answer was complete",
        ),
        StreamEnd::TimedOut => (
            FailureClass::Timeout,
            "stream_timeout",
            "the stream did not finish within timeouts.attempt or server.request_timeout; \
             the answer is incomplete",
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
        StreamEnd::Broken
        | StreamEnd::Complete
        | StreamEnd::ClientGone
        | StreamEnd::ClientStalled => (
            FailureClass::Transport,
            "stream_broken",
            "the connection to the upstream broke before the answer was complete",
        ),
    }
}

/// Returns an error event of the upstream's or the gateway's making, in the OpenAI error shape.
fn error_event(code: &str, message: &str) -> Bytes {
    typed_error_event("upstream_error", code, message)
}

fn typed_error_event(kind: &str, code: &str, message: &str) -> Bytes {
    let event = json!({
        "error": {"message": message, "type": kind, "param": null, "code": code}
    });
    Bytes::from(format!("data: {event}\n\n"))
}

#[cfg(test)]
mod choice_tests {
    use super::*;

    fn event(data: &str) -> SseEvent {
        SseEvent {
            event: None,
            data: data.to_owned(),
        }
    }

    #[test]
    fn one_choice_completes_on_finish() {
        let mut choices = Choices::default();
        choices.record(&event(
            r#"{"choices":[{"index":0,"delta":{"content":"Hi"}}]}"#,
        ));
        assert!(!choices.complete());
        choices.record(&event(
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
        ));
        assert!(choices.complete());
    }

    #[test]
    fn open_choice_keeps_stream_incomplete() {
        let mut choices = Choices::default();
        choices.record(&event(
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"},{"index":1,"delta":{"content":"still"}}]}"#,
        ));
        assert!(!choices.complete(), "choice 1 has not finished");
        choices.record(&event(
            r#"{"choices":[{"index":1,"delta":{},"finish_reason":"length"}]}"#,
        ));
        assert!(choices.complete());
    }

    #[test]
    fn choice_without_index_is_zero() {
        let mut choices = Choices::default();
        choices.record(&event(
            r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#,
        ));
        assert!(choices.complete());
        choices.record(&event("not json"));
        assert!(choices.complete());
    }
}
