//! The manager's configuration, loaded from TOML with per-provider overrides merged field by field.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::bulkhead::BulkheadConfig;
use crate::circuit_breaker::CircuitBreakerConfig;
use crate::error::ConfigError;
use crate::fallback::FallbackConfig;
use crate::retry::RetryConfig;

/// Settings of one provider's stack.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProviderConfig {
    /// The circuit breaker's settings.
    pub circuit_breaker: CircuitBreakerConfig,
    /// The bulkhead's settings.
    pub bulkhead: BulkheadConfig,
    /// The retry policy's settings.
    pub retry: RetryConfig,
    /// The fallback chain's settings.
    pub fallback: FallbackConfig,
}

impl ProviderConfig {
    /// Checks every section and returns the first invalid field, named with its section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.circuit_breaker
            .validate()
            .map_err(|e| e.in_section("circuit_breaker"))?;
        self.bulkhead
            .validate()
            .map_err(|e| e.in_section("bulkhead"))?;
        self.retry.validate().map_err(|e| e.in_section("retry"))?;
        self.fallback
            .validate()
            .map_err(|e| e.in_section("fallback"))?;
        Ok(())
    }
}

/// The default number of providers a manager holds.
pub const DEFAULT_MAX_PROVIDERS: usize = 64;

/// Settings of a [`Manager`](super::Manager): the default stack, per-provider overrides, and switches
/// for each pattern.
///
/// In TOML, `[defaults.<section>]` sets the default of every provider, and
/// `[providers.<name>.<section>]` overrides single fields for one provider. The fields it does not
/// name keep the `[defaults]` values. Unknown keys are rejected.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use resilience::Config;
///
/// let config = Config::from_toml_str(r#"
///     [defaults.circuit_breaker]
///     failure_threshold = 5
///     timeout = "30s"
///
///     [providers.openai.circuit_breaker]
///     failure_threshold = 3
///
///     [providers.openai.fallback]
///     alternate_providers = ["anthropic"]
///
///     [providers.anthropic]
/// "#).unwrap();
/// let openai = config.provider("openai");
/// assert_eq!(openai.circuit_breaker.failure_threshold, 3);
/// assert_eq!(openai.circuit_breaker.timeout, Duration::from_secs(30)); // from [defaults]
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawConfig")]
pub struct Config {
    /// Whether calls pass a circuit breaker (default true).
    pub enable_circuit_breaker: bool,
    /// Whether calls pass a bulkhead (default true).
    pub enable_bulkhead: bool,
    /// Whether failed attempts are retried (default true).
    pub enable_retry: bool,
    /// Whether `execute_with_fallback` runs the fallback chain (default true).
    pub enable_fallback: bool,
    /// The maximum number of providers the manager creates, configured ones included (default 64). A call for a
    /// new provider beyond it fails, which keeps memory and metric labels bounded.
    pub max_providers: usize,
    /// The stack settings of every provider without an override.
    pub defaults: ProviderConfig,
    /// Per-provider settings, each complete (overrides already merged over `defaults`).
    pub providers: BTreeMap<String, ProviderConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            enable_circuit_breaker: true,
            enable_bulkhead: true,
            enable_retry: true,
            enable_fallback: true,
            max_providers: DEFAULT_MAX_PROVIDERS,
            defaults: ProviderConfig::default(),
            providers: BTreeMap::new(),
        }
    }
}

impl Config {
    /// Parses, merges and validates a TOML document.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|error| ConfigError::Parse {
            message: error.to_string().trim_end().to_owned(),
        })?;
        Config::try_from(raw)
    }

    /// Reads, parses, merges and validates a TOML file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Io {
            path: path.display().to_string(),
            message: error.to_string(),
        })?;
        Self::from_toml_str(&text)
    }

    /// Returns the settings of `provider`: its own, or the defaults.
    pub fn provider(&self, provider: &str) -> &ProviderConfig {
        self.providers.get(provider).unwrap_or(&self.defaults)
    }

    /// Checks every setting and returns the first invalid one, named with its provider and field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_providers == 0 {
            return Err(ConfigError::invalid(
                "max_providers",
                0,
                "must be at least 1",
            ));
        }
        if self.providers.len() > self.max_providers {
            return Err(ConfigError::invalid(
                "max_providers",
                self.max_providers,
                format!(
                    "is below the {} configured providers; raise it",
                    self.providers.len()
                ),
            ));
        }
        self.defaults
            .validate()
            .map_err(|e| e.in_section("defaults"))?;
        self.check_alternates(None, &self.defaults)?;
        for (name, provider) in &self.providers {
            if name.trim().is_empty() {
                return Err(ConfigError::invalid(
                    "providers",
                    format!("{name:?}"),
                    "a provider name must not be empty",
                ));
            }
            provider.validate().map_err(|e| e.for_provider(name))?;
            self.check_alternates(Some(name), provider)?;
        }
        Ok(())
    }

    /// Checks that alternates are configured providers, so that a typo does not create a provider
    /// from the defaults.
    fn check_alternates(
        &self,
        provider: Option<&str>,
        config: &ProviderConfig,
    ) -> Result<(), ConfigError> {
        for alternate in &config.fallback.alternate_providers {
            if !self.providers.contains_key(alternate) {
                let error = ConfigError::invalid(
                    "fallback.alternate_providers",
                    format!("{alternate:?}"),
                    "is not a configured provider; add a [providers.<name>] table for it",
                );
                return Err(match provider {
                    Some(name) => error.for_provider(name),
                    None => error.in_section("defaults"),
                });
            }
        }
        Ok(())
    }
}

/// The configuration as written: sections as TOML tables, merged and checked by `TryFrom`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "enabled")]
    enable_circuit_breaker: bool,
    #[serde(default = "enabled")]
    enable_bulkhead: bool,
    #[serde(default = "enabled")]
    enable_retry: bool,
    #[serde(default = "enabled")]
    enable_fallback: bool,
    #[serde(default = "default_max_providers")]
    max_providers: usize,
    #[serde(default)]
    defaults: toml::Table,
    #[serde(default)]
    providers: BTreeMap<String, toml::Table>,
}

fn enabled() -> bool {
    true
}

fn default_max_providers() -> usize {
    DEFAULT_MAX_PROVIDERS
}

impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Self, ConfigError> {
        let defaults = parse_provider(raw.defaults.clone(), "defaults")?;
        let mut providers = BTreeMap::new();
        for (name, overrides) in raw.providers {
            let mut merged = raw.defaults.clone();
            merge_toml_tables(&mut merged, overrides);
            let config = parse_provider(merged, &format!("providers.{name}"))?;
            providers.insert(name, config);
        }
        let config = Config {
            enable_circuit_breaker: raw.enable_circuit_breaker,
            enable_bulkhead: raw.enable_bulkhead,
            enable_retry: raw.enable_retry,
            enable_fallback: raw.enable_fallback,
            max_providers: raw.max_providers,
            defaults,
            providers,
        };
        config.validate()?;
        Ok(config)
    }
}

/// Deserializes one provider's merged settings. The merged table has no source positions, so the
/// error names the section and the field's path instead.
fn parse_provider(table: toml::Table, location: &str) -> Result<ProviderConfig, ConfigError> {
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|error| {
        let path = error.path().to_string();
        ConfigError::Parse {
            message: format!("{location}.{path}: {}", error.inner().message()),
        }
    })
}

/// Overwrites `base` with `overrides`, descending into tables so that an override names only the
/// fields it changes. It is how `[providers.<name>]` is merged over `[defaults]`, and an
/// application that embeds the configuration can merge its own overrides the same way.
///
/// # Examples
///
/// ```
/// let mut base: toml::Table = toml::from_str("[retry]\nmax_retries = 3\njitter = true").unwrap();
/// let overrides: toml::Table = toml::from_str("[retry]\nmax_retries = 1").unwrap();
/// resilience::manager::merge_toml_tables(&mut base, overrides);
/// assert_eq!(base["retry"]["max_retries"].as_integer(), Some(1));
/// assert_eq!(base["retry"]["jitter"].as_bool(), Some(true));
/// ```
pub fn merge_toml_tables(base: &mut toml::Table, overrides: toml::Table) {
    for (key, value) in overrides {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base_table)), toml::Value::Table(override_table)) => {
                merge_toml_tables(base_table, override_table);
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}
