//! Errors the gateway sends, in the OpenAI error shape, with `Retry-After` when a retry time is known.

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use resilience::{CallError, CallErrorKind, FailureClass, NeutralReason};
use serde_json::json;

use crate::upstream::UpstreamError;

/// An error response: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A sentence for people.
    pub message: String,
    /// The OpenAI error type, such as `invalid_request_error`.
    pub kind: &'static str,
    /// A stable code for programs, such as `model_not_found`.
    pub code: &'static str,
    /// The request parameter at fault, if any.
    pub param: Option<&'static str>,
    /// When the client may retry, sent as `Retry-After` in whole seconds (rounded up).
    pub retry_after: Option<Duration>,
}

impl ApiError {
    /// Returns an error of the client's request (`invalid_request_error`).
    pub fn invalid_request(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            message: message.into(),
            kind: "invalid_request_error",
            code,
            param: None,
            retry_after: None,
        }
    }

    /// Sets the parameter at fault.
    #[must_use]
    pub fn param(mut self, param: &'static str) -> Self {
        self.param = Some(param);
        self
    }

    fn upstream(
        status: StatusCode,
        code: &'static str,
        message: String,
        retry_after: Option<Duration>,
    ) -> Self {
        ApiError {
            status,
            message,
            kind: "upstream_error",
            code,
            param: None,
            retry_after,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(delay) = self.retry_after {
            let seconds = delay
                .as_secs()
                .saturating_add(u64::from(delay.subsec_nanos() > 0));
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        response
    }
}

/// What the gateway sends for a call that failed after every retry and fallback.
#[derive(Debug)]
pub enum CallFailure {
    /// The upstream's own response, passed through unchanged: the caller's error.
    PassThrough {
        /// The upstream's status.
        status: StatusCode,
        /// The upstream's `Content-Type`, if it sent one.
        content_type: Option<HeaderValue>,
        /// The upstream's body.
        body: bytes::Bytes,
    },
    /// An error made by the gateway.
    Error(ApiError),
}

/// Maps a call error to what the client gets.
pub fn call_failure(error: CallError<UpstreamError>) -> CallFailure {
    let provider = error.provider().to_owned();
    let attempts = error.attempts().len();
    let retry_after = error.retry_after();
    let kind = error.kind();

    if let CallErrorKind::Neutral(NeutralReason::CallerError) = kind {
        if let Some(UpstreamError::Status {
            status,
            headers,
            body,
        }) = error.into_source()
        {
            let content_type = headers.get(header::CONTENT_TYPE).cloned();
            return CallFailure::PassThrough {
                status,
                content_type,
                body,
            };
        }
        return CallFailure::Error(ApiError::invalid_request(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("provider {provider} rejected the request as invalid"),
        ));
    }

    let (status, code, message) = match kind {
        CallErrorKind::Failed(FailureClass::RateLimited) => (
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("provider {provider} is rate limiting requests after {attempts} failed attempts"),
        ),
        CallErrorKind::Failed(FailureClass::Timeout) => (
            StatusCode::GATEWAY_TIMEOUT,
            "upstream_timeout",
            format!("provider {provider} timed out after {attempts} failed attempts"),
        ),
        CallErrorKind::Failed(FailureClass::QuotaExhausted) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream_quota_exhausted",
            format!("the gateway's quota or credit at provider {provider} is exhausted"),
        ),
        CallErrorKind::Failed(FailureClass::Credentials) => (
            StatusCode::BAD_GATEWAY,
            "upstream_credentials_rejected",
            format!("provider {provider} rejected the gateway's API key; check its api_key_env"),
        ),
        CallErrorKind::Failed(FailureClass::NotFound) => (
            StatusCode::BAD_GATEWAY,
            "upstream_model_not_found",
            format!("provider {provider} does not serve the requested model"),
        ),
        CallErrorKind::Failed(class) => (
            StatusCode::BAD_GATEWAY,
            "upstream_failed",
            format!("provider {provider} failed ({class}) after {attempts} failed attempts"),
        ),
        CallErrorKind::CircuitOpen => (
            StatusCode::SERVICE_UNAVAILABLE,
            "circuit_open",
            format!("provider {provider} is failing and its circuit is open; no alternate could serve the request"),
        ),
        CallErrorKind::BulkheadFull | CallErrorKind::QueueTimeout => (
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            format!("the gateway is at its concurrency limit for provider {provider}"),
        ),
        CallErrorKind::Neutral(_) => (
            StatusCode::GATEWAY_TIMEOUT,
            "cancelled",
            format!("the request to provider {provider} was cancelled"),
        ),
        CallErrorKind::Closed => (
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the gateway is shutting down".to_owned(),
        ),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            format!("the call to provider {provider} was rejected: {kind}"),
        ),
    };
    CallFailure::Error(ApiError::upstream(status, code, message, retry_after))
}
