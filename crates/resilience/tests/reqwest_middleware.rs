//! The reqwest middleware, through the example's client and flaky server on 127.0.0.1.

#[allow(dead_code)]
#[path = "../examples/reqwest_client.rs"]
mod example;

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use resilience::reqwest_middleware::{call_error, Provider};
use resilience::{CallErrorKind, CircuitState, Config, FailureClass, Manager};

struct Setup {
    manager: Manager<()>,
    server: Arc<example::FlakyServer>,
    client: reqwest_middleware::ClientWithMiddleware,
    provider: String,
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Setup {
    async fn start() -> Setup {
        Setup::with_config(example::config()).await
    }

    async fn with_config(config: Config) -> Setup {
        let manager: Manager<()> = Manager::new(config).expect("valid configuration");
        let (server, address, task) = example::serve().await;
        Setup {
            client: example::client(manager.clone()),
            manager,
            server,
            provider: address.to_string(),
            url: format!("http://{address}/v1/models"),
            task,
        }
    }

    fn retries(&self) -> u64 {
        self.manager.stats().providers[&self.provider]
            .retry
            .as_ref()
            .expect("retry is enabled")
            .retries
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn server_errors_retried() {
    let setup = Setup::start().await;
    setup
        .server
        .fail_next(2, StatusCode::SERVICE_UNAVAILABLE, None);

    let response = setup
        .client
        .get(&setup.url)
        .send()
        .await
        .expect("an answer");

    assert_eq!(response.status(), reqwest::StatusCode::OK);
    assert_eq!(setup.server.calls(), 3);
    assert_eq!(setup.retries(), 2);
}

#[tokio::test]
async fn last_failed_response_returned() {
    let setup = Setup::start().await;
    setup.server.fail_next(3, StatusCode::BAD_GATEWAY, None);

    let response = setup
        .client
        .get(&setup.url)
        .send()
        .await
        .expect("an answer");

    assert_eq!(response.status(), reqwest::StatusCode::BAD_GATEWAY);
    assert_eq!(response.text().await.expect("a body"), "failed");
    assert_eq!(setup.server.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn retry_after_waited() {
    let setup = Setup::start().await;
    setup
        .server
        .fail_next(1, StatusCode::TOO_MANY_REQUESTS, Some("2"));
    let started = tokio::time::Instant::now();

    let response = setup
        .client
        .get(&setup.url)
        .send()
        .await
        .expect("an answer");

    assert_eq!(response.status(), reqwest::StatusCode::OK);
    assert_eq!(setup.server.calls(), 2);
    // The configured backoff is zero, so only the server's hint can explain the wait.
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(2), "waited {waited:?}");
}

#[tokio::test]
async fn retry_after_beyond_budget_not_waited() {
    let setup = Setup::start().await;
    setup
        .server
        .fail_next(1, StatusCode::TOO_MANY_REQUESTS, Some("3600"));

    let response = setup
        .client
        .get(&setup.url)
        .send()
        .await
        .expect("an answer");

    assert_eq!(response.status(), reqwest::StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        setup.server.calls(),
        1,
        "a hint above max_backoff stops retries"
    );
    assert_eq!(setup.retries(), 0);
}

#[tokio::test]
async fn streaming_body_sent_once() {
    let setup = Setup::start().await;
    setup
        .server
        .fail_next(1, StatusCode::SERVICE_UNAVAILABLE, None);

    let response = setup
        .client
        .post(&setup.url)
        .body(example::streaming_body(&["a streaming ", "upload"]))
        .send()
        .await
        .expect("an answer");

    assert_eq!(response.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(setup.server.calls(), 1);
    assert_eq!(setup.server.last_body(), "a streaming upload");
    assert_eq!(setup.retries(), 0);
}

#[tokio::test]
async fn buffered_body_resent_whole() {
    let setup = Setup::start().await;
    setup
        .server
        .fail_next(1, StatusCode::SERVICE_UNAVAILABLE, None);

    let response = setup
        .client
        .post(&setup.url)
        .body("a buffered upload")
        .send()
        .await
        .expect("an answer");

    assert_eq!(response.status(), reqwest::StatusCode::OK);
    assert_eq!(setup.server.calls(), 2);
    assert_eq!(setup.server.last_body(), "a buffered upload");
}

#[tokio::test]
async fn client_error_not_retried() {
    let setup = Setup::start().await;
    setup
        .server
        .fail_next(1, StatusCode::UNPROCESSABLE_ENTITY, None);

    let response = setup
        .client
        .get(&setup.url)
        .send()
        .await
        .expect("an answer");

    assert_eq!(response.status(), reqwest::StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(setup.server.calls(), 1);
    let breaker = setup.manager.stats().providers[&setup.provider]
        .circuit_breaker
        .clone()
        .expect("the breaker is enabled");
    assert_eq!(breaker.failures, 0, "the caller's error does not count");
    assert_eq!(breaker.neutral, 1);
}

#[tokio::test]
async fn open_circuit_rejects_unsent() {
    let setup = Setup::start().await;
    setup
        .server
        .fail_next(u32::MAX, StatusCode::SERVICE_UNAVAILABLE, None);
    let response = setup
        .client
        .get(&setup.url)
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(setup.server.calls(), 3);

    let error = setup
        .client
        .get(&setup.url)
        .send()
        .await
        .expect_err("the circuit is open");

    let failure = call_error(&error).expect("the middleware's error");
    assert_eq!(failure.kind(), CallErrorKind::CircuitOpen);
    assert!(failure
        .retry_after()
        .is_some_and(|delay| delay > Duration::ZERO));
    assert!(failure.source_error().is_none());
    assert_eq!(setup.server.calls(), 3, "nothing was sent");
    let breaker = setup.manager.stats().providers[&setup.provider]
        .circuit_breaker
        .clone()
        .expect("the breaker is enabled");
    assert_eq!(breaker.state, CircuitState::Open);
}

#[tokio::test]
async fn refused_connection_is_transport_failure() {
    let manager: Manager<()> = Manager::new(example::config()).expect("valid configuration");
    let client = example::client(manager);
    // Bind a port, then free it, so that connecting to it is refused.
    let address = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("an address");

    let error = client
        .get(format!("http://{address}/"))
        .send()
        .await
        .expect_err("nothing listens");

    let failure = call_error(&error).expect("the middleware's error");
    assert_eq!(
        failure.kind(),
        CallErrorKind::Failed(FailureClass::Transport)
    );
    assert_eq!(failure.attempts().len(), 3);
    let source = failure.source_error().expect("the last attempt's error");
    assert!(source.is_connect(), "source: {source}");
}

#[tokio::test]
async fn provider_from_host_or_extension() {
    let setup = Setup::start().await;

    setup
        .client
        .get(&setup.url)
        .send()
        .await
        .expect("an answer");
    setup
        .client
        .get(&setup.url)
        .with_extension(Provider::new("openai"))
        .send()
        .await
        .expect("an answer");

    let stats = setup.manager.stats();
    assert_eq!(stats.providers[&setup.provider].requests.succeeded, 1);
    assert_eq!(stats.providers["openai"].requests.succeeded, 1);
    assert_eq!(stats.providers.len(), 2);
}
