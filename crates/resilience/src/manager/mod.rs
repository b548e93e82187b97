//! The manager: one protected stack per provider, and the fallback chain.
//!
//! Per request, the retry loop wraps the circuit breaker, which wraps the bulkhead, which wraps the
//! call; the fallback chain runs on the final failure. So every attempt is admitted and counted by
//! the breaker and takes a bulkhead slot, a backoff sleep takes no slot, and a rejection by the
//! provider's own breaker or bulkhead is never retried on the same provider.

mod attempt;
mod config;
mod error;
mod report;
mod stack;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;

pub use self::attempt::{Attempt, OutcomeHandle};
pub use self::config::{merge_toml_tables, Config, ProviderConfig, DEFAULT_MAX_PROVIDERS};
pub use self::error::{AttemptRecord, CallError, CallErrorKind, FailureReport};
pub use self::report::{
    FallbackStats, HealthIssue, HealthReport, ManagerStats, ProviderHealth, ProviderStats,
    RequestStats,
};
pub use self::stack::ProviderStack;

pub(crate) use self::report::provider_stats;

use self::stack::{AttemptError, RequestGuard, StackFailure, Trail};
use crate::error::ConfigError;
use crate::fallback::{DegradedResponse, Freshness, ResponseCache, Served, Source, Strategy};
use crate::metrics::{ProviderMetrics, TrackedProviders};
use crate::outcome::{Classify, DefaultClassifier, Outcome};

/// One provider's stack and its response cache.
#[derive(Debug)]
struct ProviderEntry<T> {
    stack: Arc<ProviderStack>,
    cache: Option<ResponseCache<T>>,
}

/// The maximum length, in bytes, of a provider name that a call may create a provider for. Names become metric
/// labels and log fields, so they stay short.
pub const MAX_PROVIDER_NAME_LEN: usize = 128;

type ProviderMap<T> = HashMap<Arc<str>, Arc<ProviderEntry<T>>, foldhash::fast::RandomState>;

/// Gives every provider its own circuit breaker, bulkhead, retry policy and fallback chain.
///
/// `T` is the response type that the fallback cache stores and the degraded response builds; `C`
/// classifies results. Cloning a manager is cheap and the clones share every provider's state.
///
/// # Examples
///
/// ```
/// use resilience::{Config, Manager, Source};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let manager: Manager<String> = Manager::new(Config::default()).unwrap();
/// let served = manager
///     .execute_with_fallback("openai", Some("user-1:prompt-hash"), |attempt| {
///         let provider = attempt.provider().to_owned();
///         async move { Ok::<_, std::io::Error>(format!("answer from {provider}")) }
///     })
///     .await
///     .unwrap();
/// assert_eq!(served.value, "answer from openai");
/// assert_eq!(served.source, Source::Primary);
/// # }
/// ```
pub struct Manager<T, C = DefaultClassifier> {
    shared: Arc<Shared<T, C>>,
}

struct Shared<T, C> {
    config: Config,
    providers: ArcSwap<ProviderMap<T>>,
    /// Serializes changes of the provider map; lookups never take it.
    change_lock: Mutex<()>,
    classifier: C,
    degraded: Option<DegradedResponse<T>>,
    closed: AtomicBool,
    /// The stacks that the metrics collector reads, when metrics are on.
    metrics: Option<Arc<TrackedProviders>>,
}

impl<T, C> Clone for Manager<T, C> {
    fn clone(&self) -> Self {
        Manager {
            shared: self.shared.clone(),
        }
    }
}

impl<T, C> std::fmt::Debug for Manager<T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("config", &self.shared.config)
            .field("providers", &self.shared.providers.load().len())
            .field("closed", &self.shared.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Builds a [`Manager`] with a classifier, a degraded response and Prometheus metrics.
pub struct ManagerBuilder<T, C = DefaultClassifier> {
    config: Config,
    classifier: C,
    degraded: Option<DegradedResponse<T>>,
    metrics: Option<Arc<TrackedProviders>>,
}

impl<T, C: std::fmt::Debug> std::fmt::Debug for ManagerBuilder<T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerBuilder")
            .field("config", &self.config)
            .field("classifier", &self.classifier)
            .field("degraded", &self.degraded.is_some())
            .field("metrics", &self.metrics.is_some())
            .finish()
    }
}

impl<T, C> ManagerBuilder<T, C>
where
    T: Clone + Send + Sync + 'static,
{
    /// Sets the classifier of every call's result.
    pub fn classifier<C2>(self, classifier: C2) -> ManagerBuilder<T, C2> {
        ManagerBuilder {
            config: self.config,
            classifier,
            degraded: self.degraded,
            metrics: self.metrics,
        }
    }

    /// Sets the response of the `degraded` strategy.
    #[must_use]
    pub fn degraded_response(mut self, degraded: DegradedResponse<T>) -> Self {
        self.degraded = Some(degraded);
        self
    }

    /// Registers the manager's Prometheus metrics into `registry`, which the application encodes
    /// on its own `/metrics` endpoint. The [`metrics`](crate::metrics) module lists them.
    ///
    /// Without this call the manager records no metric, and a call costs no clock read for them.
    /// Calling it with several registries makes each of them show the same metrics. Two managers
    /// registered into one registry would repeat every metric family, so give each manager its own
    /// registry or `sub_registry_with_prefix`.
    ///
    /// # Examples
    ///
    /// ```
    /// use resilience::metrics::prometheus_client::{encoding::text::encode, registry::Registry};
    /// use resilience::{Config, Manager};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let mut registry = Registry::default();
    /// let manager: Manager<String> = Manager::builder(Config::default())
    ///     .metrics(&mut registry)
    ///     .build()
    ///     .unwrap();
    /// manager
    ///     .execute("openai", |_| async { Ok::<_, std::io::Error>("answer".to_string()) })
    ///     .await
    ///     .unwrap();
    ///
    /// let mut text = String::new();
    /// encode(&mut text, &registry).unwrap();
    /// assert!(text.contains("circuit_breaker_state{provider=\"openai\"} 0\n"));
    /// assert!(text.contains("calls_total{provider=\"openai\",outcome=\"success\"} 1\n"));
    /// # }
    /// ```
    #[must_use]
    pub fn metrics(mut self, registry: &mut prometheus_client::registry::Registry) -> Self {
        let providers = self.metrics.get_or_insert_with(Default::default);
        crate::metrics::register(registry, providers.clone());
        self
    }

    /// Validates the configuration and builds the manager with a stack for every configured provider.
    pub fn build(self) -> Result<Manager<T, C>, ConfigError> {
        self.config.validate()?;
        if self.degraded.is_none() {
            let lists_degraded = std::iter::once((None, &self.config.defaults))
                .chain(
                    self.config
                        .providers
                        .iter()
                        .map(|(name, config)| (Some(name), config)),
                )
                .find(|(_, config)| config.fallback.strategies.contains(&Strategy::Degraded));
            if let Some((provider, _)) = lists_degraded {
                let error = ConfigError::invalid(
                    "fallback.strategies",
                    "degraded",
                    "needs a degraded response; set one with ManagerBuilder::degraded_response",
                );
                return Err(match provider {
                    Some(name) => error.for_provider(name),
                    None => error.in_section("defaults"),
                });
            }
        }

        let mut providers = ProviderMap::default();
        // The defaults are checked by building one stack from them.
        new_entry::<T>(
            Arc::from("defaults"),
            self.config.defaults.clone(),
            &self.config,
            false,
        )?;
        let with_metrics = self.metrics.is_some();
        for (name, config) in &self.config.providers {
            let entry = new_entry(
                Arc::from(name.as_str()),
                config.clone(),
                &self.config,
                with_metrics,
            )
            .map_err(|e| e.for_provider(name))?;
            providers.insert(Arc::from(name.as_str()), Arc::new(entry));
        }
        if let Some(metrics) = &self.metrics {
            for entry in providers.values() {
                metrics.track(&entry.stack);
            }
        }
        Ok(Manager {
            shared: Arc::new(Shared {
                config: self.config,
                providers: ArcSwap::from_pointee(providers),
                change_lock: Mutex::new(()),
                classifier: self.classifier,
                degraded: self.degraded,
                closed: AtomicBool::new(false),
                metrics: self.metrics,
            }),
        })
    }
}

fn new_entry<T: Clone + Send + Sync + 'static>(
    name: Arc<str>,
    config: ProviderConfig,
    switches: &Config,
    with_metrics: bool,
) -> Result<ProviderEntry<T>, ConfigError> {
    let cache = (switches.enable_fallback && config.fallback.uses_cache())
        .then(|| ResponseCache::new(&config.fallback));
    let metrics = with_metrics.then(|| Arc::new(ProviderMetrics::default()));
    let stack = ProviderStack::new(name, config, switches, metrics)?;
    Ok(ProviderEntry {
        stack: Arc::new(stack),
        cache,
    })
}

impl<T> Manager<T, DefaultClassifier>
where
    T: Clone + Send + Sync + 'static,
{
    /// Creates a manager with the default classifier and no degraded response.
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        Self::builder(config).build()
    }

    /// Starts a builder, to set a classifier or a degraded response.
    pub fn builder(config: Config) -> ManagerBuilder<T, DefaultClassifier> {
        ManagerBuilder {
            config,
            classifier: DefaultClassifier,
            degraded: None,
            metrics: None,
        }
    }
}

impl<T, C> Manager<T, C>
where
    T: Clone + Send + Sync + 'static,
{
    /// Runs `operation` through `provider`'s retry loop, circuit breaker and bulkhead, without
    /// fallback. The operation is called once per attempt.
    ///
    /// The response type `R` is free: it need not be the manager's `T`, so a call that returns a
    /// stream can use it.
    ///
    /// The classifier decides, not `Ok` or `Err`: an `Ok` value that it calls a failure (an HTTP
    /// 503 response, say) is retried like an error and dropped if the call still fails, so the
    /// error's [`source_error`](CallError::source_error) is `None`. Return such a response as `Err`
    /// to keep it. An `Ok` value that it calls neutral comes back as it is.
    ///
    /// # Cancel safety
    ///
    /// Dropping the returned future stops the call: the running attempt's breaker admission counts
    /// as neutral, its bulkhead slot or queue place is freed, and no further attempt starts.
    pub async fn execute<R, E, F, Fut>(
        &self,
        provider: &str,
        operation: F,
    ) -> Result<R, CallError<E>>
    where
        C: Classify<R, E>,
        F: Fn(&Attempt<'_>) -> Fut,
        Fut: Future<Output = Result<R, E>>,
    {
        self.execute_classified(provider, &self.shared.classifier, operation)
            .await
    }

    /// Runs `operation` like [`execute`](Self::execute), with `classifier` in place of the
    /// manager's classifier. The tower layers and the reqwest middleware call it.
    pub(crate) async fn execute_classified<R, E, K, F, Fut>(
        &self,
        provider: &str,
        classifier: &K,
        operation: F,
    ) -> Result<R, CallError<E>>
    where
        K: Classify<R, E> + ?Sized,
        F: Fn(&Attempt<'_>) -> Fut,
        Fut: Future<Output = Result<R, E>>,
    {
        let entry = self.entry(provider)?;
        let stack = &entry.stack;
        let request = RequestGuard::new(&stack.counters);
        let mut trail = Trail::default();
        match stack.run(classifier, &operation, &mut trail).await {
            Ok((value, _)) => {
                request.finish(&stack.counters.succeeded);
                Ok(value)
            }
            Err(failure) => {
                request.finish(&stack.counters.failed);
                Err(call_error(stack.name_arc(), failure, trail))
            }
        }
    }

    /// Runs `operation` like [`execute`](Self::execute), then the fallback chain if every attempt
    /// failed. A successful primary response is cached under `cache_key`; `None` neither reads nor
    /// writes the cache (for streams, say).
    ///
    /// A neutral outcome (the caller's own error, or a cancellation) returns as it is: no fallback
    /// hides it.
    ///
    /// # Cancel safety
    ///
    /// The same as [`execute`](Self::execute); a fallback in progress stops too.
    pub async fn execute_with_fallback<E, F, Fut>(
        &self,
        provider: &str,
        cache_key: Option<&str>,
        operation: F,
    ) -> Result<Served<T>, CallError<E>>
    where
        C: Classify<T, E>,
        F: Fn(&Attempt<'_>) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.execute_with_fallback_classified(
            provider,
            cache_key,
            &self.shared.classifier,
            operation,
        )
        .await
    }

    /// Runs `operation` like [`execute_with_fallback`](Self::execute_with_fallback), with
    /// `classifier` in place of the manager's classifier on every provider tried.
    pub(crate) async fn execute_with_fallback_classified<E, K, F, Fut>(
        &self,
        provider: &str,
        cache_key: Option<&str>,
        classifier: &K,
        operation: F,
    ) -> Result<Served<T>, CallError<E>>
    where
        K: Classify<T, E> + ?Sized,
        F: Fn(&Attempt<'_>) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let entry = self.entry(provider)?;
        let stack = &entry.stack;
        let counters = &stack.counters;
        let request = RequestGuard::new(counters);
        let mut trail = Trail::default();

        let failure = match stack.run(classifier, &operation, &mut trail).await {
            Ok((value, outcome)) => {
                if let (Some(key), Some(cache), true) =
                    (cache_key, &entry.cache, outcome.is_success())
                {
                    cache.insert(key, value.clone());
                }
                request.finish(&counters.succeeded);
                return Ok(Served {
                    value,
                    source: Source::Primary,
                    provider: stack.name_arc().clone(),
                    attempts: trail.attempts,
                });
            }
            Err(failure) => failure,
        };
        if !self.shared.config.enable_fallback || matches!(failure.outcome, Outcome::Neutral(_)) {
            request.finish(&counters.failed);
            return Err(call_error(stack.name_arc(), failure, trail));
        }

        let fallback = &stack.config().fallback;
        let mut cached = match (cache_key, &entry.cache) {
            (Some(key), Some(cache)) => cache.get(key),
            _ => None,
        };
        for strategy in &fallback.strategies {
            let source = match strategy {
                Strategy::Cache => match &cached {
                    Some((_, Freshness::Fresh(age))) if fallback.enable_cache => {
                        Some(Source::Cache { age: *age })
                    }
                    _ => None,
                },
                Strategy::Stale => match &cached {
                    Some((_, Freshness::Stale(age))) if fallback.enable_stale => {
                        Some(Source::Stale { age: *age })
                    }
                    _ => None,
                },
                Strategy::Provider => {
                    if let Some(served) = self
                        .try_alternates(stack, classifier, &operation, &mut trail)
                        .await
                    {
                        request.finish(counters.served_by(Strategy::Provider));
                        self.log_fallback(stack, Strategy::Provider);
                        return Ok(served);
                    }
                    None
                }
                Strategy::Degraded => match &self.shared.degraded {
                    Some(degraded) => {
                        let report = failure_report(stack.name_arc(), &failure, &trail);
                        let value = degraded.build(&report);
                        request.finish(counters.served_by(Strategy::Degraded));
                        self.log_fallback(stack, Strategy::Degraded);
                        return Ok(Served {
                            value,
                            source: Source::Degraded,
                            provider: stack.name_arc().clone(),
                            attempts: trail.attempts,
                        });
                    }
                    None => None,
                },
                Strategy::Error => {
                    request.finish(counters.served_by(Strategy::Error));
                    self.log_fallback(stack, Strategy::Error);
                    return Err(call_error(stack.name_arc(), failure, trail));
                }
            };
            if let Some(source) = source {
                if let Some((value, _)) = cached.take() {
                    request.finish(counters.served_by(*strategy));
                    self.log_fallback(stack, *strategy);
                    return Ok(Served {
                        value,
                        source,
                        provider: stack.name_arc().clone(),
                        attempts: trail.attempts,
                    });
                }
            }
        }

        counters.found_nothing.fetch_add(1, Ordering::Relaxed);
        request.finish(&counters.failed);
        Err(call_error(stack.name_arc(), failure, trail))
    }

    /// Runs the operation against each alternate provider in order, each through its own stack.
    async fn try_alternates<E, K, F, Fut>(
        &self,
        primary: &ProviderStack,
        classifier: &K,
        operation: &F,
        trail: &mut Trail,
    ) -> Option<Served<T>>
    where
        K: Classify<T, E> + ?Sized,
        F: Fn(&Attempt<'_>) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        for name in &primary.config().fallback.alternate_providers {
            if name.as_str() == primary.name() {
                continue;
            }
            let Ok(entry) = self.entry::<E>(name) else {
                continue;
            };
            if let Ok((value, _)) = entry.stack.run(classifier, operation, trail).await {
                return Some(Served {
                    value,
                    source: Source::Alternate {
                        provider: entry.stack.name_arc().clone(),
                    },
                    provider: entry.stack.name_arc().clone(),
                    attempts: trail.attempts,
                });
            }
        }
        None
    }

    fn log_fallback(&self, stack: &ProviderStack, strategy: Strategy) {
        if let Some(suppressed) = stack.log_limit.allow() {
            let message = match strategy {
                Strategy::Error => "fallback ended with the structured error",
                _ => "fallback served the request",
            };
            tracing::info!(
                provider = stack.name(),
                strategy = strategy.as_str(),
                suppressed,
                "{message}"
            );
        }
    }

    /// Returns the classifier of every call's result.
    #[cfg(feature = "tower")]
    pub(crate) fn classifier(&self) -> &C {
        &self.shared.classifier
    }

    /// Returns `provider`'s stack, creating it from the defaults on first use.
    pub fn provider(
        &self,
        provider: &str,
    ) -> Result<Arc<ProviderStack>, CallError<std::convert::Infallible>> {
        self.entry(provider).map(|entry| entry.stack.clone())
    }

    fn entry<E>(&self, provider: &str) -> Result<Arc<ProviderEntry<T>>, CallError<E>> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(rejected_call(provider, CallErrorKind::Closed));
        }
        if let Some(entry) = self.shared.providers.load().get(provider) {
            return Ok(entry.clone());
        }
        self.create(provider)
    }

    #[cold]
    fn create<E>(&self, provider: &str) -> Result<Arc<ProviderEntry<T>>, CallError<E>> {
        let _change = self
            .shared
            .change_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let current = self.shared.providers.load_full();
        if let Some(entry) = current.get(provider) {
            return Ok(entry.clone());
        }
        if provider.is_empty() || provider.len() > MAX_PROVIDER_NAME_LEN {
            return Err(rejected_call(provider, CallErrorKind::InvalidProviderName));
        }
        if current.len() >= self.shared.config.max_providers {
            return Err(rejected_call(provider, CallErrorKind::TooManyProviders));
        }
        let config = self.shared.config.provider(provider).clone();
        let with_metrics = self.shared.metrics.is_some();
        let entry = new_entry(
            Arc::from(provider),
            config,
            &self.shared.config,
            with_metrics,
        )
        // NOTE: the defaults were validated by building a stack from them in `build`.
        .expect("the default provider settings were validated when the manager was built");
        let entry = Arc::new(entry);
        let mut providers = ProviderMap::clone(&current);
        providers.insert(Arc::from(provider), entry.clone());
        self.shared.providers.store(Arc::new(providers));
        if let Some(metrics) = &self.shared.metrics {
            metrics.track(&entry.stack);
        }
        Ok(entry)
    }

    /// Replaces `provider`'s settings. The provider gets a new stack: a closed circuit, free slots,
    /// zero statistics and an empty cache. Calls already running finish on the old stack and keep
    /// their slots in the old bulkhead, so for a moment more calls than either limit may run.
    pub fn set_provider_config(
        &self,
        provider: &str,
        config: ProviderConfig,
    ) -> Result<(), ConfigError> {
        config.validate().map_err(|e| e.for_provider(provider))?;
        let known = self.shared.providers.load();
        if let Some(unknown) = config
            .fallback
            .alternate_providers
            .iter()
            .find(|name| !known.contains_key(name.as_str()))
        {
            return Err(ConfigError::invalid(
                "fallback.alternate_providers",
                format!("{unknown:?}"),
                "is not a provider of this manager; configure it or call it first",
            )
            .for_provider(provider));
        }
        let with_metrics = self.shared.metrics.is_some();
        let entry = Arc::new(
            new_entry(
                Arc::from(provider),
                config,
                &self.shared.config,
                with_metrics,
            )
            .map_err(|e| e.for_provider(provider))?,
        );
        let _change = self
            .shared
            .change_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut providers = ProviderMap::clone(&self.shared.providers.load_full());
        providers.insert(Arc::from(provider), entry.clone());
        self.shared.providers.store(Arc::new(providers));
        if let Some(metrics) = &self.shared.metrics {
            metrics.track(&entry.stack);
        }
        Ok(())
    }

    /// Returns a snapshot of every provider's statistics.
    pub fn stats(&self) -> ManagerStats {
        let providers = self.shared.providers.load();
        ManagerStats {
            closed: self.shared.closed.load(Ordering::Acquire),
            providers: providers
                .iter()
                .map(|(name, entry)| {
                    let cache_entries = entry.cache.as_ref().map_or(0, ResponseCache::entry_count);
                    (
                        name.to_string(),
                        report::provider_stats(&entry.stack, cache_entries),
                    )
                })
                .collect(),
        }
    }

    /// Reports whether every provider can take calls, and what is wrong with those that cannot. It
    /// calls no provider.
    pub fn health_check(&self) -> HealthReport {
        let providers: std::collections::BTreeMap<String, ProviderHealth> = self
            .shared
            .providers
            .load()
            .iter()
            .map(|(name, entry)| (name.to_string(), report::provider_health(&entry.stack)))
            .collect();
        HealthReport {
            healthy: !self.shared.closed.load(Ordering::Acquire)
                && providers.values().all(|health| health.available),
            providers,
        }
    }

    /// Returns `provider`'s breaker, window and statistics to their initial state. Its cached
    /// responses stay. Returns false when the provider does not exist yet.
    pub fn reset_provider(&self, provider: &str) -> bool {
        match self.shared.providers.load().get(provider) {
            Some(entry) => {
                entry.stack.reset();
                true
            }
            None => false,
        }
    }

    /// Resets every provider, as [`reset_provider`](Self::reset_provider) does.
    pub fn reset_all(&self) {
        for entry in self.shared.providers.load().values() {
            entry.stack.reset();
        }
    }

    /// Closes the manager: later calls fail with [`CallErrorKind::Closed`] and the caches are
    /// emptied. Calls already running finish. The manager runs no background task of its own; the
    /// caches' housekeeping runs inside cache calls.
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        for entry in self.shared.providers.load().values() {
            if let Some(cache) = &entry.cache {
                cache.clear();
            }
        }
    }

    /// Returns true after [`close`](Self::close).
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Returns the configuration.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }
}

fn rejected_call<E>(provider: &str, kind: CallErrorKind) -> CallError<E> {
    CallError::new(
        FailureReport {
            provider: Arc::from(provider),
            kind,
            attempts: Vec::new(),
            retry_after: None,
        },
        None,
    )
}

/// Returns what ended a provider's attempts. A classifier may call an `Err` a success; such a
/// failure is reported as [`FailureClass::Other`](crate::FailureClass::Other).
fn failure_kind<E>(failure: &StackFailure<E>) -> CallErrorKind {
    match (&failure.error, failure.outcome) {
        (AttemptError::Rejected(rejection), _) => rejection.kind(),
        (_, Outcome::Neutral(reason)) => CallErrorKind::Neutral(reason),
        (_, Outcome::Failure(f)) => CallErrorKind::Failed(f.class),
        (_, Outcome::Success) => CallErrorKind::Failed(crate::FailureClass::Other),
    }
}

/// Returns the report of a failed call while the request goes on, for the degraded response.
fn failure_report<E>(
    provider: &Arc<str>,
    failure: &StackFailure<E>,
    trail: &Trail,
) -> FailureReport {
    FailureReport {
        provider: provider.clone(),
        kind: failure_kind(failure),
        attempts: trail.failed.clone(),
        retry_after: trail.smallest_retry_after(),
    }
}

fn call_error<E>(provider: &Arc<str>, failure: StackFailure<E>, trail: Trail) -> CallError<E> {
    let report = FailureReport {
        provider: provider.clone(),
        kind: failure_kind(&failure),
        retry_after: trail.smallest_retry_after(),
        attempts: trail.failed,
    };
    let source = match failure.error {
        AttemptError::Operation(error) => Some(error),
        AttemptError::Rejected(_) | AttemptError::Discarded => None,
    };
    CallError::new(report, source)
}
