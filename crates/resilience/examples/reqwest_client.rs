//! A reqwest client behind `ResilienceMiddleware`, calling a flaky server on 127.0.0.1: server
//! errors are retried, a 429 waits for its `Retry-After`, a streaming upload is sent once, and an
//! open circuit rejects requests without sending them.
//!
//! Run with `cargo run -p resilience --example reqwest_client --features reqwest-middleware`. It
//! serves on a free port of 127.0.0.1, sends a few requests to itself and exits.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use resilience::reqwest_middleware::{call_error, ResilienceMiddleware};
use resilience::{Config, Manager};

/// The demo's settings: two retries without backoff of our own (a server's `Retry-After` still
/// sets the wait), and a circuit that opens after three failed attempts in a row.
pub fn config() -> Config {
    Config::from_toml_str(
        r#"
        [defaults.retry]
        max_retries = 2
        initial_backoff = "0s"
        max_backoff = "10s"
        jitter = false

        [defaults.circuit_breaker]
        failure_threshold = 3
        timeout = "30s"
        "#,
    )
    .expect("the example's configuration is valid")
}

/// A server that fails while it has failures left, with a chosen status and `Retry-After`.
#[derive(Debug, Default)]
pub struct FlakyServer {
    calls: AtomicU32,
    failures_left: AtomicU32,
    failure: Mutex<Failure>,
    last_body: Mutex<Bytes>,
}

/// The response of a failing call.
#[derive(Debug, Clone)]
struct Failure {
    status: StatusCode,
    retry_after: Option<&'static str>,
}

impl Default for Failure {
    fn default() -> Self {
        Failure {
            status: StatusCode::SERVICE_UNAVAILABLE,
            retry_after: None,
        }
    }
}

impl FlakyServer {
    /// Makes the next `count` calls fail with `status`, with `retry_after` as their `Retry-After`.
    pub fn fail_next(&self, count: u32, status: StatusCode, retry_after: Option<&'static str>) {
        *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = Failure {
            status,
            retry_after,
        };
        self.failures_left.store(count, Ordering::SeqCst);
    }

    /// Returns how many requests the server received.
    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Returns the body of the last request.
    pub fn last_body(&self) -> Bytes {
        self.last_body
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

async fn respond(State(server): State<Arc<FlakyServer>>, body: Bytes) -> Response {
    server.calls.fetch_add(1, Ordering::SeqCst);
    *server
        .last_body
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = body;
    let failed = server
        .failures_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
            left.checked_sub(1)
        })
        .is_ok();
    if !failed {
        return "ok".into_response();
    }
    let failure = server
        .failure
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    match failure.retry_after {
        Some(retry_after) => (
            failure.status,
            [(header::RETRY_AFTER, retry_after)],
            "failed",
        )
            .into_response(),
        None => (failure.status, "failed").into_response(),
    }
}

/// Serves a flaky server on a free port of 127.0.0.1 until the returned task is aborted.
pub async fn serve() -> (Arc<FlakyServer>, SocketAddr, tokio::task::JoinHandle<()>) {
    let server = Arc::new(FlakyServer::default());
    let app = Router::new().fallback(respond).with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port on 127.0.0.1");
    let address = listener
        .local_addr()
        .expect("a bound listener has an address");
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            eprintln!("server failed: {error}");
        }
    });
    (server, address, task)
}

/// Returns a client whose every request runs through `manager`, one provider per host and port.
pub fn client(manager: Manager<()>) -> ClientWithMiddleware {
    ClientBuilder::new(reqwest::Client::new())
        .with(ResilienceMiddleware::new(manager))
        .build()
}

/// Returns a body that reqwest cannot copy, so that its request is never retried.
pub fn streaming_body(chunks: &[&'static str]) -> reqwest::Body {
    let chunks: Vec<Result<&'static str, std::io::Error>> = chunks.iter().map(|c| Ok(*c)).collect();
    reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
}

#[tokio::main]
async fn main() {
    let manager: Manager<()> = Manager::new(config()).expect("a valid configuration");
    let (server, address, task) = serve().await;
    let client = client(manager.clone());
    let url = format!("http://{address}/v1/models");

    server.fail_next(2, StatusCode::SERVICE_UNAVAILABLE, None);
    let response = client.get(&url).send().await.expect("the server answers");
    println!(
        "two 503s: {} after {} requests",
        response.status(),
        server.calls()
    );

    server.fail_next(1, StatusCode::TOO_MANY_REQUESTS, Some("1"));
    let started = tokio::time::Instant::now();
    let response = client.get(&url).send().await.expect("the server answers");
    println!(
        "a 429 with Retry-After 1: {} after {} ms",
        response.status(),
        started.elapsed().as_millis()
    );

    server.fail_next(1, StatusCode::SERVICE_UNAVAILABLE, None);
    let calls = server.calls();
    let response = client
        .post(&url)
        .body(streaming_body(&["a streaming ", "upload"]))
        .send()
        .await
        .expect("the server answers");
    println!(
        "a streaming upload: {} after {} request",
        response.status(),
        server.calls() - calls
    );

    server.fail_next(u32::MAX, StatusCode::SERVICE_UNAVAILABLE, None);
    for request in 1..=2 {
        match client.get(&url).send().await {
            Ok(response) => println!("failing server, request {request}: {}", response.status()),
            Err(error) => match call_error(&error) {
                Some(failure) => println!(
                    "failing server, request {request}: {} (retry in {:?})",
                    failure.kind(),
                    failure.retry_after().unwrap_or(Duration::ZERO)
                ),
                None => println!("failing server, request {request}: {error}"),
            },
        }
    }
    task.abort();
}
