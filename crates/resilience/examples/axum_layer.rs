//! An axum handler behind `ResilienceLayer`: a flaky handler is retried, and once its circuit
//! opens, requests get `503 Service Unavailable` with `Retry-After` without reaching it.
//!
//! Run with `cargo run -p resilience --example axum_layer --features tower`. It serves on a free
//! port of 127.0.0.1, sends a few requests to itself and exits.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use axum::body::{Body, HttpBody};
use axum::error_handling::HandleErrorLayer;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use resilience::tower::ResilienceLayer;
use resilience::{CallError, Config, FailureClass, Manager, NeutralReason, Outcome};
use tower::ServiceBuilder;

/// The provider name of the protected route in the manager.
pub const PROVIDER: &str = "quotes";

/// The demo's settings: two retries without backoff, and a circuit that opens after three failed
/// attempts in a row and stays open for 30 seconds.
pub fn config() -> Config {
    Config::from_toml_str(
        r#"
        [defaults.retry]
        max_retries = 2
        initial_backoff = "0s"
        jitter = false

        [defaults.circuit_breaker]
        failure_threshold = 3
        timeout = "30s"
        "#,
    )
    .expect("the example's configuration is valid")
}

/// A handler that fails with 503 while it has failures left, and counts its calls.
#[derive(Debug, Clone, Default)]
pub struct Flaky {
    calls: Arc<AtomicU32>,
    failures_left: Arc<AtomicU32>,
}

impl Flaky {
    /// Makes the next `count` calls fail.
    pub fn fail_next(&self, count: u32) {
        self.failures_left.store(count, Ordering::SeqCst);
    }

    /// Returns how many times the handler ran.
    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

async fn quote(State(flaky): State<Flaky>) -> Response {
    flaky.calls.fetch_add(1, Ordering::SeqCst);
    let failed = flaky
        .failures_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
            left.checked_sub(1)
        })
        .is_ok();
    if failed {
        (StatusCode::SERVICE_UNAVAILABLE, "upstream unavailable").into_response()
    } else {
        "Simple is better than complex.".into_response()
    }
}

/// Classifies the handler's response by its status: 5xx is a retryable failure, 4xx is the
/// caller's own fault.
fn classify_status(result: &Result<Response, Infallible>) -> Outcome {
    match result {
        Ok(response) if response.status().is_server_error() => {
            Outcome::failure(FailureClass::Server)
        }
        Ok(response) if response.status().is_client_error() => {
            Outcome::Neutral(NeutralReason::CallerError)
        }
        Ok(_) => Outcome::Success,
        Err(never) => match *never {},
    }
}

/// Copies a request that has no body, so that GET requests are retried; a request with a body,
/// which axum cannot copy, is sent once.
fn clone_bodiless(request: &Request) -> Option<Request> {
    if request.body().size_hint().exact() != Some(0) {
        return None;
    }
    let mut copy = Request::new(Body::empty());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    *copy.extensions_mut() = request.extensions().clone();
    Some(copy)
}

/// Turns a rejection by the breaker or the bulkhead into a 503 with `Retry-After` in seconds.
async fn reject(error: CallError<Infallible>) -> Response {
    let message = format!("{error}\n");
    match error.retry_after() {
        Some(delay) => {
            let seconds = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
            let retry_after = [(header::RETRY_AFTER, seconds.to_string())];
            (StatusCode::SERVICE_UNAVAILABLE, retry_after, message).into_response()
        }
        None => (StatusCode::SERVICE_UNAVAILABLE, message).into_response(),
    }
}

/// Returns the app: `/quote` runs through the `quotes` provider's stack.
pub fn app(manager: Manager<()>, flaky: Flaky) -> Router {
    let protection = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(reject))
        .layer(
            ResilienceLayer::new(manager, PROVIDER)
                .classifier(classify_status)
                .clone_request(clone_bodiless),
        );
    Router::new()
        .route("/quote", get(quote).post(quote))
        .route_layer(protection)
        .with_state(flaky)
}

/// Serves `app` on a free port of 127.0.0.1 until the returned task is aborted.
pub async fn serve(app: Router) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port on 127.0.0.1");
    let address = listener
        .local_addr()
        .expect("a bound listener has an address");
    let server = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            eprintln!("server failed: {error}");
        }
    });
    (address, server)
}

#[tokio::main]
async fn main() {
    let manager: Manager<()> = Manager::new(config()).expect("a valid configuration");
    let flaky = Flaky::default();
    let (address, server) = serve(app(manager.clone(), flaky.clone())).await;
    let client = reqwest::Client::new();
    let url = format!("http://{address}/quote");

    flaky.fail_next(1);
    let response = client.get(&url).send().await.expect("the server answers");
    println!(
        "one failure: {} after {} handler calls",
        response.status(),
        flaky.calls()
    );

    flaky.fail_next(u32::MAX);
    for request in 1..=3 {
        let response = client.get(&url).send().await.expect("the server answers");
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        println!(
            "failing handler, request {request}: {} (Retry-After: {retry_after}), {} handler calls",
            response.status(),
            flaky.calls()
        );
    }

    let circuit = &manager.stats().providers[PROVIDER].circuit_breaker;
    println!("circuit: {:?}", circuit.as_ref().map(|stats| stats.state));
    server.abort();
}
