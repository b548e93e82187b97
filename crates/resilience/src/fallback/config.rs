use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// The longest `cache_ttl` and `stale_ttl` accepted.
pub const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// A fallback strategy, tried in the configured order after the primary call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The last successful response under the request's cache key, younger than `cache_ttl`.
    Cache,
    /// A response older than `cache_ttl` but younger than `stale_ttl` (stale-if-error).
    Stale,
    /// The same operation against each alternate provider, in order, through its own stack.
    Provider,
    /// The configured degraded response.
    Degraded,
    /// A structured error; strategies after it are never tried, so it must come last.
    Error,
}

impl Strategy {
    /// Every strategy, in declaration order.
    pub const ALL: [Strategy; 5] = [
        Strategy::Cache,
        Strategy::Stale,
        Strategy::Provider,
        Strategy::Degraded,
        Strategy::Error,
    ];

    /// Returns the snake_case name used in metrics labels and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Strategy::Cache => "cache",
            Strategy::Stale => "stale",
            Strategy::Provider => "provider",
            Strategy::Degraded => "degraded",
            Strategy::Error => "error",
        }
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

/// Settings of the fallback chain of one provider.
///
/// # Examples
///
/// ```
/// use resilience::{FallbackConfig, Strategy};
///
/// let config: FallbackConfig = toml::from_str(r#"
///     strategies = ["cache", "provider", "error"]
///     alternate_providers = ["backup"]
///     cache_ttl = "1m"
/// "#).unwrap();
/// assert_eq!(config.strategies, [Strategy::Cache, Strategy::Provider, Strategy::Error]);
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FallbackConfig {
    /// The order in which strategies are tried (default: cache, provider, stale, error, so that a
    /// fresh response from an alternate provider wins over a stale cached one).
    /// `degraded` needs a degraded response set on the manager's builder.
    pub strategies: Vec<Strategy>,
    /// Whether successful responses are cached and served fresh (default true).
    pub enable_cache: bool,
    /// How long a cached response counts as fresh (default 5 min).
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// Whether a response older than `cache_ttl` may be served after a failure (default true).
    pub enable_stale: bool,
    /// How long a cached response is kept for stale use (default 30 min); at least `cache_ttl`.
    #[serde(with = "humantime_serde")]
    pub stale_ttl: Duration,
    /// Providers tried, in order, by the `provider` strategy (default none). A provider's own name
    /// in the list is skipped, so a list in `[defaults]` can name every provider.
    pub alternate_providers: Vec<String>,
    /// The maximum number of responses in the cache; the least useful go first when it is full (default 10 000).
    pub cache_max_entries: u64,
}

impl Default for FallbackConfig {
    fn default() -> Self {
        FallbackConfig {
            strategies: vec![
                Strategy::Cache,
                Strategy::Provider,
                Strategy::Stale,
                Strategy::Error,
            ],
            enable_cache: true,
            cache_ttl: Duration::from_secs(5 * 60),
            enable_stale: true,
            stale_ttl: Duration::from_secs(30 * 60),
            alternate_providers: Vec::new(),
            cache_max_entries: 10_000,
        }
    }
}

impl FallbackConfig {
    /// Checks every field and returns the first invalid one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut seen = HashSet::new();
        for (position, strategy) in self.strategies.iter().enumerate() {
            if !seen.insert(strategy) {
                return Err(ConfigError::invalid(
                    "strategies",
                    strategy.as_str(),
                    "is listed twice; list each strategy at most once",
                ));
            }
            if *strategy == Strategy::Error && position + 1 != self.strategies.len() {
                return Err(ConfigError::invalid(
                    "strategies",
                    "error",
                    "must be the last strategy, because it ends the chain",
                ));
            }
        }
        if self.cache_ttl.is_zero() {
            return Err(ConfigError::invalid(
                "cache_ttl",
                "0s",
                "must be greater than zero; set enable_cache = false to turn the cache off",
            ));
        }
        for (field, ttl) in [("cache_ttl", self.cache_ttl), ("stale_ttl", self.stale_ttl)] {
            if ttl > MAX_TTL {
                return Err(ConfigError::invalid(
                    field,
                    format!("{ttl:?}"),
                    "must be at most 365 days",
                ));
            }
        }
        if self.enable_stale && self.stale_ttl < self.cache_ttl {
            return Err(ConfigError::invalid(
                "stale_ttl",
                format!("{:?}", self.stale_ttl),
                format!("must be at least cache_ttl ({:?})", self.cache_ttl),
            ));
        }
        if self.uses_cache() && self.cache_max_entries == 0 {
            return Err(ConfigError::invalid(
                "cache_max_entries",
                0,
                "must be at least 1 while the cache or stale cache is enabled",
            ));
        }
        let mut alternates = HashSet::new();
        for name in &self.alternate_providers {
            if name.trim().is_empty() || !alternates.insert(name) {
                return Err(ConfigError::invalid(
                    "alternate_providers",
                    format!("{name:?}"),
                    "must list distinct, non-empty provider names",
                ));
            }
        }
        Ok(())
    }

    /// Returns true when responses are stored: the fresh or the stale cache is enabled.
    pub fn uses_cache(&self) -> bool {
        self.enable_cache || self.enable_stale
    }

    /// Returns how long a stored response stays useful.
    pub(crate) fn retention(&self) -> Duration {
        if self.enable_stale {
            self.stale_ttl.max(self.cache_ttl)
        } else {
            self.cache_ttl
        }
    }
}
