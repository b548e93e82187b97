//! The gateway's HTTP surface: bad inputs, admin token, health, metrics, models.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

async fn post_raw(gateway: &TestGateway, body: impl Into<reqwest::Body>) -> reqwest::Response {
    gateway
        .client
        .post(gateway.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("the gateway responds")
}

async fn error_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON error"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_rejected() {
    let gateway = TestGateway::start("").await;
    let (status, body) = error_of(post_raw(&gateway, "{\"model\": ").await).await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&body), Some("invalid_json"));
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(gateway.primary.requests(), 0);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_and_unknown_model() {
    let gateway = TestGateway::start("").await;
    let (status, body) = error_of(post_raw(&gateway, r#"{"messages":[]}"#).await).await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&body), Some("missing_model"));
    assert_eq!(body["error"]["param"], "model");

    let (status, body) = error_of(gateway.chat("no-such-model", "tenant").await).await;
    assert_eq!(status, 404);
    assert_eq!(error_code(&body), Some("model_not_found"));
    assert_eq!(gateway.primary.requests() + gateway.backup.requests(), 0);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_rejected() {
    let gateway = TestGateway::start("").await;
    let padding = "x".repeat(5000);
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": padding}]});
    let (status, body) = error_of(post_raw(&gateway, body.to_string()).await).await;
    assert_eq!(status, 413);
    assert_eq!(error_code(&body), Some("request_too_large"));
    assert_eq!(gateway.primary.requests(), 0);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_requires_token() {
    let gateway = TestGateway::start("").await;
    let reset = |token: Option<&str>| {
        let mut request = gateway.client.post(gateway.url("/admin/reset"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };

    let (status, body) = error_of(reset(None).await.expect("responds")).await;
    assert_eq!(status, 401);
    assert_eq!(error_code(&body), Some("invalid_admin_token"));
    let (status, _) = error_of(reset(Some("wrong")).await.expect("responds")).await;
    assert_eq!(status, 401);
    let response = reset(Some(ADMIN_TOKEN)).await.expect("responds");
    assert_eq!(response.status(), 200);

    let response = gateway
        .client
        .post(gateway.url("/admin/providers/primary/reset"))
        .send()
        .await
        .expect("responds");
    assert_eq!(response.status(), 401);
    let response = gateway
        .client
        .post(gateway.url("/admin/providers/nobody/reset"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("responds");
    assert_eq!(response.status(), 404);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_stats_metrics_models() {
    let gateway = TestGateway::start("").await;
    let response = gateway.chat(MODEL, "tenant").await;
    assert_eq!(response.status(), 200);

    let health = gateway
        .client
        .get(gateway.url("/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 200);
    let health: Value = health.json().await.expect("JSON");
    assert_eq!(health["healthy"], true);
    assert!(health["providers"]["primary"]["issues"]
        .as_array()
        .is_some_and(Vec::is_empty));

    let stats = gateway.stats().await;
    assert_eq!(stats["providers"]["primary"]["requests"]["succeeded"], 1);

    let metrics = gateway
        .client
        .get(gateway.url("/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(metrics.status(), 200);
    let content_type = header(&metrics, "content-type")
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = metrics.text().await.expect("text");
    assert!(
        text.contains(r#"gateway_requests_total{source="primary",status="200"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"circuit_breaker_state{provider="primary"} 0"#),
        "{text}"
    );
    assert!(
        text.contains(r#"calls_total{provider="primary",outcome="success"} 1"#),
        "{text}"
    );
    assert!(text.trim_end().ends_with("# EOF"), "{text}");

    let models: Value = gateway
        .client
        .get(gateway.url("/v1/models"))
        .send()
        .await
        .expect("models")
        .json()
        .await
        .expect("JSON");
    let ids: Vec<&str> = models["data"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|model| model["id"].as_str())
        .collect();
    assert_eq!(ids, [BACKUP_MODEL, MODEL]);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_route_is_json_404() {
    let gateway = TestGateway::start("").await;
    let response = gateway
        .client
        .get(gateway.url("/v1/engines"))
        .send()
        .await
        .expect("responds");
    let (status, body) = error_of(response).await;
    assert_eq!(status, 404);
    assert_eq!(error_code(&body), Some("unknown_url"));
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_timeouts_do_not_panic() {
    // The file rejects such values; a configuration built in code can still carry them.
    let gateway = TestGateway::start_edited(|config| {
        config.server.request_timeout = Duration::MAX;
        config.timeouts.status = Duration::MAX;
        config.timeouts.first_event = Duration::MAX;
        config.timeouts.idle = Duration::MAX;
        config.timeouts.attempt = Duration::MAX;
    })
    .await;

    let response = gateway.chat(MODEL, "tenant").await;
    assert_eq!(response.status(), 200);
    let response = gateway.chat_body("tenant", chat_body(MODEL, true)).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("stream body");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_method_is_json_405() {
    let gateway = TestGateway::start("").await;
    let cases = [
        (reqwest::Method::GET, "/v1/chat/completions", "POST"),
        (reqwest::Method::GET, "/admin/reset", "POST"),
        (reqwest::Method::DELETE, "/v1/models", "GET,HEAD"),
    ];
    for (method, path, allow) in cases {
        let response = gateway
            .client
            .request(method.clone(), gateway.url(path))
            .send()
            .await
            .expect("responds");
        assert_eq!(header(&response, "allow"), Some(allow), "{method} {path}");
        assert_eq!(
            header(&response, "content-type"),
            Some("application/json"),
            "{method} {path}"
        );
        let (status, body) = error_of(response).await;
        assert_eq!(status, 405, "{method} {path}");
        assert_eq!(
            error_code(&body),
            Some("method_not_allowed"),
            "{method} {path}"
        );
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_bearer_scheme_any_case() {
    let gateway = TestGateway::start("").await;
    let reset = |authorization: &str| {
        gateway
            .client
            .post(gateway.url("/admin/reset"))
            .header("authorization", authorization)
            .send()
    };
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let response = reset(&format!("{scheme} {ADMIN_TOKEN}"))
            .await
            .expect("responds");
        assert_eq!(response.status(), 200, "scheme {scheme}");
    }
    for value in [
        format!("Basic {ADMIN_TOKEN}"),
        format!("Bearer{ADMIN_TOKEN}"),
        "Bearer ".to_owned(),
        ADMIN_TOKEN.to_owned(),
    ] {
        let response = reset(&value).await.expect("responds");
        assert_eq!(response.status(), 401, "{value:?}");
    }
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_401_names_scheme() {
    let gateway = TestGateway::start("").await;
    for token in [None, Some("wrong")] {
        let mut request = gateway.client.post(gateway.url("/admin/reset"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("responds");
        assert_eq!(response.status(), 401);
        assert_eq!(
            header(&response, "www-authenticate"),
            Some("Bearer"),
            "token {token:?}"
        );
    }
    gateway.stop().await;
}
