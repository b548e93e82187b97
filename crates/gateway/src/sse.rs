//! A server-sent events parser for upstream streams, and the classification of each event.

use bytes::Bytes;
use serde_json::Value;

/// The maximum size of a line, and of an event's `data:` lines together, from an upstream stream.
/// A larger one ends the stream as broken instead of growing the buffer without bound.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// One event: its `event:` name, if any, and its `data:` lines joined with newlines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field.
    pub event: Option<String>,
    /// The `data:` field.
    pub data: String,
}

impl SseEvent {
    /// Returns the event in wire format, ending with the blank line.
    pub fn to_bytes(&self) -> Bytes {
        let mut text = String::with_capacity(self.data.len() + 16);
        if let Some(event) = &self.event {
            text.push_str("event: ");
            text.push_str(event);
            text.push('\n');
        }
        for line in self.data.split('\n') {
            text.push_str("data: ");
            text.push_str(line);
            text.push('\n');
        }
        text.push('\n');
        Bytes::from(text)
    }

    /// Returns what the event means for the stream's protocol.
    pub fn kind(&self) -> EventKind {
        if self.data.trim() == "[DONE]" {
            return EventKind::Done;
        }
        // An `error` event is an error whatever its data, JSON or plain text.
        if self.event.as_deref() == Some("error") {
            return EventKind::Error;
        }
        let Ok(value) = serde_json::from_str::<Value>(&self.data) else {
            return EventKind::Unparsed;
        };
        if value.get("error").is_some() {
            return EventKind::Error;
        }
        let Some(choices) = value.get("choices").and_then(Value::as_array) else {
            return EventKind::Empty;
        };
        let finished = choices.iter().any(|choice| {
            choice
                .get("finish_reason")
                .is_some_and(|reason| !reason.is_null())
        });
        let content = choices.iter().any(|choice| {
            choice
                .get("delta")
                .and_then(Value::as_object)
                .is_some_and(|delta| {
                    delta
                        .iter()
                        .any(|(key, value)| key != "role" && carries_content(value))
                })
        });
        match (content, finished) {
            (false, false) => EventKind::Empty,
            (content, finished) => EventKind::Content { content, finished },
        }
    }
}

impl SseEvent {
    /// Returns the index of every choice in the chunk, and whether that choice carries a
    /// `finish_reason`. A choice without an `index` is choice 0.
    pub fn choice_finishes(&self) -> Vec<(u64, bool)> {
        let Ok(value) = serde_json::from_str::<Value>(&self.data) else {
            return Vec::new();
        };
        let Some(choices) = value.get("choices").and_then(Value::as_array) else {
            return Vec::new();
        };
        choices
            .iter()
            .map(|choice| {
                let index = choice.get("index").and_then(Value::as_u64).unwrap_or(0);
                let finished = choice
                    .get("finish_reason")
                    .is_some_and(|reason| !reason.is_null());
                (index, finished)
            })
            .collect()
    }
}

fn carries_content(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(text) => !text.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(fields) => !fields.is_empty(),
        Value::Bool(_) | Value::Number(_) => true,
    }
}

/// What an event means for the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// `data: [DONE]`.
    Done,
    /// An in-band error object.
    Error,
    /// A chunk with content, a finish reason, or both. Either one commits the stream.
    Content {
        /// Whether a delta carries content (text, a tool call, a refusal).
        content: bool,
        /// Whether a choice has a `finish_reason`.
        finished: bool,
    },
    /// A chunk with nothing to show yet, such as a role-only first delta.
    Empty,
    /// Data that is not JSON; it is forwarded as it is but never commits the stream.
    Unparsed,
}

/// A line or an event too large to be part of a valid stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an upstream event or line exceeded {MAX_EVENT_BYTES} bytes")]
pub struct EventTooLarge;

/// An incremental parser: feed it the bytes as they arrive, take the complete events.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    event: Option<String>,
    data: Option<String>,
    skip_line_feed: bool,
}

impl SseParser {
    /// Creates an empty parser.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses `chunk` and appends every event it completes to `events`.
    ///
    /// # Examples
    ///
    /// ```
    /// use resilience_gateway::sse::SseParser;
    ///
    /// let mut parser = SseParser::new();
    /// let mut events = Vec::new();
    /// parser.push(b"data: {\"a\":", &mut events).unwrap();
    /// assert!(events.is_empty());
    /// parser.push(b"1}\n\n: comment\n\ndata: [DONE]\r\n\r\n", &mut events).unwrap();
    /// assert_eq!(events.len(), 2);
    /// assert_eq!(events[0].data, "{\"a\":1}");
    /// ```
    pub fn push(&mut self, chunk: &[u8], events: &mut Vec<SseEvent>) -> Result<(), EventTooLarge> {
        for &byte in chunk {
            if self.skip_line_feed {
                self.skip_line_feed = false;
                if byte == b'\n' {
                    continue;
                }
            }
            match byte {
                b'\n' | b'\r' => {
                    self.skip_line_feed = byte == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(event) = self.end_line(&line)? {
                        events.push(event);
                    }
                }
                _ => {
                    if self.line.len() >= MAX_EVENT_BYTES {
                        return Err(EventTooLarge);
                    }
                    self.line.push(byte);
                }
            }
        }
        Ok(())
    }

    fn end_line(&mut self, line: &[u8]) -> Result<Option<SseEvent>, EventTooLarge> {
        if line.is_empty() {
            let Some(data) = self.data.take() else {
                return Ok(None);
            };
            return Ok(Some(SseEvent {
                event: self.event.take(),
                data,
            }));
        }
        if line.first() == Some(&b':') {
            return Ok(None);
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "data" => match &mut self.data {
                Some(data) => {
                    if data.len() + 1 + value.len() > MAX_EVENT_BYTES {
                        return Err(EventTooLarge);
                    }
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            "event" => self.event = Some(value.to_owned()),
            _ => {}
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &[u8]) -> Vec<SseEvent> {
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        parser.push(input, &mut events).expect("valid stream");
        events
    }

    fn kind(data: &str) -> EventKind {
        SseEvent {
            event: None,
            data: data.to_owned(),
        }
        .kind()
    }

    #[test]
    fn parser_handles_split_and_crlf() {
        let input = b"event: message\r\ndata: one\r\ndata: two\r\n\r\ndata:three\n\n";
        for split in 0..input.len() {
            let mut parser = SseParser::new();
            let mut events = Vec::new();
            parser.push(&input[..split], &mut events).expect("valid");
            parser.push(&input[split..], &mut events).expect("valid");
            assert_eq!(events.len(), 2, "split at {split}");
            assert_eq!(
                events[0].event.as_deref(),
                Some("message"),
                "split at {split}"
            );
            assert_eq!(events[0].data, "one\ntwo", "split at {split}");
            assert_eq!(events[1].data, "three", "split at {split}");
        }
    }

    #[test]
    fn parser_skips_comments_and_blank_events() {
        let events = parse(b": keep-alive\n\n\nretry: 10\n\ndata: x\n\n");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data, "x");
    }

    #[test]
    fn parser_rejects_endless_line() {
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        let chunk = vec![b'a'; MAX_EVENT_BYTES + 1];
        assert_eq!(parser.push(&chunk, &mut events), Err(EventTooLarge));
    }

    #[test]
    fn parser_rejects_endless_event() {
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        let line = format!("data: {}\n", "a".repeat(60_000));
        let mut result = Ok(());
        for _ in 0..(MAX_EVENT_BYTES / 60_000 + 2) {
            result = parser.push(line.as_bytes(), &mut events);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(EventTooLarge));
        assert!(events.is_empty());
    }

    #[test]
    fn event_round_trips() {
        let event = SseEvent {
            event: Some("error".to_owned()),
            data: "a\nb".to_owned(),
        };
        assert_eq!(parse(&event.to_bytes()), vec![event]);
    }

    #[test]
    fn role_only_delta_is_empty() {
        let data = r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#;
        assert_eq!(kind(data), EventKind::Empty);
    }

    #[test]
    fn text_delta_is_content() {
        let data = r#"{"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#;
        assert_eq!(
            kind(data),
            EventKind::Content {
                content: true,
                finished: false
            }
        );
    }

    #[test]
    fn tool_call_delta_is_content() {
        let data =
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"name":"f"}}]}}]}"#;
        assert_eq!(
            kind(data),
            EventKind::Content {
                content: true,
                finished: false
            }
        );
    }

    #[test]
    fn finish_reason_commits() {
        let data = r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#;
        assert_eq!(
            kind(data),
            EventKind::Content {
                content: false,
                finished: true
            }
        );
    }

    #[test]
    fn other_kinds() {
        assert_eq!(kind("[DONE]"), EventKind::Done);
        assert_eq!(
            kind(r#"{"error":{"type":"overloaded_error"}}"#),
            EventKind::Error
        );
        assert_eq!(kind("not json {"), EventKind::Unparsed);
        let named_error = |data: &str| {
            SseEvent {
                event: Some("error".to_owned()),
                data: data.to_owned(),
            }
            .kind()
        };
        assert_eq!(named_error("upstream overloaded"), EventKind::Error);
        assert_eq!(named_error(r#"{"message":"boom"}"#), EventKind::Error);
        assert_eq!(kind(r#"{"usage":{"total_tokens":3}}"#), EventKind::Empty);
    }
}
