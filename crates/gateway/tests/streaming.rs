//! Streaming through the gateway: retries and fallback before the first content event, explicit
//! error events after it, and the bulkhead slot released when the stream ends or the client leaves.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use resilience_gateway::mock::{Fault, MockConfig, MockProvider, StreamConfig};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Returns the `data:` payloads of a complete event stream.
fn data_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

fn content(lines: &[String]) -> String {
    lines
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|chunk| {
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

async fn stream_text(gateway: &TestGateway) -> (reqwest::StatusCode, String) {
    let response = gateway.chat_body("tenant", chat_body(MODEL, true)).await;
    let status = response.status();
    (status, response.text().await.expect("stream body"))
}

fn stream_fault(config: StreamConfig) -> Fault {
    Fault::Stream(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_stream_forwarded() {
    let gateway = TestGateway::start("").await;
    let response = gateway.chat_body("tenant", chat_body(MODEL, true)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), Some("text/event-stream"));
    assert_eq!(header(&response, "x-gateway-source"), Some("primary"));

    let lines = data_lines(&response.text().await.expect("stream body"));
    assert_eq!(content(&lines), "Hello from primary.");
    assert_eq!(lines.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(lines.iter().filter(|line| *line == "[DONE]").count(), 1);
    let stats = gateway.stats().await;
    assert_eq!(
        stats["providers"]["primary"]["circuit_breaker"]["successes"],
        1
    );
    assert_eq!(stats["providers"]["primary"]["bulkhead"]["active"], 0);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_before_content_retried() {
    let gateway = TestGateway::start("").await;
    gateway.primary.push_faults([
        Fault::Status(503),
        stream_fault(StreamConfig {
            error_event: true,
            ..StreamConfig::default()
        }),
        stream_fault(StreamConfig {
            break_after: Some(0),
            ..StreamConfig::default()
        }),
    ]);
    // Three failed attempts open the circuit at the default max_retries of 2, so allow three.
    let (status, text) = stream_text(&gateway).await;
    assert_eq!(status, 502, "two retries after three failures: {text}");
    assert_eq!(gateway.primary.requests(), 3);

    gateway.gateway.manager().reset_provider("primary");
    gateway.primary.push_faults([stream_fault(StreamConfig {
        error_event: true,
        ..StreamConfig::default()
    })]);
    let (status, text) = stream_text(&gateway).await;
    assert_eq!(status, 200);
    let lines = data_lines(&text);
    assert_eq!(
        content(&lines),
        "Hello from primary.",
        "one clean answer: {text}"
    );
    assert!(
        !text.contains("overloaded"),
        "the failed attempt left no trace: {text}"
    );
    assert_eq!(lines.last().map(String::as_str), Some("[DONE]"));
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_before_content_falls_back() {
    let extra = r#"
[resilience.providers.primary.fallback]
strategies = ["provider", "error"]
alternate_providers = ["backup"]
"#;
    let gateway = TestGateway::start(extra).await;
    gateway.primary.update_config(|config| {
        config.stream.break_after = Some(0);
    });

    let response = gateway.chat_body("tenant", chat_body(MODEL, true)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-gateway-provider"), Some("backup"));
    let lines = data_lines(&response.text().await.expect("stream body"));
    assert_eq!(content(&lines), "Hello from backup.");
    assert_eq!(lines.last().map(String::as_str), Some("[DONE]"));
    gateway.stop().await;
}

async fn assert_error_end(gateway: &TestGateway, fault: StreamConfig, code: &str) {
    gateway.primary.push_faults([stream_fault(fault)]);
    let before = gateway.primary.requests();

    let (status, text) = stream_text(gateway).await;
    assert_eq!(status, 200, "{code}: the stream had started");
    let lines = data_lines(&text);
    assert!(
        !lines.iter().any(|line| line == "[DONE]"),
        "{code}: no clean end: {text}"
    );
    let last: Value = serde_json::from_str(lines.last().expect("an event")).expect("JSON event");
    assert_eq!(last["error"]["code"], code, "{code}: {text}");
    assert!(
        content(&lines).starts_with("Hel"),
        "{code}: the content sent stays: {text}"
    );
    assert_eq!(
        gateway.primary.requests() - before,
        1,
        "{code}: no retry after content"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_after_content_end_with_error() {
    let gateway = TestGateway::start("").await;
    let cases = [
        (
            StreamConfig {
                break_after: Some(1),
                ..StreamConfig::default()
            },
            "stream_broken",
        ),
        (
            StreamConfig {
                stall_after: Some(1),
                ..StreamConfig::default()
            },
            "stream_stalled",
        ),
        (
            StreamConfig {
                omit_finish_reason: true,
                ..StreamConfig::default()
            },
            "stream_truncated",
        ),
    ];
    for (fault, code) in cases {
        assert_error_end(&gateway, fault, code).await;
    }

    let stats = gateway
        .wait_for_stats(|stats| stats["providers"]["primary"]["bulkhead"]["active"] == 0)
        .await;
    let breaker = &stats["providers"]["primary"]["circuit_breaker"];
    assert_eq!(
        breaker["failures"], 3,
        "each broken stream counts against the circuit"
    );
    assert_eq!(stats["providers"]["primary"]["bulkhead"]["active"], 0);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_text_error_event_ends_stream() {
    let gateway = TestGateway::start("").await;
    let fault = StreamConfig {
        plain_error_after: Some(1),
        ..StreamConfig::default()
    };
    assert_error_end(&gateway, fault, "upstream_stream_error").await;

    let stats = gateway
        .wait_for_stats(|stats| stats["providers"]["primary"]["bulkhead"]["active"] == 0)
        .await;
    let breaker = &stats["providers"]["primary"]["circuit_breaker"];
    assert_eq!(breaker["failures"], 1, "an upstream error is a failure");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_stream_ends_at_deadline() {
    // An idle timeout longer than the attempt's: the deadline ends the wait for the upstream.
    let gateway = TestGateway::start_toml(
        MockConfig::named("primary"),
        MockConfig::named("backup"),
        |p, b| {
            base_toml(p, b, "")
                .replace("idle = \"300ms\"", "idle = \"1h\"")
                .replace("attempt = \"3s\"", "attempt = \"1s\"")
        },
    )
    .await;
    let fault = StreamConfig {
        stall_after: Some(1),
        ..StreamConfig::default()
    };
    assert_error_end(&gateway, fault, "stream_timeout").await;

    let stats = gateway
        .wait_for_stats(|stats| stats["providers"]["primary"]["bulkhead"]["active"] == 0)
        .await;
    let breaker = &stats["providers"]["primary"]["circuit_breaker"];
    assert_eq!(breaker["failures"], 1, "a silent upstream is a failure");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stall_before_content_times_out() {
    let gateway = TestGateway::start("").await;
    gateway.primary.push_faults([stream_fault(StreamConfig {
        stall_after: Some(0),
        ..StreamConfig::default()
    })]);

    let (status, text) = stream_text(&gateway).await;
    assert_eq!(status, 504, "{text}");
    assert_eq!(gateway.primary.requests(), 1);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_releases_slot() {
    let slow_stream = MockConfig {
        stream: StreamConfig {
            chunks: 10,
            chunk_delay: Duration::from_millis(100),
            ..StreamConfig::default()
        },
        ..MockConfig::named("primary")
    };
    let gateway = TestGateway::start_with(slow_stream, MockConfig::named("backup"), "").await;

    let response = gateway.chat_body("tenant", chat_body(MODEL, true)).await;
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let first = body.next().await.expect("a first chunk").expect("readable");
    assert!(!first.is_empty());

    let stats = gateway.stats().await;
    assert_eq!(
        stats["providers"]["primary"]["bulkhead"]["active"], 1,
        "the stream holds its slot"
    );
    assert_eq!(gateway.primary.open_streams(), 1);

    drop(body);
    let stats = gateway
        .wait_for_stats(|stats| stats["providers"]["primary"]["bulkhead"]["active"] == 0)
        .await;
    assert_eq!(stats["providers"]["primary"]["bulkhead"]["active"], 0);
    let breaker = &stats["providers"]["primary"]["circuit_breaker"];
    assert_eq!(
        breaker["neutral"], 1,
        "a client that leaves is not the provider's failure"
    );
    assert_eq!(breaker["failures"], 0);
    for _ in 0..200 {
        if gateway.primary.open_streams() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        gateway.primary.open_streams(),
        0,
        "the upstream stream was closed too"
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_streams_some_cancelled() {
    let streaming = MockConfig {
        stream: StreamConfig {
            chunks: 4,
            chunk_delay: Duration::from_millis(20),
            ..StreamConfig::default()
        },
        ..MockConfig::named("primary")
    };
    let extra = r#"
[resilience.providers.primary.bulkhead]
max_concurrent = 8
max_queue = 64
queue_timeout = "5s"
"#;
    let gateway = TestGateway::start_with(streaming, MockConfig::named("backup"), extra).await;
    let gateway = std::sync::Arc::new(gateway);

    let mut tasks = Vec::new();
    for index in 0..40 {
        let gateway = gateway.clone();
        tasks.push(tokio::spawn(async move {
            let response = gateway.chat_body("tenant", chat_body(MODEL, true)).await;
            assert_eq!(response.status(), 200);
            if index % 2 == 0 {
                let mut body = response.bytes_stream();
                let _ = body.next().await;
                return false;
            }
            let text = response.text().await.expect("stream body");
            assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
            true
        }));
    }
    let mut completed = 0;
    for task in tasks {
        if task.await.expect("task") {
            completed += 1;
        }
    }
    assert_eq!(completed, 20);

    let stats = gateway
        .wait_for_stats(|stats| stats["providers"]["primary"]["bulkhead"]["active"] == 0)
        .await;
    let bulkhead = &stats["providers"]["primary"]["bulkhead"];
    assert_eq!(bulkhead["active"], 0, "no slot leaked");
    assert_eq!(bulkhead["queued"], 0);
    let breaker = &stats["providers"]["primary"]["circuit_breaker"];
    assert_eq!(breaker["failures"], 0);
    assert_eq!(breaker["successes"], 20);
    assert_eq!(breaker["neutral"], 20);
}

/// Returns a primary provider whose stream is far larger than the socket buffers between the gateway and
/// a client: 8 MiB of content in 4096 events, sent as fast as the gateway reads.
fn huge_stream() -> MockConfig {
    MockConfig {
        reply: "x".repeat(8 << 20),
        stream: StreamConfig {
            chunks: 4096,
            ..StreamConfig::default()
        },
        ..MockConfig::named("primary")
    }
}

/// Opens a connection with a 4 KiB receive buffer, sends a streamed chat request, and reads only
/// the response head, so the client's receive window fills and hyper stops polling the body.
async fn request_without_reading(gateway: &TestGateway) -> (TcpStream, String) {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("receive buffer");
    let mut connection = socket.connect(gateway.address).await.expect("connect");
    let body = chat_body(MODEL, true).to_string();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    connection
        .write_all(request.as_bytes())
        .await
        .expect("send request");

    let mut head = Vec::new();
    let mut byte = [0_u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let read = connection.read(&mut byte).await.expect("read head");
        assert_eq!(
            read, 1,
            "the connection closed before the response head ended"
        );
        head.push(byte[0]);
    }
    (connection, String::from_utf8_lossy(&head).into_owned())
}

/// Reads the rest of the response and returns the last `data:` payload.
async fn last_data_line(mut connection: TcpStream) -> (String, bool) {
    let mut rest = Vec::new();
    connection
        .read_to_end(&mut rest)
        .await
        .expect("read the rest");
    let text = String::from_utf8_lossy(&rest);
    let lines: Vec<&str> = text
        .lines()
        .filter_map(|line| line.trim_end_matches('\r').strip_prefix("data: "))
        .collect();
    let done = lines.contains(&"[DONE]");
    (lines.last().copied().unwrap_or_default().to_owned(), done)
}

/// Returns the test configuration with a status and first-event timeout of 5 s, because building
/// the huge stream takes the mock a while in a debug build on a busy machine.
fn patient_toml(primary: &MockProvider, backup: &MockProvider) -> String {
    base_toml(primary, backup, "")
        .replace("status = \"500ms\"", "status = \"5s\"")
        .replace("first_event = \"500ms\"", "first_event = \"5s\"")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_stream_releases_slot() {
    let gateway =
        TestGateway::start_toml(huge_stream(), MockConfig::named("backup"), patient_toml).await;
    let (connection, head) = request_without_reading(&gateway).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    // The idle timeout is 300 ms; the client never reads, so the stream must end.
    let stats = gateway
        .wait_for_stats(|stats| stats["providers"]["primary"]["bulkhead"]["active"] == 0)
        .await;
    assert_eq!(
        stats["providers"]["primary"]["bulkhead"]["active"], 0,
        "the slot is freed although the client reads nothing"
    );
    let breaker = &stats["providers"]["primary"]["circuit_breaker"];
    assert_eq!(
        breaker["neutral"], 1,
        "a client that stops reading is neutral"
    );
    assert_eq!(breaker["failures"], 0);
    for _ in 0..200 {
        if gateway.primary.open_streams() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(gateway.primary.open_streams(), 0, "the upstream is closed");
    let metrics = gateway.metrics().await;
    assert!(
        metrics.contains(r#"gateway_streams_total{end="client_stalled"} 1"#),
        "{metrics}"
    );

    let (last, done) = last_data_line(connection).await;
    assert!(!done, "a stream cut short has no [DONE]");
    let last: Value = serde_json::from_str(&last).expect("the last event is JSON");
    assert_eq!(last["error"]["code"], "client_read_timeout", "{last}");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_stream_ends_at_deadline() {
    // An idle timeout longer than the attempt's: only the deadline can end the stream.
    let gateway = TestGateway::start_toml(huge_stream(), MockConfig::named("backup"), |p, b| {
        patient_toml(p, b)
            .replace("idle = \"300ms\"", "idle = \"1h\"")
            .replace("attempt = \"3s\"", "attempt = \"2s\"")
    })
    .await;
    let (connection, head) = request_without_reading(&gateway).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    let stats = gateway
        .wait_for_stats_within(Duration::from_secs(5), |stats| {
            stats["providers"]["primary"]["bulkhead"]["active"] == 0
        })
        .await;
    assert_eq!(
        stats["providers"]["primary"]["bulkhead"]["active"], 0,
        "the slot is freed by the attempt's deadline"
    );
    let breaker = &stats["providers"]["primary"]["circuit_breaker"];
    assert_eq!(breaker["neutral"], 1);
    assert_eq!(breaker["failures"], 0);

    let (last, done) = last_data_line(connection).await;
    assert!(!done);
    let last: Value = serde_json::from_str(&last).expect("the last event is JSON");
    assert_eq!(last["error"]["code"], "stream_timeout", "{last}");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stall_after_finish_ends_cleanly() {
    let gateway = TestGateway::start("").await;
    gateway.primary.push_faults([stream_fault(StreamConfig {
        stall_after_finish: true,
        ..StreamConfig::default()
    })]);

    let (status, text) = stream_text(&gateway).await;
    assert_eq!(status, 200);
    let lines = data_lines(&text);
    assert_eq!(lines.last().map(String::as_str), Some("[DONE]"), "{text}");

    let stats = gateway
        .wait_for_stats(|stats| stats["providers"]["primary"]["bulkhead"]["active"] == 0)
        .await;
    let breaker = &stats["providers"]["primary"]["circuit_breaker"];
    assert_eq!(breaker["failures"], 0, "a complete answer is not a failure");
    assert_eq!(breaker["successes"], 1);
    gateway.stop().await;
}
