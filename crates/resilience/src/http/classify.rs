//! The classification of HTTP responses and reqwest errors into [`Outcome`]s.

use std::time::SystemTime;

use http::{HeaderMap, StatusCode};

use super::retry_after::{rate_limit_reset, retry_after_at};
use crate::outcome::{Classify, Failure, FailureClass, NeutralReason, Outcome};

/// Phrases in an error body that state the account's quota, credit or spend limit is exhausted, so
/// waiting does not help. Compared in lowercase.
///
/// NOTE: Google's `RESOURCE_EXHAUSTED` "Quota exceeded for ... per minute" is a rate limit that
/// passes, so a bare "quota exceeded" is deliberately not on the list.
const QUOTA_MARKERS: [&str; 8] = [
    "insufficient_quota",
    "exceeded your current quota",
    "billing_hard_limit_reached",
    "credit balance is too low",
    "insufficient_credits",
    "insufficient credits",
    "spend limit",
    "spending limit",
];

/// A phrase in an error body that reports the server as overloaded (Anthropic's error type).
const OVERLOADED_MARKER: &str = "overloaded_error";

/// How many bytes of a body the classifier reads; error bodies put their type near the start.
pub const BODY_SNIPPET_LIMIT: usize = 4096;

/// Classifies HTTP responses and reqwest errors.
///
/// | what happened | outcome |
/// |---|---|
/// | 2xx | success |
/// | connection refused or reset, a body that broke off | [`Transport`](FailureClass::Transport), retryable, trips the circuit |
/// | reqwest timeout, 408 | [`Timeout`](FailureClass::Timeout), retryable, trips the circuit |
/// | 500, 502, 503, 504 and other 5xx | [`Server`](FailureClass::Server), retryable (except 501 and 505), trips the circuit |
/// | 529, or an `overloaded_error` body | [`Overloaded`](FailureClass::Overloaded), retryable, trips the circuit |
/// | 429 | [`RateLimited`](FailureClass::RateLimited), retryable with the server's hint, trips the circuit |
/// | 402, or a 429 whose body states the quota or credit is exhausted | [`QuotaExhausted`](FailureClass::QuotaExhausted), not retried, trips the circuit |
/// | 401, 403 | [`Credentials`](FailureClass::Credentials), not retried, does not trip the circuit unless [`credentials_trip_circuit`](Self::credentials_trip_circuit) is set |
/// | 404, 410 | [`NotFound`](FailureClass::NotFound), not retried, does not trip the circuit |
/// | 400, 409, 413, 415, 422 and every other 4xx | neutral: the caller's own error, never retried, never trips |
/// | 1xx, 3xx | [`Other`](FailureClass::Other), not retried, does not trip the circuit |
///
/// Failures are failures even when they do not trip the circuit, so a fallback to another provider
/// still runs on them; neutral outcomes go back to the caller unchanged.
///
/// The hint of a failure comes from [`retry_after`](super::retry_after), and on a 429 without one,
/// from OpenAI's [`rate_limit_reset`](super::rate_limit_reset) headers.
///
/// As a [`Classify`] for `reqwest::Response`, it sees the status and headers but not the body, so
/// it cannot tell a quota 429 from a rate-limit 429. Read the body and call
/// [`classify_response`](Self::classify_response) when that difference matters.
///
/// # Examples
///
/// ```
/// use http::{HeaderMap, StatusCode};
/// use resilience::http::HttpClassifier;
/// use resilience::{FailureClass, Outcome};
///
/// let classifier = HttpClassifier::new();
/// let body = br#"{"error":{"code":"insufficient_quota","type":"insufficient_quota"}}"#;
/// let outcome = classifier.classify_response(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), Some(body));
/// let failure = outcome.as_failure().unwrap();
/// assert_eq!(failure.class, FailureClass::QuotaExhausted);
/// assert!(!failure.retryable);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpClassifier {
    credentials_trip_circuit: bool,
}

impl HttpClassifier {
    /// Creates a classifier with the defaults of the table above.
    pub const fn new() -> Self {
        HttpClassifier {
            credentials_trip_circuit: false,
        }
    }

    /// Sets whether 401 and 403 count against the circuit (default false).
    ///
    /// A rejected key fails every request until someone replaces it, so a deployment with one key
    /// per provider may prefer to open the circuit and fall back at once.
    ///
    /// # Examples
    ///
    /// ```
    /// use http::{HeaderMap, StatusCode};
    /// use resilience::http::HttpClassifier;
    ///
    /// let classifier = HttpClassifier::new().credentials_trip_circuit(true);
    /// let outcome = classifier.classify_response(StatusCode::UNAUTHORIZED, &HeaderMap::new(), None);
    /// assert!(outcome.as_failure().unwrap().trips_circuit);
    /// ```
    #[must_use]
    pub const fn credentials_trip_circuit(mut self, trips: bool) -> Self {
        self.credentials_trip_circuit = trips;
        self
    }

    /// Classifies a response from its status, headers and, when available, the start of its body.
    ///
    /// Only the first [`BODY_SNIPPET_LIMIT`] bytes of `body` are read.
    pub fn classify_response(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: Option<&[u8]>,
    ) -> Outcome {
        self.classify_response_at(status, headers, body, SystemTime::now())
    }

    /// Classifies a response as [`classify_response`](Self::classify_response) does, comparing an
    /// HTTP-date `Retry-After` with `now`.
    pub fn classify_response_at(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: Option<&[u8]>,
        now: SystemTime,
    ) -> Outcome {
        if status.is_success() {
            return Outcome::Success;
        }
        let snippet = body.map(lowercase_snippet).unwrap_or_default();
        let hint = retry_after_at(headers, now);

        let failure = match status.as_u16() {
            402 => not_retried(FailureClass::QuotaExhausted, true),
            429 if contains_any(&snippet, &QUOTA_MARKERS) => {
                not_retried(FailureClass::QuotaExhausted, true)
            }
            429 => Failure::new(FailureClass::RateLimited)
                .with_retry_after(hint.or_else(|| rate_limit_reset(headers))),
            401 | 403 => not_retried(FailureClass::Credentials, self.credentials_trip_circuit),
            404 | 410 => not_retried(FailureClass::NotFound, false),
            408 => Failure::new(FailureClass::Timeout),
            400..=499 => return Outcome::Neutral(NeutralReason::CallerError),
            529 => Failure::new(FailureClass::Overloaded),
            _ if snippet.contains(OVERLOADED_MARKER) => Failure::new(FailureClass::Overloaded),
            501 | 505 => not_retried(FailureClass::Server, true),
            500..=599 => Failure::new(FailureClass::Server),
            _ => not_retried(FailureClass::Other, false),
        };
        Outcome::Failure(failure.with_retry_after(failure.retry_after.or(hint)))
    }

    /// Classifies a reqwest error: a transport failure, a timeout, or, for an error made by
    /// `error_for_status`, its status.
    ///
    /// # Examples
    ///
    /// ```
    /// use resilience::http::HttpClassifier;
    /// use resilience::FailureClass;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// // Bind a port, then free it, so that connecting to it is refused.
    /// let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let address = listener.local_addr().unwrap();
    /// drop(listener);
    /// let error = reqwest::get(format!("http://{address}/")).await.unwrap_err();
    /// let outcome = HttpClassifier::new().classify_error(&error);
    /// assert_eq!(outcome.as_failure().unwrap().class, FailureClass::Transport);
    /// # }
    /// ```
    pub fn classify_error(&self, error: &reqwest::Error) -> Outcome {
        if error.is_timeout() {
            return Outcome::failure(FailureClass::Timeout);
        }
        if let Some(status) = error.status() {
            return self.classify_response(status, &HeaderMap::new(), None);
        }
        if error.is_builder() || error.is_redirect() {
            // The request could not be built or followed: sending it again cannot help, and the
            // provider did nothing wrong.
            return Outcome::Failure(not_retried(FailureClass::Other, false));
        }
        Outcome::failure(FailureClass::Transport)
    }
}

impl Classify<reqwest::Response, reqwest::Error> for HttpClassifier {
    fn classify(&self, result: &Result<reqwest::Response, reqwest::Error>) -> Outcome {
        match result {
            Ok(response) => self.classify_response(response.status(), response.headers(), None),
            Err(error) => self.classify_error(error),
        }
    }
}

/// Classifies a response with the default [`HttpClassifier`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use http::{HeaderMap, StatusCode};
/// use resilience::http::classify_response;
/// use resilience::{FailureClass, NeutralReason, Outcome};
///
/// let mut headers = HeaderMap::new();
/// headers.insert("retry-after", "2".parse().unwrap());
/// let outcome = classify_response(StatusCode::TOO_MANY_REQUESTS, &headers, None);
/// let failure = outcome.as_failure().unwrap();
/// assert_eq!(failure.class, FailureClass::RateLimited);
/// assert_eq!(failure.retry_after, Some(Duration::from_secs(2)));
///
/// let outcome = classify_response(StatusCode::UNPROCESSABLE_ENTITY, &HeaderMap::new(), None);
/// assert_eq!(outcome, Outcome::Neutral(NeutralReason::CallerError));
/// ```
pub fn classify_response(status: StatusCode, headers: &HeaderMap, body: Option<&[u8]>) -> Outcome {
    HttpClassifier::new().classify_response(status, headers, body)
}

const fn not_retried(class: FailureClass, trips_circuit: bool) -> Failure {
    Failure::new(class)
        .retryable(false)
        .trips_circuit(trips_circuit)
}

fn lowercase_snippet(body: &[u8]) -> String {
    let end = body.len().min(BODY_SNIPPET_LIMIT);
    String::from_utf8_lossy(&body[..end]).to_lowercase()
}

fn contains_any(haystack: &str, needles: &[&str]) -> bool {
    needles.iter().any(|needle| haystack.contains(needle))
}
