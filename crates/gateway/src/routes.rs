//! The HTTP routes: chat completions, models, health, statistics, metrics and admin.

use axum::body::Body;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use resilience::{Attempt, CallError, CallErrorKind, NeutralReason, Served, Source};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::time::{timeout_at, Instant};

use crate::deadline;
use crate::errors::{call_failure, ApiError, CallFailure};
use crate::gateway::Gateway;
use crate::streaming;
use crate::upstream::{Reply, UpstreamCall, UpstreamError};

/// The provider whose response was served (for the cache, the one that produced it).
pub const PROVIDER_HEADER: HeaderName = HeaderName::from_static("x-gateway-provider");
/// The number of upstream attempts the request made, on every provider tried.
pub const ATTEMPTS_HEADER: HeaderName = HeaderName::from_static("x-gateway-attempts");
/// Where the response came from: `primary`, `cache`, `stale`, `provider` (an alternate) or
/// `degraded`. A cached response also carries `Age` in seconds.
pub const SOURCE_HEADER: HeaderName = HeaderName::from_static("x-gateway-source");

/// The parts of a chat request the gateway reads; the body goes upstream unchanged.
struct ChatRequest {
    model: String,
    stream: bool,
}

fn parse_chat_request(body: &[u8]) -> Result<ChatRequest, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|error| {
        ApiError::invalid_request(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the request body is not valid JSON: {error}"),
        )
    })?;
    let Some(object) = value.as_object() else {
        return Err(ApiError::invalid_request(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "the request body must be a JSON object",
        ));
    };
    let model = match object.get("model") {
        Some(Value::String(model)) if !model.is_empty() => model.clone(),
        Some(_) => {
            return Err(ApiError::invalid_request(
                StatusCode::BAD_REQUEST,
                "invalid_model",
                "`model` must be a non-empty string",
            )
            .param("model"))
        }
        None => {
            return Err(ApiError::invalid_request(
                StatusCode::BAD_REQUEST,
                "missing_model",
                "the request has no `model`; name one of the models listed by GET /v1/models",
            )
            .param("model"))
        }
    };
    let stream = match object.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(stream)) => *stream,
        Some(_) => {
            return Err(ApiError::invalid_request(
                StatusCode::BAD_REQUEST,
                "invalid_stream",
                "`stream` must be true or false",
            )
            .param("stream"))
        }
    };
    Ok(ChatRequest { model, stream })
}

/// Returns the fallback cache key: a hash of the caller's `Authorization` header, so one tenant
/// never reads another's responses, and a hash of the model and the body. Neither the credential nor
/// the body appears in the key.
pub fn cache_key(authorization: Option<&[u8]>, model: &str, body: &[u8]) -> String {
    let tenant = Sha256::digest(authorization.unwrap_or(b""));
    let mut request = Sha256::new();
    request.update(model.as_bytes());
    request.update([0]);
    request.update(body);
    format!("{}:{}", hex(&tenant[..16]), hex(&request.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// `POST /v1/chat/completions`.
pub(crate) async fn chat_completions(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let state = &gateway.state;
    let response = match handle_chat(&gateway, &headers, body).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };

    let source = response
        .headers()
        .get(&SOURCE_HEADER)
        .and_then(|value| value.to_str().ok())
        .map_or("error", source_label);
    state
        .metrics
        .request_finished(source, response.status().as_u16(), started.elapsed());
    response
}

fn source_label(source: &str) -> &'static str {
    match source {
        "primary" => "primary",
        "cache" => "cache",
        "stale" => "stale",
        "provider" => "provider",
        "degraded" => "degraded",
        _ => "error",
    }
}

async fn handle_chat(
    gateway: &Gateway,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let state = &gateway.state;
    let body = body.map_err(|rejection| body_error(rejection, state.max_body_bytes))?;
    let request = parse_chat_request(&body)?;
    let Some(primary) = state.models.get(&request.model) else {
        return Err(ApiError::invalid_request(
            StatusCode::NOT_FOUND,
            "model_not_found",
            format!(
                "the model {:?} is not served by this gateway; GET /v1/models lists the models",
                request.model
            ),
        )
        .param("model"));
    };

    let key = (!request.stream).then(|| {
        let authorization = headers
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes);
        cache_key(authorization, &request.model, &body)
    });
    let deadline = deadline::after(Instant::now(), state.request_timeout);
    let operation = |attempt: &Attempt<'_>| {
        let gateway = gateway.clone();
        let upstream = gateway.state.upstreams.get(attempt.provider()).cloned();
        let handle = request.stream.then(|| attempt.defer());
        let body = body.clone();
        let model = request.model.clone();
        async move {
            let Some(upstream) = upstream else {
                return Err(UpstreamError::StreamMalformed {
                    reason: "the provider has no upstream configuration",
                });
            };
            let call = UpstreamCall {
                client: &gateway.state.client,
                body: upstream.body_for(&model, &body),
                upstream: &upstream,
                timeouts: gateway.state.timeouts,
                deadline,
            };
            match handle {
                Some(handle) => call.stream(handle).await,
                None => call.complete().await,
            }
        }
    };

    let call = state
        .manager
        .execute_with_fallback(primary, key.as_deref(), operation);
    let result = timeout_at(deadline, call).await.map_err(|_| ApiError {
        status: StatusCode::GATEWAY_TIMEOUT,
        message: format!(
            "the request did not finish within server.request_timeout ({} ms)",
            state.request_timeout.as_millis()
        ),
        kind: "upstream_error",
        code: "request_timeout",
        param: None,
        retry_after: None,
    })?;

    match result {
        Ok(served) => Ok(served_response(gateway, served, &request)),
        Err(error) => {
            log_failure(gateway, &error);
            let provider = error.provider().to_owned();
            match call_failure(error) {
                CallFailure::PassThrough {
                    status,
                    content_type,
                    body,
                } => {
                    let mut response = (status, body).into_response();
                    let headers = response.headers_mut();
                    // Without the upstream's type, send none rather than axum's default for bytes.
                    match content_type {
                        Some(content_type) => headers.insert(header::CONTENT_TYPE, content_type),
                        None => headers.remove(header::CONTENT_TYPE),
                    };
                    insert_header(headers, PROVIDER_HEADER, &provider);
                    Ok(response)
                }
                CallFailure::Error(error) => Err(error),
            }
        }
    }
}

/// Logs a call that ended without a successful response. The caller's own errors and
/// cancellations are not the gateway's or the provider's failures, so they are logged at debug
/// level.
fn log_failure(gateway: &Gateway, error: &CallError<UpstreamError>) {
    let status = match error.source_error() {
        Some(UpstreamError::Status { status, .. }) => Some(status.as_u16()),
        _ => None,
    };
    match error.kind() {
        CallErrorKind::Neutral(NeutralReason::CallerError) => tracing::debug!(
            provider = error.provider(),
            status,
            "the upstream rejected the request as the caller's error; passing its response through"
        ),
        kind @ CallErrorKind::Neutral(_) => tracing::debug!(
            provider = error.provider(),
            %kind,
            "the request was cancelled before a response"
        ),
        kind => {
            if let Some(suppressed) = gateway.state.error_log.allow() {
                tracing::warn!(
                    provider = error.provider(),
                    %kind,
                    status,
                    attempts = error.attempts().len(),
                    suppressed,
                    "request failed and no fallback served it"
                );
            }
        }
    }
}

fn body_error(rejection: BytesRejection, limit: usize) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::invalid_request(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            format!("the request body exceeds the limit of {limit} bytes (server.max_body_bytes)"),
        );
    }
    ApiError::invalid_request(
        StatusCode::BAD_REQUEST,
        "invalid_body",
        format!("failed to read the request body: {rejection}"),
    )
}

fn served_response(gateway: &Gateway, served: Served<Reply>, request: &ChatRequest) -> Response {
    let state = &gateway.state;
    let mut response = match (&served.source, served.value) {
        (Source::Degraded, _) => {
            degraded_response(&request.model, &state.degraded_message, request.stream)
        }
        (_, Reply::Stream(cell)) => match cell.take() {
            Some(committed) => {
                let body = Body::from_stream(streaming::forward(
                    committed,
                    state.metrics.clone(),
                    state.stream_error_log.clone(),
                ));
                event_stream_response(body)
            }
            None => ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                message: "the upstream stream was already taken".to_owned(),
                kind: "server_error",
                code: "internal_error",
                param: None,
                retry_after: None,
            }
            .into_response(),
        },
        (_, Reply::Complete(reply)) => {
            let mut response = (reply.status, reply.body.clone()).into_response();
            let content_type = reply
                .content_type
                .clone()
                .unwrap_or(HeaderValue::from_static("application/json"));
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, content_type);
            response
        }
    };

    let headers = response.headers_mut();
    insert_header(headers, PROVIDER_HEADER, &served.provider);
    headers.insert(ATTEMPTS_HEADER, HeaderValue::from(served.attempts));
    headers.insert(
        SOURCE_HEADER,
        HeaderValue::from_static(served.source.as_str()),
    );
    if let Source::Cache { age } | Source::Stale { age } = served.source {
        headers.insert(header::AGE, HeaderValue::from(age.as_secs()));
    }
    tracing::debug!(
        provider = %served.provider,
        source = served.source.as_str(),
        attempts = served.attempts,
        "request served"
    );
    response
}

fn insert_header(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// Returns the degraded response: a valid `chat.completion` whose message is `message`.
pub fn degraded_completion(model: &str, message: &str) -> Value {
    json!({
        "id": "chatcmpl-degraded",
        "object": "chat.completion",
        "created": unix_time(),
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": message},
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    })
}

fn degraded_response(model: &str, message: &str, stream: bool) -> Response {
    if !stream {
        return Json(degraded_completion(model, message)).into_response();
    }
    let created = unix_time();
    let chunk = |delta: Value, finish_reason: Value| {
        json!({
            "id": "chatcmpl-degraded",
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
        })
    };
    let text = format!(
        "data: {}\n\ndata: {}\n\ndata: [DONE]\n\n",
        chunk(
            json!({"role": "assistant", "content": message}),
            Value::Null
        ),
        chunk(json!({}), json!("stop")),
    );
    event_stream_response(Body::from(text))
}

/// Returns a server-sent events response with `body`, which no cache may store.
fn event_stream_response(body: Body) -> Response {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn unix_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// `GET /v1/models`.
pub(crate) async fn models(State(gateway): State<Gateway>) -> Response {
    let mut data: Vec<Value> = gateway
        .state
        .models
        .iter()
        .map(|(model, upstream)| json!({"id": model, "object": "model", "owned_by": upstream}))
        .collect();
    data.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    Json(json!({"object": "list", "data": data})).into_response()
}

/// `GET /health`: 200 when every provider can take calls, 503 otherwise. Calls no provider.
pub(crate) async fn health(State(gateway): State<Gateway>) -> Response {
    let report = gateway.state.manager.health_check();
    let status = if report.healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report)).into_response()
}

/// `GET /stats`.
pub(crate) async fn stats(State(gateway): State<Gateway>) -> Response {
    Json(gateway.state.manager.stats()).into_response()
}

/// `GET /metrics`, as OpenMetrics text.
pub(crate) async fn metrics(State(gateway): State<Gateway>) -> Response {
    let mut text = String::new();
    if let Err(error) =
        prometheus_client::encoding::text::encode(&mut text, &gateway.state.registry)
    {
        tracing::warn!(%error, "failed to encode metrics");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], text).into_response()
}

/// `POST /admin/reset`.
pub(crate) async fn admin_reset(State(gateway): State<Gateway>, headers: HeaderMap) -> Response {
    if let Err(error) = authorize_admin(&gateway, &headers) {
        return error.into_response();
    }
    gateway.state.manager.reset_all();
    tracing::info!("every provider was reset by an admin request");
    Json(json!({"reset": "all"})).into_response()
}

/// `POST /admin/providers/{name}/reset`.
pub(crate) async fn admin_reset_provider(
    State(gateway): State<Gateway>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(error) = authorize_admin(&gateway, &headers) {
        return error.into_response();
    }
    if !gateway.state.upstreams.contains_key(&name) || !gateway.state.manager.reset_provider(&name)
    {
        return ApiError::invalid_request(
            StatusCode::NOT_FOUND,
            "provider_not_found",
            format!("no provider is named {name:?}"),
        )
        .into_response();
    }
    tracing::info!(provider = %name, "provider was reset by an admin request");
    Json(json!({"reset": name})).into_response()
}

fn authorize_admin(gateway: &Gateway, headers: &HeaderMap) -> Result<(), AdminError> {
    let unauthorized = |message: &str| {
        AdminError(ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: message.to_owned(),
            kind: "authentication_error",
            code: "invalid_admin_token",
            param: None,
            retry_after: None,
        })
    };
    let Some(expected) = &gateway.state.admin_token else {
        return Err(unauthorized(
            "the admin routes are disabled: set server.admin_token_env",
        ));
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_token);
    // Comparing digests keeps the comparison's timing independent of the token's bytes.
    let matches = presented.is_some_and(|token| {
        Sha256::digest(token.as_bytes()) == Sha256::digest(expected.as_bytes())
    });
    if matches {
        Ok(())
    } else {
        Err(unauthorized("a valid admin bearer token is required"))
    }
}

/// Returns the token of an `Authorization: Bearer TOKEN` value. The scheme name is
/// case-insensitive (RFC 7235, section 2.1).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim_start_matches(' ');
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// A 401 of the admin routes, sent with `WWW-Authenticate: Bearer` (RFC 6750, section 3).
struct AdminError(ApiError);

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let mut response = self.0.into_response();
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        response
    }
}

/// Any other route.
pub(crate) async fn not_found() -> Response {
    ApiError::invalid_request(
        StatusCode::NOT_FOUND,
        "unknown_url",
        "no route matches this path",
    )
    .into_response()
}

/// A known route with another method. Axum adds the `Allow` header.
pub(crate) async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    ApiError::invalid_request(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} does not accept {method}; the Allow header lists the methods it accepts",
            uri.path()
        ),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_key_separates_tenants() {
        let body = br#"{"model":"m","messages":[]}"#;
        let alice = cache_key(Some(b"Bearer alice"), "m", body);
        let bob = cache_key(Some(b"Bearer bob"), "m", body);
        assert_ne!(alice, bob);
        assert_eq!(alice, cache_key(Some(b"Bearer alice"), "m", body));
    }

    #[test]
    fn cache_key_hides_credential() {
        let key = cache_key(Some(b"Bearer sk-secret"), "m", b"{}");
        assert!(!key.contains("sk-secret"));
        assert!(!key.contains("Bearer"));
    }

    #[test]
    fn cache_key_separates_models_and_bodies() {
        let first = cache_key(None, "m", b"{\"a\":1}");
        assert_ne!(first, cache_key(None, "n", b"{\"a\":1}"));
        assert_ne!(first, cache_key(None, "m", b"{\"a\":2}"));
    }

    #[test]
    fn chat_request_parsing() {
        assert!(parse_chat_request(b"{").is_err());
        assert!(parse_chat_request(b"[]").is_err());
        assert_eq!(
            parse_chat_request(b"{}").err().map(|e| e.code),
            Some("missing_model")
        );
        assert_eq!(
            parse_chat_request(br#"{"model":3}"#).err().map(|e| e.code),
            Some("invalid_model")
        );
        assert_eq!(
            parse_chat_request(br#"{"model":"m","stream":"yes"}"#)
                .err()
                .map(|e| e.code),
            Some("invalid_stream")
        );
        let request = parse_chat_request(br#"{"model":"m","stream":true}"#).expect("valid");
        assert_eq!(request.model, "m");
        assert!(request.stream);
    }
}
