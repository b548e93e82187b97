use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, StatusCode};

use super::*;
use crate::outcome::{Failure, FailureClass, NeutralReason, Outcome};

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            *name,
            HeaderValue::from_str(value).expect("valid header value"),
        );
    }
    map
}

fn now() -> SystemTime {
    httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").expect("valid date")
}

fn failure(status: u16, pairs: &[(&'static str, &str)], body: Option<&str>) -> Failure {
    let status = StatusCode::from_u16(status).expect("valid status");
    let outcome = HttpClassifier::new().classify_response_at(
        status,
        &headers(pairs),
        body.map(str::as_bytes),
        now(),
    );
    match outcome {
        Outcome::Failure(failure) => failure,
        other => panic!("status {status}: expected a failure, got {other:?}"),
    }
}

fn outcome(status: u16) -> Outcome {
    let status = StatusCode::from_u16(status).expect("valid status");
    classify_response(status, &HeaderMap::new(), None)
}

#[test]
fn success_statuses() {
    for status in [200, 201, 204] {
        assert_eq!(outcome(status), Outcome::Success, "status {status}");
    }
}

#[test]
fn server_errors_retryable_and_trip() {
    for status in [500, 502, 503, 504, 520] {
        let failure = failure(status, &[], None);
        assert_eq!(failure.class, FailureClass::Server, "status {status}");
        assert!(failure.retryable, "status {status}");
        assert!(failure.trips_circuit, "status {status}");
    }
}

#[test]
fn not_implemented_not_retried() {
    for status in [501, 505] {
        let failure = failure(status, &[], None);
        assert_eq!(failure.class, FailureClass::Server, "status {status}");
        assert!(!failure.retryable, "status {status}");
        assert!(failure.trips_circuit, "status {status}");
    }
}

#[test]
fn overloaded_529_and_body() {
    let from_status = failure(529, &[], None);
    assert_eq!(from_status.class, FailureClass::Overloaded);
    assert!(from_status.retryable);
    assert!(from_status.trips_circuit);

    let body = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    let from_body = failure(500, &[], Some(body));
    assert_eq!(from_body.class, FailureClass::Overloaded);
    assert!(from_body.retryable);
}

#[test]
fn service_unavailable_keeps_hint() {
    let failure = failure(503, &[("retry-after", "3")], None);
    assert_eq!(failure.class, FailureClass::Server);
    assert_eq!(failure.retry_after, Some(Duration::from_secs(3)));
}

#[test]
fn rate_limit_retryable_with_hint() {
    let failure = failure(
        429,
        &[("retry-after", "2")],
        Some(r#"{"error":{"code":"rate_limit_exceeded"}}"#),
    );
    assert_eq!(failure.class, FailureClass::RateLimited);
    assert!(failure.retryable);
    assert!(failure.trips_circuit);
    assert_eq!(failure.retry_after, Some(Duration::from_secs(2)));
}

#[test]
fn rate_limit_without_hint() {
    let failure = failure(429, &[], None);
    assert_eq!(failure.class, FailureClass::RateLimited);
    assert!(failure.retryable);
    assert_eq!(failure.retry_after, None);
}

#[test]
fn rate_limit_falls_back_to_reset_headers() {
    let failure = failure(
        429,
        &[
            ("x-ratelimit-remaining-tokens", "0"),
            ("x-ratelimit-reset-tokens", "750ms"),
        ],
        None,
    );
    assert_eq!(failure.retry_after, Some(Duration::from_millis(750)));
}

#[test]
fn retry_after_wins_over_reset_headers() {
    let failure = failure(
        429,
        &[
            ("retry-after", "5"),
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "1s"),
        ],
        None,
    );
    assert_eq!(failure.retry_after, Some(Duration::from_secs(5)));
}

#[test]
fn quota_bodies_not_retried() {
    let bodies = [
        r#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","code":"insufficient_quota"}}"#,
        r#"{"error":{"code":"billing_hard_limit_reached"}}"#,
        r#"{"type":"error","error":{"type":"invalid_request_error","message":"Your credit balance is too low to access the API."}}"#,
        r#"{"error":{"message":"Insufficient credits. Add more using the dashboard."}}"#,
        r#"{"error":{"message":"You have reached your monthly spend limit."}}"#,
    ];
    for body in bodies {
        let failure = failure(429, &[("retry-after", "1")], Some(body));
        assert_eq!(failure.class, FailureClass::QuotaExhausted, "body {body}");
        assert!(!failure.retryable, "body {body}");
        assert!(failure.trips_circuit, "body {body}");
    }
}

#[test]
fn per_minute_quota_is_rate_limit() {
    let body = r#"{"error":{"code":429,"message":"Quota exceeded for quota metric 'Generate Content API requests per minute'","status":"RESOURCE_EXHAUSTED"}}"#;
    let failure = failure(429, &[], Some(body));
    assert_eq!(failure.class, FailureClass::RateLimited);
    assert!(failure.retryable);
}

#[test]
fn payment_required_is_quota() {
    let failure = failure(402, &[], None);
    assert_eq!(failure.class, FailureClass::QuotaExhausted);
    assert!(!failure.retryable);
    assert!(failure.trips_circuit);
}

#[test]
fn quota_marker_past_snippet_ignored() {
    let body = format!("{}insufficient_quota", " ".repeat(BODY_SNIPPET_LIMIT));
    let failure = failure(429, &[], Some(&body));
    assert_eq!(failure.class, FailureClass::RateLimited);
}

#[test]
fn caller_errors_neutral() {
    for status in [400, 405, 409, 411, 413, 415, 422, 431] {
        assert_eq!(
            outcome(status),
            Outcome::Neutral(NeutralReason::CallerError),
            "status {status}"
        );
    }
}

#[test]
fn context_length_neutral() {
    let body = br#"{"error":{"code":"context_length_exceeded","type":"invalid_request_error"}}"#;
    let outcome = classify_response(StatusCode::BAD_REQUEST, &HeaderMap::new(), Some(body));
    assert_eq!(outcome, Outcome::Neutral(NeutralReason::CallerError));
}

#[test]
fn credentials_not_retried() {
    for status in [401, 403] {
        let failure = failure(status, &[], None);
        assert_eq!(failure.class, FailureClass::Credentials, "status {status}");
        assert!(!failure.retryable, "status {status}");
        assert!(!failure.trips_circuit, "status {status}");
    }
}

#[test]
fn credentials_trip_when_configured() {
    let classifier = HttpClassifier::new().credentials_trip_circuit(true);
    let outcome = classifier.classify_response(StatusCode::FORBIDDEN, &HeaderMap::new(), None);
    let failure = outcome.as_failure().expect("a failure");
    assert!(failure.trips_circuit);
    assert!(!failure.retryable);
}

#[test]
fn not_found_not_retried() {
    for status in [404, 410] {
        let failure = failure(status, &[], None);
        assert_eq!(failure.class, FailureClass::NotFound, "status {status}");
        assert!(!failure.retryable, "status {status}");
        assert!(!failure.trips_circuit, "status {status}");
    }
}

#[test]
fn request_timeout_retryable() {
    let failure = failure(408, &[], None);
    assert_eq!(failure.class, FailureClass::Timeout);
    assert!(failure.retryable);
}

#[test]
fn redirect_status_other() {
    let failure = failure(302, &[], None);
    assert_eq!(failure.class, FailureClass::Other);
    assert!(!failure.retryable);
    assert!(!failure.trips_circuit);
}

#[test]
fn retry_after_integer_seconds() {
    let hint = retry_after_at(&headers(&[("retry-after", "120")]), now());
    assert_eq!(hint, Some(Duration::from_secs(120)));
}

#[test]
fn retry_after_decimal_seconds() {
    let hint = retry_after_at(&headers(&[("retry-after", " 0.25 ")]), now());
    assert_eq!(hint, Some(Duration::from_millis(250)));
}

#[test]
fn retry_after_http_date() {
    let hint = retry_after_at(
        &headers(&[("retry-after", "Sun, 06 Nov 1994 08:50:07 GMT")]),
        now(),
    );
    assert_eq!(hint, Some(Duration::from_secs(30)));
}

#[test]
fn retry_after_past_date_ignored() {
    let hint = retry_after_at(
        &headers(&[("retry-after", "Sun, 06 Nov 1994 08:49:00 GMT")]),
        now(),
    );
    assert_eq!(hint, None);
}

#[test]
fn retry_after_distant_date_ignored() {
    let hint = retry_after_at(
        &headers(&[("retry-after", "Wed, 09 Nov 1994 08:49:37 GMT")]),
        now(),
    );
    assert_eq!(hint, None);
}

#[test]
fn retry_after_ms_header() {
    let hint = retry_after_at(&headers(&[("retry-after-ms", "1500")]), now());
    assert_eq!(hint, Some(Duration::from_millis(1500)));
}

#[test]
fn azure_ms_header() {
    let hint = retry_after_at(&headers(&[("x-ms-retry-after-ms", "20.5")]), now());
    assert_eq!(hint, Some(Duration::from_micros(20_500)));
}

#[test]
fn ms_header_wins_over_seconds() {
    let hint = retry_after_at(
        &headers(&[("retry-after", "2"), ("retry-after-ms", "1800")]),
        now(),
    );
    assert_eq!(hint, Some(Duration::from_millis(1800)));
}

#[test]
fn placeholders_fall_through() {
    let hint = retry_after_at(
        &headers(&[
            ("retry-after-ms", "-1"),
            ("x-ms-retry-after-ms", "0"),
            ("retry-after", "4"),
        ]),
        now(),
    );
    assert_eq!(hint, Some(Duration::from_secs(4)));
}

#[test]
fn invalid_values_ignored() {
    let values = [
        "-1",
        "0",
        "0.0",
        "-0.5",
        "",
        ".",
        "1e3",
        "inf",
        "NaN",
        "+5",
        "1.2.3",
        "soon",
        "86400",
        "999999999999",
    ];
    for value in values {
        let hint = retry_after_at(&headers(&[("retry-after", value)]), now());
        assert_eq!(hint, None, "retry-after {value:?}");
        let hint = retry_after_at(&headers(&[("retry-after-ms", value)]), now());
        let expected = (value == "86400").then_some(Duration::from_millis(86_400));
        assert_eq!(hint, expected, "retry-after-ms {value:?}");
    }
}

#[test]
fn absurd_ms_value_ignored() {
    let hint = retry_after_at(&headers(&[("retry-after-ms", "86400000")]), now());
    assert_eq!(hint, None);
}

#[test]
fn just_below_a_day_accepted() {
    let hint = retry_after_at(&headers(&[("retry-after", "86399")]), now());
    assert_eq!(hint, Some(Duration::from_secs(86_399)));
}

#[test]
fn reset_durations_parsed() {
    let cases = [
        ("6m0s", Some(Duration::from_secs(360))),
        ("1s", Some(Duration::from_secs(1))),
        ("12ms", Some(Duration::from_millis(12))),
        ("1h2m3.5s", Some(Duration::from_millis(3_723_500))),
        ("0s", None),
        ("soon", None),
        ("5x", None),
        ("", None),
        ("30h", None),
    ];
    for (value, expected) in cases {
        let map = headers(&[
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", value),
        ]);
        assert_eq!(rate_limit_reset(&map), expected, "reset {value:?}");
    }
}

#[test]
fn reset_ignored_while_budget_remains() {
    let map = headers(&[
        ("x-ratelimit-remaining-requests", "3"),
        ("x-ratelimit-reset-requests", "10s"),
    ]);
    assert_eq!(rate_limit_reset(&map), None);
}

#[test]
fn reset_takes_longest_exhausted() {
    let map = headers(&[
        ("x-ratelimit-remaining-requests", "0"),
        ("x-ratelimit-reset-requests", "2s"),
        ("x-ratelimit-remaining-tokens", "0"),
        ("x-ratelimit-reset-tokens", "5s"),
    ]);
    assert_eq!(rate_limit_reset(&map), Some(Duration::from_secs(5)));
}

#[tokio::test]
async fn connection_refused_is_transport() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);

    let result = reqwest::get(format!("http://{address}/")).await;
    let outcome = crate::Classify::classify(&HttpClassifier::new(), &result);
    let failure = outcome.as_failure().expect("a failure");
    assert_eq!(failure.class, FailureClass::Transport);
    assert!(failure.retryable);
    assert!(failure.trips_circuit);
}

#[tokio::test]
async fn reqwest_timeout_is_timeout() {
    // The listener accepts connections (the kernel completes the handshake) but never responds.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(50))
        .build()
        .expect("client");

    let error = client
        .get(format!("http://{address}/"))
        .send()
        .await
        .expect_err("the request times out");
    let outcome = HttpClassifier::new().classify_error(&error);
    assert_eq!(
        outcome.as_failure().expect("a failure").class,
        FailureClass::Timeout
    );
    drop(listener);
}

#[tokio::test]
async fn builder_error_not_retried() {
    let error = reqwest::Client::new()
        .get("not a url")
        .send()
        .await
        .expect_err("the URL is invalid");
    let failure = *HttpClassifier::new()
        .classify_error(&error)
        .as_failure()
        .expect("a failure");
    assert_eq!(failure.class, FailureClass::Other);
    assert!(!failure.retryable);
    assert!(!failure.trips_circuit);
}

#[tokio::test]
async fn response_classified_by_status() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut buffer = [0_u8; 1024];
        let _ = socket.read(&mut buffer).await.expect("read");
        let response = "HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
        socket.write_all(response.as_bytes()).await.expect("write");
    });

    let result = reqwest::get(format!("http://{address}/")).await;
    let outcome = crate::Classify::classify(&HttpClassifier::new(), &result);
    let failure = outcome.as_failure().expect("a failure");
    assert_eq!(failure.class, FailureClass::Server);
    assert_eq!(failure.retry_after, Some(Duration::from_secs(1)));
    server.await.expect("server task");
}
