//! The circuit breaker through the gateway, and every fallback: an alternate provider, the fresh and
//! stale cache (isolated per tenant), and the degraded response.

mod common;

use std::time::Duration;

use common::*;
use resilience_gateway::mock::Fault;
use serde_json::Value;

const ALTERNATE: &str = r#"
[resilience.providers.primary.fallback]
strategies = ["provider", "error"]
alternate_providers = ["backup"]
"#;

const CACHE: &str = r#"
[resilience.providers.primary.fallback]
strategies = ["cache", "stale", "error"]
cache_ttl = "60ms"
stale_ttl = "1m"
"#;

fn circuit_state(stats: &Value) -> String {
    stats["providers"]["primary"]["circuit_breaker"]["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_opens_and_recovers() {
    let gateway = TestGateway::start("").await;
    gateway
        .primary
        .update_config(|config| config.server_error_share = 1.0);

    // One request makes three failed attempts: the threshold.
    let response = gateway.chat(MODEL, "tenant").await;
    assert_eq!(response.status(), 502);
    assert_eq!(circuit_state(&gateway.stats().await), "open");

    let received = gateway.primary.requests();
    let response = gateway.chat(MODEL, "tenant").await;
    assert_eq!(response.status(), 503);
    assert_eq!(header(&response, "retry-after"), Some("1"));
    let body: Value = response.json().await.expect("JSON error");
    assert_eq!(error_code(&body), Some("circuit_open"));
    assert_eq!(
        gateway.primary.requests(),
        received,
        "an open circuit sends nothing upstream"
    );

    let health = gateway
        .client
        .get(gateway.url("/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 503);
    let health: Value = health.json().await.expect("JSON health");
    assert_eq!(health["healthy"], false);
    assert_eq!(
        health["providers"]["primary"]["issues"][0]["issue"],
        "circuit_open"
    );

    // After the open period (200 ms), one probe is admitted; its success closes the circuit.
    gateway
        .primary
        .update_config(|config| config.server_error_share = 0.0);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let response = gateway.chat(MODEL, "tenant").await;
    assert_eq!(response.status(), 200);
    let stats = gateway.stats().await;
    assert_eq!(circuit_state(&stats), "closed");
    // closed -> open -> half-open -> closed
    assert_eq!(
        stats["providers"]["primary"]["circuit_breaker"]["transitions"],
        3
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_probe_reopens() {
    let gateway = TestGateway::start("").await;
    gateway
        .primary
        .update_config(|config| config.server_error_share = 1.0);
    let response = gateway.chat(MODEL, "tenant").await;
    assert_eq!(response.status(), 502);

    tokio::time::sleep(Duration::from_millis(250)).await;
    let received = gateway.primary.requests();
    let response = gateway.chat(MODEL, "tenant").await;
    // The probe failed and reopened the circuit, which rejects the retry.
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.expect("JSON error");
    assert_eq!(error_code(&body), Some("circuit_open"));
    assert_eq!(
        gateway.primary.requests() - received,
        1,
        "one probe reached the primary"
    );
    assert_eq!(circuit_state(&gateway.stats().await), "open");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_reset_closes_circuit() {
    let gateway = TestGateway::start("").await;
    gateway
        .primary
        .update_config(|config| config.server_error_share = 1.0);
    let _ = gateway.chat(MODEL, "tenant").await;
    assert_eq!(circuit_state(&gateway.stats().await), "open");

    let response = gateway
        .client
        .post(gateway.url("/admin/providers/primary/reset"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("admin responds");
    assert_eq!(response.status(), 200);
    assert_eq!(circuit_state(&gateway.stats().await), "closed");

    gateway
        .primary
        .update_config(|config| config.server_error_share = 0.0);
    let response = gateway.chat(MODEL, "tenant").await;
    assert_eq!(response.status(), 200);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alternate_provider_serves() {
    let gateway = TestGateway::start(ALTERNATE).await;
    gateway
        .primary
        .update_config(|config| config.server_error_share = 1.0);

    let response = gateway.chat(MODEL, "tenant").await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-gateway-source"), Some("provider"));
    assert_eq!(header(&response, "x-gateway-provider"), Some("backup"));
    assert_eq!(header(&response, "x-gateway-attempts"), Some("4"));
    let body: Value = response.json().await.expect("JSON answer");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Hello from backup."
    );

    // The backup serves its own model, so the gateway asked it for that one.
    let recorded = gateway
        .backup
        .last_request()
        .expect("the backup was called");
    let sent: Value = serde_json::from_slice(&recorded.body).expect("JSON body");
    assert_eq!(sent["model"], BACKUP_MODEL);
    assert_eq!(
        recorded.authorization, None,
        "the backup has no API key configured"
    );

    let stats = gateway.stats().await;
    assert_eq!(
        stats["providers"]["primary"]["requests"]["fallbacks"]["provider"],
        1
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_error_skips_fallback() {
    let gateway = TestGateway::start(ALTERNATE).await;
    gateway.primary.push_faults([Fault::Status(422)]);

    let response = gateway.chat(MODEL, "tenant").await;
    assert_eq!(response.status(), 422);
    assert_eq!(gateway.backup.requests(), 0);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_then_stale_cache() {
    let gateway = TestGateway::start(CACHE).await;
    let response = gateway.chat(MODEL, "alice").await;
    assert_eq!(response.status(), 200);
    let original: Value = response.json().await.expect("JSON answer");

    gateway
        .primary
        .update_config(|config| config.server_error_share = 1.0);
    let response = gateway.chat(MODEL, "alice").await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-gateway-source"), Some("cache"));
    assert_eq!(header(&response, "age"), Some("0"));
    let cached: Value = response.json().await.expect("JSON answer");
    assert_eq!(cached, original);

    // The circuit opened on the failures above; close it so the next request reaches the primary,
    // fails again, and finds the response older than cache_ttl (60 ms).
    gateway.gateway.manager().reset_provider("primary");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let response = gateway.chat(MODEL, "alice").await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-gateway-source"), Some("stale"));
    assert!(header(&response, "age").is_some());
    let stale: Value = response.json().await.expect("JSON answer");
    assert_eq!(stale, original);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_isolated_per_tenant() {
    let gateway = TestGateway::start(CACHE).await;
    let response = gateway.chat(MODEL, "alice").await;
    assert_eq!(response.status(), 200);

    gateway
        .primary
        .update_config(|config| config.server_error_share = 1.0);
    let response = gateway.chat(MODEL, "bob").await;
    assert_eq!(
        response.status(),
        502,
        "bob must not get alice's cached answer"
    );

    let response = gateway.chat(MODEL, "alice").await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-gateway-source"), Some("cache"));
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_not_cached() {
    let gateway = TestGateway::start(CACHE).await;
    let response = gateway.chat_body("alice", chat_body(MODEL, true)).await;
    assert_eq!(response.status(), 200);
    let _ = response.text().await.expect("stream body");
    let stats = gateway.stats().await;
    assert_eq!(stats["providers"]["primary"]["cache_entries"], 0);

    gateway
        .primary
        .update_config(|config| config.server_error_share = 1.0);
    let response = gateway.chat_body("alice", chat_body(MODEL, true)).await;
    assert_eq!(response.status(), 502);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn degraded_answer_is_completion() {
    let extra = r#"
[resilience.providers.primary.fallback]
strategies = ["degraded"]
"#;
    let gateway = TestGateway::start(extra).await;
    gateway
        .primary
        .update_config(|config| config.server_error_share = 1.0);

    let response = gateway.chat(MODEL, "tenant").await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-gateway-source"), Some("degraded"));
    let body: Value = response.json().await.expect("JSON answer");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], MODEL);
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(body["choices"][0]["message"]["content"], "degraded answer");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");

    let response = gateway.chat_body("tenant", chat_body(MODEL, true)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), Some("text/event-stream"));
    assert_eq!(header(&response, "cache-control"), Some("no-cache"));
    let text = response.text().await.expect("stream body");
    assert!(text.contains("degraded answer"), "stream: {text}");
    assert!(text.trim_end().ends_with("data: [DONE]"), "stream: {text}");
    gateway.stop().await;
}
