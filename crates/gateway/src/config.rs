//! The gateway's configuration file: the server, upstream timeouts, the upstream providers and the
//! resilience settings, loaded from TOML and validated before the server starts.
//!
//! ```toml
//! [server]
//! listen = "127.0.0.1:8080"
//! max_body_bytes = 1048576
//! admin_token_env = "GATEWAY_ADMIN_TOKEN"
//!
//! [[upstreams]]
//! name = "openai"
//! base_url = "https://api.openai.com/v1"
//! api_key_env = "OPENAI_API_KEY"
//! models = ["gpt-4o-mini"]
//! resilience = { circuit_breaker = { failure_threshold = 3 } }
//!
//! [resilience.defaults.retry]
//! max_retries = 2
//! ```
//!
//! An upstream's `resilience` table is merged over `[resilience.providers.<name>]`, which is merged
//! over `[resilience.defaults]` by the library.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// The maximum value accepted for `server.request_timeout` and every key of `[timeouts]`: one day.
/// No request to a chat completion provider is worth waiting longer, and a larger value is most
/// likely a unit mistake.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// An invalid gateway configuration. The message names the key and states what is accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("failed to read configuration file {path}: {source}")]
    Io {
        /// The file's path.
        path: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The TOML could not be parsed, or has an unknown key or a value of the wrong type.
    #[error("invalid configuration: {0}")]
    Parse(String),
    /// A key has a value the gateway cannot work with.
    #[error("invalid {key} = {value}: {reason}")]
    Invalid {
        /// The key's path, such as `upstreams[0].base_url`.
        key: String,
        /// The rejected value.
        value: String,
        /// What is wrong and what is accepted.
        reason: String,
    },
    /// The `[resilience]` table was rejected by the library.
    #[error("invalid [resilience]: {0}")]
    Resilience(#[from] resilience::ConfigError),
    /// An environment variable named by the configuration is not set.
    #[error(
        "environment variable {variable}, named by {key}, is not set; export it or remove {key}"
    )]
    MissingEnv {
        /// The key that names the variable.
        key: String,
        /// The variable's name.
        variable: String,
    },
}

fn invalid(
    key: impl Into<String>,
    value: impl std::fmt::Display,
    reason: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// The validated configuration of the gateway.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The HTTP server's settings.
    pub server: ServerConfig,
    /// The timeouts of every upstream attempt.
    pub timeouts: Timeouts,
    /// The degraded response's settings.
    pub degraded: DegradedConfig,
    /// The upstream providers, in the order written.
    pub upstreams: Vec<UpstreamConfig>,
    /// The library's configuration, with every upstream's overrides merged in.
    pub resilience: resilience::Config,
}

/// Settings of the HTTP server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// The address to listen on (default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// The largest request body accepted, in bytes (default 1 MiB); larger ones get 413.
    pub max_body_bytes: usize,
    /// The environment variable holding the bearer token of the `/admin` routes. The gateway does
    /// not start while the variable is unset. Without this key, the admin routes reject every
    /// request.
    pub admin_token_env: Option<String>,
    /// The maximum time one client request may take, retries and fallbacks included (default
    /// 10 min, at most [`MAX_TIMEOUT`]).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 1024 * 1024,
            admin_token_env: None,
            request_timeout: Duration::from_secs(600),
        }
    }
}

/// Timeouts of one upstream attempt. Each is capped by what remains of the request's timeout, and
/// each must be greater than zero and at most [`MAX_TIMEOUT`].
///
/// A long generation can stream for minutes, so the phases have separate limits instead of one
/// total timeout.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// Opening the connection (default 5 s).
    #[serde(with = "humantime_serde")]
    pub connect: Duration,
    /// Waiting for the status line after sending the request (default 60 s).
    #[serde(with = "humantime_serde")]
    pub status: Duration,
    /// Streams: waiting for the first content event after the status (default 60 s).
    #[serde(with = "humantime_serde")]
    pub first_event: Duration,
    /// Streams: the longest gap between two events once content flows, and the longest wait for
    /// a client that does not read the next event (default 30 s).
    #[serde(with = "humantime_serde")]
    pub idle: Duration,
    /// The whole attempt, the body or the stream included (default 10 min).
    #[serde(with = "humantime_serde")]
    pub attempt: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            status: Duration::from_secs(60),
            first_event: Duration::from_secs(60),
            idle: Duration::from_secs(30),
            attempt: Duration::from_secs(600),
        }
    }
}

/// Settings of the degraded response, served when the `degraded` fallback strategy runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DegradedConfig {
    /// The assistant message of the degraded `chat.completion`.
    pub message: String,
}

impl Default for DegradedConfig {
    fn default() -> Self {
        DegradedConfig {
            message: "The service is temporarily unavailable. Please try again shortly.".to_owned(),
        }
    }
}

/// One upstream provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The provider's name, used in the `[resilience.providers]` table, headers and metrics.
    pub name: String,
    /// The OpenAI-compatible base URL, such as `https://api.openai.com/v1`; the gateway appends
    /// `/chat/completions`.
    pub base_url: String,
    /// The environment variable holding the provider's API key, sent as `Authorization: Bearer`.
    /// Without it, requests go out without an `Authorization` header.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// The models this provider serves. A request's `model` picks its primary provider.
    pub models: Vec<String>,
    /// Overrides of the provider's resilience settings, merged over `[resilience.providers.<name>]`.
    #[serde(default)]
    pub resilience: Option<toml::Table>,
}

/// The file as written, before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: ServerConfig,
    #[serde(default)]
    timeouts: Timeouts,
    #[serde(default)]
    degraded: DegradedConfig,
    #[serde(default)]
    upstreams: Vec<UpstreamConfig>,
    #[serde(default)]
    resilience: toml::Table,
}

impl GatewayConfig {
    /// Reads and validates a configuration file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml_str(&text)
    }

    /// Parses and validates a configuration.
    ///
    /// # Examples
    ///
    /// ```
    /// use resilience_gateway::config::GatewayConfig;
    ///
    /// let config = GatewayConfig::from_toml_str(r#"
    ///     [[upstreams]]
    ///     name = "primary"
    ///     base_url = "http://127.0.0.1:4000/v1"
    ///     models = ["gpt-test"]
    ///     resilience = { circuit_breaker = { failure_threshold = 2 } }
    /// "#).unwrap();
    /// let primary = config.resilience.provider("primary");
    /// assert_eq!(primary.circuit_breaker.failure_threshold, 2);
    ///
    /// let error = GatewayConfig::from_toml_str("[server]\nlisten_on = \"x\"").unwrap_err();
    /// assert!(error.to_string().contains("listen_on"));
    /// ```
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|error| ConfigError::Parse(error.to_string()))?;
        validate_server(&raw.server, &raw.timeouts)?;
        validate_upstreams(&raw.upstreams)?;
        let resilience = merge_resilience(raw.resilience, &raw.upstreams)?;
        Ok(GatewayConfig {
            server: raw.server,
            timeouts: raw.timeouts,
            degraded: raw.degraded,
            upstreams: raw.upstreams,
            resilience,
        })
    }

    /// Returns the name of the upstream serving `model`.
    pub fn upstream_for_model(&self, model: &str) -> Option<&UpstreamConfig> {
        self.upstreams
            .iter()
            .find(|upstream| upstream.models.iter().any(|served| served == model))
    }
}

fn validate_server(server: &ServerConfig, timeouts: &Timeouts) -> Result<(), ConfigError> {
    if server.max_body_bytes == 0 {
        return Err(invalid("server.max_body_bytes", 0, "must be at least 1"));
    }
    if let Some(variable) = &server.admin_token_env {
        if variable.trim().is_empty() {
            return Err(invalid(
                "server.admin_token_env",
                "\"\"",
                "must name an environment variable",
            ));
        }
    }
    let durations = [
        ("server.request_timeout", server.request_timeout),
        ("timeouts.connect", timeouts.connect),
        ("timeouts.status", timeouts.status),
        ("timeouts.first_event", timeouts.first_event),
        ("timeouts.idle", timeouts.idle),
        ("timeouts.attempt", timeouts.attempt),
    ];
    for (key, value) in durations {
        if value.is_zero() {
            return Err(invalid(key, "0s", "must be greater than zero"));
        }
        if value > MAX_TIMEOUT {
            return Err(invalid(
                key,
                format!("{value:?}"),
                "must be at most 24h; write it as \"30s\", \"10m\" or \"2h\"",
            ));
        }
    }
    Ok(())
}

fn validate_upstreams(upstreams: &[UpstreamConfig]) -> Result<(), ConfigError> {
    if upstreams.is_empty() {
        return Err(invalid(
            "upstreams",
            "[]",
            "add at least one [[upstreams]] table",
        ));
    }
    let mut names = HashSet::new();
    let mut models: HashMap<&str, &str> = HashMap::new();
    for (index, upstream) in upstreams.iter().enumerate() {
        let key = |field: &str| format!("upstreams[{index}].{field}");
        let name = upstream.name.as_str();
        let valid_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid_name {
            return Err(invalid(
                key("name"),
                format!("{name:?}"),
                "use letters, digits, '-' and '_' only",
            ));
        }
        if !names.insert(name) {
            return Err(invalid(
                key("name"),
                format!("{name:?}"),
                "is used by another upstream",
            ));
        }
        validate_base_url(&upstream.base_url).map_err(|reason| {
            invalid(key("base_url"), format!("{:?}", upstream.base_url), reason)
        })?;
        if let Some(variable) = &upstream.api_key_env {
            if variable.trim().is_empty() {
                return Err(invalid(
                    key("api_key_env"),
                    "\"\"",
                    "must name an environment variable",
                ));
            }
        }
        if upstream.models.is_empty() {
            return Err(invalid(key("models"), "[]", "list at least one model"));
        }
        for model in &upstream.models {
            if model.trim().is_empty() {
                return Err(invalid(
                    key("models"),
                    "\"\"",
                    "a model name must not be empty",
                ));
            }
            if let Some(other) = models.insert(model, name) {
                return Err(invalid(
                    key("models"),
                    format!("{model:?}"),
                    format!(
                        "is already served by upstream {other:?}; a model routes to one upstream"
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn validate_base_url(base_url: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(base_url).map_err(|error| format!("is not a URL ({error})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must start with http:// or https://".to_owned());
    }
    if url.host_str().is_none() {
        return Err("must name a host".to_owned());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or a fragment".to_owned());
    }
    Ok(())
}

/// Builds the library's configuration: every upstream gets a `providers.<name>` table, with its own
/// `resilience` overrides merged over whatever `[resilience.providers.<name>]` states.
fn merge_resilience(
    mut table: toml::Table,
    upstreams: &[UpstreamConfig],
) -> Result<resilience::Config, ConfigError> {
    let providers = match table
        .entry("providers")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
    {
        toml::Value::Table(providers) => providers,
        other => {
            return Err(invalid(
                "resilience.providers",
                other.type_str(),
                "must be a table",
            ));
        }
    };

    let known: BTreeMap<&str, ()> = upstreams
        .iter()
        .map(|upstream| (upstream.name.as_str(), ()))
        .collect();
    if let Some(unknown) = providers
        .keys()
        .find(|name| !known.contains_key(name.as_str()))
    {
        return Err(invalid(
            format!("resilience.providers.{unknown}"),
            format!("{unknown:?}"),
            "is not the name of an upstream; fix the name or add an [[upstreams]] entry",
        ));
    }

    for upstream in upstreams {
        let entry = providers
            .entry(upstream.name.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(base) = entry else {
            return Err(invalid(
                format!("resilience.providers.{}", upstream.name),
                entry.type_str(),
                "must be a table",
            ));
        };
        if let Some(overrides) = &upstream.resilience {
            resilience::manager::merge_toml_tables(base, overrides.clone());
        }
    }

    let config = resilience::Config::deserialize(toml::Value::Table(table))
        .map_err(|error| ConfigError::Parse(format!("in [resilience]: {}", error.message())))?;
    config.validate()?;
    Ok(config)
}
