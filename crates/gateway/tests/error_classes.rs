//! Each upstream error class, over real HTTP: what is retried, what is passed through, what the
//! client gets, and what counts against the circuit.

mod common;

use std::time::Duration;

use common::*;
use resilience_gateway::mock::Fault;
use serde_json::Value;

fn breaker(stats: &Value, provider: &str) -> Value {
    stats["providers"][provider]["circuit_breaker"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_retried_until_success() {
    let gateway = TestGateway::start("").await;
    gateway
        .primary
        .push_faults([Fault::Status(503), Fault::Status(503)]);

    let response = gateway.chat(MODEL, "tenant").await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-gateway-attempts"), Some("3"));
    assert_eq!(header(&response, "x-gateway-source"), Some("primary"));
    assert_eq!(header(&response, "x-gateway-provider"), Some("primary"));
    assert_eq!(gateway.primary.requests(), 3);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_transient_status_retried() {
    let gateway = TestGateway::start("").await;
    for status in [500, 502, 503, 504, 529] {
        gateway.primary.push_faults([Fault::Status(status)]);
        let before = gateway.primary.requests();

        let response = gateway.chat(MODEL, "tenant").await;
        assert_eq!(response.status(), 200, "status {status}");
        assert_eq!(
            header(&response, "x-gateway-attempts"),
            Some("2"),
            "status {status}"
        );
        assert_eq!(gateway.primary.requests() - before, 2, "status {status}");
    }
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_retried() {
    let gateway = TestGateway::start("").await;
    gateway.primary.push_faults([Fault::Reset]);

    let response = gateway.chat(MODEL, "tenant").await;
    assert_eq!(response.status(), 200);
    assert_eq!(gateway.primary.requests(), 2);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_give_bad_gateway() {
    let gateway = TestGateway::start("").await;
    gateway.primary.push_faults(vec![Fault::Status(503); 3]);

    let response = gateway.chat(MODEL, "tenant").await;
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.expect("JSON error");
    assert_eq!(error_code(&body), Some("upstream_failed"));
    assert_eq!(body["error"]["type"], "upstream_error");
    assert!(body["error"]["message"].as_str().is_some());
    assert_eq!(gateway.primary.requests(), 3);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_honoured() {
    let gateway = TestGateway::start("").await;
    let hint = Duration::from_millis(120);
    gateway.primary.push_faults([Fault::RateLimited {
        retry_after: Some(hint),
    }]);

    let started = std::time::Instant::now();
    let response = gateway.chat(MODEL, "tenant").await;
    let elapsed = started.elapsed();
    assert_eq!(response.status(), 200);
    assert_eq!(gateway.primary.requests(), 2);
    // The backoff is 5 ms without jitter, so only the server's hint explains a wait this long.
    assert!(
        elapsed >= hint,
        "the retry came after {elapsed:?}, before the hint of {hint:?}"
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_retry_after_returned_to_client() {
    let gateway = TestGateway::start("").await;
    // Longer than max_backoff (300 ms): waiting is not worth it, so the gateway responses at once.
    gateway.primary.push_faults([Fault::RateLimited {
        retry_after: Some(Duration::from_secs(2)),
    }]);

    let response = gateway.chat(MODEL, "tenant").await;
    assert_eq!(response.status(), 429);
    assert_eq!(header(&response, "retry-after"), Some("2"));
    let body: Value = response.json().await.expect("JSON error");
    assert_eq!(error_code(&body), Some("rate_limited"));
    assert_eq!(gateway.primary.requests(), 1);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_exhausted_not_retried() {
    let gateway = TestGateway::start("").await;
    gateway.primary.push_faults([Fault::QuotaExhausted]);

    let response = gateway.chat(MODEL, "tenant").await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.expect("JSON error");
    assert_eq!(error_code(&body), Some("upstream_quota_exhausted"));
    assert_eq!(gateway.primary.requests(), 1);
    let stats = gateway.stats().await;
    assert_eq!(breaker(&stats, "primary")["failures"], 1);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_errors_passed_through() {
    let gateway = TestGateway::start("").await;
    for status in [400_u16, 409, 413, 415, 422] {
        // More than the failure threshold of 3, so a counted failure would open the circuit.
        for round in 0..4 {
            gateway.primary.push_faults([Fault::Status(status)]);
            let before = gateway.primary.requests();

            let response = gateway.chat(MODEL, "tenant").await;
            assert_eq!(response.status(), status, "status {status}, round {round}");
            let body: Value = response.json().await.expect("JSON error");
            assert_eq!(
                body["error"]["message"],
                format!(
                    "simulated {}",
                    reqwest::StatusCode::from_u16(status).expect("status")
                ),
                "the upstream's body comes back unchanged"
            );
            assert_eq!(
                gateway.primary.requests() - before,
                1,
                "status {status}: not retried"
            );
        }
    }
    let stats = gateway.stats().await;
    assert_eq!(breaker(&stats, "primary")["state"], "closed");
    assert_eq!(breaker(&stats, "primary")["failures"], 0);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_error_keeps_content_type() {
    let gateway = TestGateway::start("").await;
    gateway.primary.push_faults([Fault::HtmlStatus(400)]);
    let response = gateway.chat(MODEL, "tenant").await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        header(&response, "content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(header(&response, "x-gateway-provider"), Some("primary"));
    let text = response.text().await.expect("body");
    assert_eq!(text, "<html><body><h1>400 Bad Request</h1></body></html>");

    gateway.primary.push_faults([Fault::Status(422)]);
    let response = gateway.chat(MODEL, "tenant").await;
    assert_eq!(response.status(), 422);
    assert_eq!(header(&response, "content-type"), Some("application/json"));
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_and_not_found_not_retried() {
    let gateway = TestGateway::start("").await;
    let cases = [
        (401, "upstream_credentials_rejected"),
        (403, "upstream_credentials_rejected"),
        (404, "upstream_model_not_found"),
    ];
    for (status, code) in cases {
        for round in 0..4 {
            gateway.primary.push_faults([Fault::Status(status)]);
            let before = gateway.primary.requests();

            let response = gateway.chat(MODEL, "tenant").await;
            assert_eq!(response.status(), 502, "status {status}, round {round}");
            let body: Value = response.json().await.expect("JSON error");
            assert_eq!(error_code(&body), Some(code), "status {status}");
            assert_eq!(
                gateway.primary.requests() - before,
                1,
                "status {status}: not retried"
            );
        }
    }
    let stats = gateway.stats().await;
    assert_eq!(breaker(&stats, "primary")["state"], "closed");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_upstream_costs_one_timeout() {
    let gateway = TestGateway::start("").await;
    gateway.primary.push_faults([Fault::Stall]);

    let response = gateway.chat(MODEL, "tenant").await;
    assert_eq!(response.status(), 504);
    let body: Value = response.json().await.expect("JSON error");
    assert_eq!(error_code(&body), Some("upstream_timeout"));
    assert_eq!(gateway.primary.requests(), 1);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_gets_its_key_and_the_body() {
    let gateway = TestGateway::start("").await;
    let body = chat_body(MODEL, false);

    let response = gateway.chat_body("client-secret", body.clone()).await;
    assert_eq!(response.status(), 200);
    let recorded = gateway
        .primary
        .last_request()
        .expect("a request reached the primary");
    assert_eq!(recorded.path, "/v1/chat/completions");
    assert_eq!(
        recorded.authorization.as_deref(),
        Some(format!("Bearer {PRIMARY_KEY}").as_str())
    );
    let sent: Value = serde_json::from_slice(&recorded.body).expect("JSON body");
    assert_eq!(sent, body);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answer_returned_unchanged() {
    let gateway = TestGateway::start("").await;

    let response = gateway.chat(MODEL, "tenant").await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), Some("application/json"));
    let body: Value = response.json().await.expect("JSON answer");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], MODEL);
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Hello from primary."
    );
    gateway.stop().await;
}
