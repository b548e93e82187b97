//! The gateway's shared state and its HTTP server.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use prometheus_client::registry::Registry;
use resilience::log_limit::LogLimit;
use resilience::{DegradedResponse, Manager};
use tokio::net::TcpListener;

use crate::config::{ConfigError, GatewayConfig, Timeouts};
use crate::metrics::Metrics;
use crate::routes;
use crate::upstream::{CompleteReply, GatewayClassifier, Reply, Upstream};

/// The manager type of the gateway.
pub type GatewayManager = Manager<Reply, GatewayClassifier>;

/// The gateway: its manager, its upstreams and its settings. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct Gateway {
    pub(crate) state: Arc<State>,
}

pub(crate) struct State {
    pub(crate) manager: GatewayManager,
    pub(crate) upstreams: HashMap<String, Arc<Upstream>>,
    /// Each model's primary upstream.
    pub(crate) models: HashMap<String, String>,
    pub(crate) client: reqwest::Client,
    pub(crate) timeouts: Timeouts,
    pub(crate) request_timeout: Duration,
    pub(crate) max_body_bytes: usize,
    pub(crate) admin_token: Option<String>,
    pub(crate) degraded_message: String,
    pub(crate) metrics: Metrics,
    pub(crate) registry: Registry,
    pub(crate) error_log: LogLimit,
    pub(crate) stream_error_log: Arc<LogLimit>,
}

impl Gateway {
    /// Builds the gateway from a validated configuration.
    ///
    /// `env` looks up environment variables (the API keys and the admin token); pass
    /// `|name| std::env::var(name).ok()` in production. `registry` receives the manager's and the
    /// gateway's metrics, and may already hold other collectors to serve on `/metrics`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::MissingEnv`] when a named variable is not set, and the library's error when
    /// the resilience settings are rejected.
    pub fn new(
        config: GatewayConfig,
        env: impl Fn(&str) -> Option<String>,
        mut registry: Registry,
    ) -> Result<Self, ConfigError> {
        let mut upstreams = HashMap::new();
        let mut models = HashMap::new();
        for (index, upstream) in config.upstreams.iter().enumerate() {
            let api_key = match &upstream.api_key_env {
                Some(variable) => Some(env(variable).ok_or_else(|| ConfigError::MissingEnv {
                    key: format!("upstreams[{index}].api_key_env"),
                    variable: variable.clone(),
                })?),
                None => None,
            };
            for model in &upstream.models {
                models.insert(model.clone(), upstream.name.clone());
            }
            upstreams.insert(
                upstream.name.clone(),
                Arc::new(Upstream::new(upstream, api_key)),
            );
        }
        let admin_token = match &config.server.admin_token_env {
            Some(variable) => Some(env(variable).ok_or_else(|| ConfigError::MissingEnv {
                key: "server.admin_token_env".to_owned(),
                variable: variable.clone(),
            })?),
            None => None,
        };

        let message = config.degraded.message.clone();
        let manager = Manager::builder(config.resilience.clone())
            .classifier(GatewayClassifier::default())
            .degraded_response(DegradedResponse::from_fn(move |_| {
                Reply::Complete(Arc::new(CompleteReply {
                    status: http::StatusCode::OK,
                    content_type: Some(http::HeaderValue::from_static("application/json")),
                    body: routes::degraded_completion("degraded", &message)
                        .to_string()
                        .into(),
                }))
            }))
            .metrics(&mut registry)
            .build()?;

        let client = reqwest::Client::builder()
            .connect_timeout(config.timeouts.connect)
            .build()
            .map_err(|error| {
                ConfigError::Parse(format!("failed to build the HTTP client: {error}"))
            })?;
        let metrics = Metrics::register(&mut registry);

        Ok(Gateway {
            state: Arc::new(State {
                manager,
                upstreams,
                models,
                client,
                timeouts: config.timeouts,
                request_timeout: config.server.request_timeout,
                max_body_bytes: config.server.max_body_bytes,
                admin_token,
                degraded_message: config.degraded.message,
                metrics,
                registry,
                error_log: LogLimit::default(),
                stream_error_log: Arc::new(LogLimit::default()),
            }),
        })
    }

    /// Returns the manager, to read statistics or reset providers.
    pub fn manager(&self) -> &GatewayManager {
        &self.state.manager
    }

    /// Returns the router with every route.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/chat/completions", post(routes::chat_completions))
            .route("/v1/models", get(routes::models))
            .route("/health", get(routes::health))
            .route("/stats", get(routes::stats))
            .route("/metrics", get(routes::metrics))
            .route("/admin/reset", post(routes::admin_reset))
            .route(
                "/admin/providers/{name}/reset",
                post(routes::admin_reset_provider),
            )
            .method_not_allowed_fallback(routes::method_not_allowed)
            .fallback(routes::not_found)
            .layer(DefaultBodyLimit::max(self.state.max_body_bytes))
            .with_state(self.clone())
    }

    /// Serves on `listener` until `shutdown` completes, then closes the manager.
    ///
    /// # Errors
    ///
    /// Returns the server's I/O error.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let router = self.router();
        let result = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await;
        self.state.manager.close();
        result
    }
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The admin token is left out on purpose.
        f.debug_struct("State")
            .field("upstreams", &self.upstreams)
            .field("models", &self.models)
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}
