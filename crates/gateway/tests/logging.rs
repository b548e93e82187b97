//! What the gateway logs for a failed request: the caller's own errors are not warnings.
//!
//! This file contains one test because it installs the process-wide tracing subscriber.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use resilience_gateway::mock::Fault;

/// A log sink shared by every thread of the test.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Sink {
    fn take(&self) -> String {
        let mut buffer = self.0.lock().expect("sink lock");
        String::from_utf8_lossy(&std::mem::take(&mut *buffer)).into_owned()
    }
}

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("sink lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_error_not_warned() {
    let sink = Sink::default();
    let writer = sink.clone();
    tracing_subscriber::fmt()
        .with_env_filter("resilience_gateway=debug")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    let gateway = TestGateway::start("").await;

    gateway.primary.push_faults([Fault::Status(400)]);
    let response = gateway.chat(MODEL, "tenant").await;
    assert_eq!(response.status(), 400);
    let logs = sink.take();
    assert!(!logs.contains("WARN"), "{logs}");
    let line = logs
        .lines()
        .find(|line| line.contains("caller's error"))
        .unwrap_or_else(|| panic!("no line about the caller's error: {logs}"));
    assert!(line.contains("DEBUG"), "{line}");
    assert!(line.contains("status=400"), "{line}");

    gateway
        .primary
        .push_faults([Fault::Status(503), Fault::Status(503), Fault::Status(503)]);
    let response = gateway.chat(MODEL, "tenant").await;
    assert_eq!(response.status(), 502);
    let logs = sink.take();
    let line = logs
        .lines()
        .find(|line| line.contains("WARN"))
        .unwrap_or_else(|| panic!("no warning for a failed provider: {logs}"));
    assert!(line.contains("request failed"), "{line}");
    assert!(line.contains("attempts=3"), "{line}");
    gateway.stop().await;
}
