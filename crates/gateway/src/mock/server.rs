//! The mock provider's connection loop and request handling.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::config::{Fault, MockConfig};
use super::responses::{self, MockBody, StreamPlan};
use super::RecordedRequest;

/// The state shared by the provider's handle and its connections.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) config: Mutex<MockConfig>,
    pub(super) script: Mutex<VecDeque<Fault>>,
    pub(super) requests: AtomicU64,
    pub(super) open_streams: Arc<AtomicU64>,
    pub(super) last_request: Mutex<Option<RecordedRequest>>,
    pub(super) started: Instant,
}

/// The error that makes hyper close a connection without a response.
#[derive(Debug)]
struct SimulatedReset;

impl fmt::Display for SimulatedReset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("simulated connection reset")
    }
}

impl std::error::Error for SimulatedReset {}

/// Accepts connections until the task is aborted; aborting it also aborts every connection.
pub(super) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((socket, _)) = accepted else { continue };
                let shared = shared.clone();
                connections.spawn(async move {
                    let service = service_fn(move |request| handle(shared.clone(), request));
                    // A simulated reset ends the connection with an error; that is the point.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<MockBody>, SimulatedReset> {
    let index = shared.requests.fetch_add(1, Ordering::SeqCst);
    let config = lock(&shared.config).clone();

    let (parts, body) = request.into_parts();
    let Ok(body) = body.collect().await.map(|collected| collected.to_bytes()) else {
        return Err(SimulatedReset);
    };
    let authorization = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    *lock(&shared.last_request) = Some(RecordedRequest {
        path: parts.uri.path().to_owned(),
        authorization: authorization.clone(),
        body: body.clone(),
    });

    if parts.method != Method::POST || parts.uri.path() != "/v1/chat/completions" {
        return Ok(responses::error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "unknown_url",
            "the mock provider serves only POST /v1/chat/completions",
        ));
    }
    if let Some(expected) = &config.api_key {
        if authorization.as_deref() != Some(format!("Bearer {expected}").as_str()) {
            return Ok(responses::error_for_status(StatusCode::UNAUTHORIZED));
        }
    }
    let Some(request) = parse_request(&body) else {
        return Ok(responses::error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_json",
            "the request body is not a JSON object with a string `model`",
        ));
    };

    let fault = choose_fault(&shared, &config, index);
    apply(&shared, &config, fault, request, index).await
}

struct ChatRequest {
    model: String,
    stream: bool,
}

fn parse_request(body: &Bytes) -> Option<ChatRequest> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let model = value.get("model")?.as_str()?.to_owned();
    let stream = value
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Some(ChatRequest { model, stream })
}

/// Picks the fault for request number `index`: the script first, then outages and quota, then the
/// random shares drawn from a generator seeded with the seed and the index.
fn choose_fault(shared: &Shared, config: &MockConfig, index: u64) -> Fault {
    if let Some(fault) = lock(&shared.script).pop_front() {
        return fault;
    }
    let elapsed = shared.started.elapsed();
    if config
        .outages
        .iter()
        .any(|window| window.contains(&elapsed))
    {
        return config.outage_fault.clone();
    }
    if config.quota_exhausted {
        return Fault::QuotaExhausted;
    }

    let mut rng = fastrand::Rng::with_seed(config.seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let draw = rng.f64();
    let mut threshold = config.reset_share;
    if draw < threshold {
        return Fault::Reset;
    }
    threshold += config.server_error_share;
    if draw < threshold {
        return Fault::Status(503);
    }
    threshold += config.rate_limit_share;
    if draw < threshold {
        return Fault::RateLimited {
            retry_after: config.rate_limit_retry_after,
        };
    }
    threshold += config.slow_share;
    if draw < threshold {
        return Fault::Slow(config.slow_latency);
    }
    Fault::None
}

async fn apply(
    shared: &Shared,
    config: &MockConfig,
    fault: Fault,
    request: ChatRequest,
    index: u64,
) -> Result<Response<MockBody>, SimulatedReset> {
    if !config.latency.is_zero() {
        tokio::time::sleep(config.latency).await;
    }
    let mut stream_config = &config.stream;
    match &fault {
        Fault::None => {}
        Fault::Stream(custom) => stream_config = custom,
        Fault::Slow(delay) => tokio::time::sleep(*delay).await,
        Fault::Status(status) => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return Ok(responses::error_for_status(status));
        }
        Fault::HtmlStatus(status) => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return Ok(responses::html_error(status));
        }
        Fault::RateLimited { retry_after } => return Ok(responses::rate_limited(*retry_after)),
        Fault::QuotaExhausted => return Ok(responses::quota_exhausted()),
        Fault::Reset => return Err(SimulatedReset),
        Fault::Stall => {
            tokio::time::sleep(config.stall_limit).await;
            return Err(SimulatedReset);
        }
    }

    if request.stream {
        let plan = StreamPlan {
            provider: config.name.clone(),
            model: request.model,
            reply: config.reply.clone(),
            request: index,
            stall_limit: config.stall_limit,
            open_streams: shared.open_streams.clone(),
        };
        return Ok(responses::stream(plan, stream_config));
    }
    Ok(responses::completion(
        &config.name,
        &request.model,
        &config.reply,
        index,
    ))
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the data half-written.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn shared(config: &MockConfig) -> Shared {
        Shared {
            config: Mutex::new(config.clone()),
            script: Mutex::new(VecDeque::new()),
            requests: AtomicU64::new(0),
            open_streams: Arc::new(AtomicU64::new(0)),
            last_request: Mutex::new(None),
            started: Instant::now(),
        }
    }

    fn faulty() -> MockConfig {
        MockConfig {
            seed: 7,
            reset_share: 0.03,
            server_error_share: 0.10,
            rate_limit_share: 0.05,
            rate_limit_retry_after: Some(Duration::from_millis(150)),
            slow_share: 0.05,
            ..MockConfig::named("test")
        }
    }

    #[test]
    fn fault_shares_match_config() {
        let config = faulty();
        let shared = shared(&config);
        let draws = 20_000;
        let mut counts = [0_u32; 5];
        for index in 0..draws {
            let slot = match choose_fault(&shared, &config, index) {
                Fault::Reset => 0,
                Fault::Status(503) => 1,
                Fault::RateLimited { .. } => 2,
                Fault::Slow(_) => 3,
                Fault::None => 4,
                other => panic!("unexpected fault {other:?}"),
            };
            counts[slot] += 1;
        }
        let expected = [0.03, 0.10, 0.05, 0.05, 0.77];
        for (slot, share) in expected.into_iter().enumerate() {
            let observed = f64::from(counts[slot]) / draws as f64;
            assert!(
                (observed - share).abs() < 0.01,
                "slot {slot}: observed {observed}, configured {share}"
            );
        }
    }

    #[test]
    fn same_seed_same_faults() {
        let config = faulty();
        let first: Vec<Fault> = (0..200)
            .map(|i| choose_fault(&shared(&config), &config, i))
            .collect();
        let second: Vec<Fault> = (0..200)
            .map(|i| choose_fault(&shared(&config), &config, i))
            .collect();
        assert_eq!(first, second);

        let other = MockConfig {
            seed: 8,
            ..faulty()
        };
        let third: Vec<Fault> = (0..200)
            .map(|i| choose_fault(&shared(&other), &other, i))
            .collect();
        assert_ne!(first, third);
    }

    #[test]
    fn script_runs_before_draws() {
        let config = MockConfig {
            server_error_share: 1.0,
            ..MockConfig::named("test")
        };
        let shared = shared(&config);
        lock(&shared.script).extend([Fault::None, Fault::Reset]);
        assert_eq!(choose_fault(&shared, &config, 0), Fault::None);
        assert_eq!(choose_fault(&shared, &config, 1), Fault::Reset);
        assert_eq!(choose_fault(&shared, &config, 2), Fault::Status(503));
    }

    #[tokio::test(start_paused = true)]
    async fn outage_window_applies() {
        let config = MockConfig {
            outages: vec![Duration::from_secs(1)..Duration::from_secs(2)],
            ..MockConfig::named("test")
        };
        let shared = shared(&config);
        assert_eq!(choose_fault(&shared, &config, 0), Fault::None);
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(choose_fault(&shared, &config, 1), Fault::Status(503));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(choose_fault(&shared, &config, 2), Fault::None);
    }
}
