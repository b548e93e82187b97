//! Streaming through the gateway: retries and fallback before the first content event, explicit
//! error events after it, and the bulkhead slot released when the stream ends or the client leaves.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use resilience_gateway::mock::{Fault, MockConfig, StreamConfig};
use serde_json::Value;

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
