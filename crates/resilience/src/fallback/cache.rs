//! The response cache: bounded, with fresh and stale ages decided on tokio's clock.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::FallbackConfig;

/// A cached response and when it was stored.
#[derive(Debug, Clone)]
struct Entry<T> {
    value: T,
    stored_at: Instant,
}

/// The age class of a cache hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Freshness {
    /// Younger than `cache_ttl`.
    Fresh(Duration),
    /// Older than `cache_ttl` but younger than `stale_ttl`.
    Stale(Duration),
}

/// The responses of one provider, by cache key.
///
/// moka bounds the number of entries (evicting by its TinyLFU policy, which keeps the most used) and
/// removes entries after their retention on its own clock, without a sweeper thread of ours. Ages
/// are decided on tokio's clock, so an entry whose retention has passed on that clock is never
/// served, even before moka removes it.
pub(crate) struct ResponseCache<T> {
    entries: moka::sync::Cache<Arc<str>, Entry<T>>,
    fresh_for: Duration,
    stale_for: Option<Duration>,
}

impl<T> std::fmt::Debug for ResponseCache<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache")
            .field("fresh_for", &self.fresh_for)
            .field("stale_for", &self.stale_for)
            .finish_non_exhaustive()
    }
}

impl<T: Clone + Send + Sync + 'static> ResponseCache<T> {
    pub(crate) fn new(config: &FallbackConfig) -> Self {
        ResponseCache {
            entries: moka::sync::Cache::builder()
                .max_capacity(config.cache_max_entries)
                .time_to_live(config.retention())
                .build(),
            fresh_for: config.cache_ttl,
            stale_for: config.enable_stale.then_some(config.stale_ttl),
        }
    }

    pub(crate) fn insert(&self, key: &str, value: T) {
        let entry = Entry {
            value,
            stored_at: Instant::now(),
        };
        self.entries.insert(Arc::from(key), entry);
    }

    /// Returns the entry under `key` with its freshness, or `None` when there is none or it is too
    /// old to serve, in which case it is removed.
    pub(crate) fn get(&self, key: &str) -> Option<(T, Freshness)> {
        let entry = self.entries.get(key)?;
        let age = entry.stored_at.elapsed();
        if age < self.fresh_for {
            return Some((entry.value, Freshness::Fresh(age)));
        }
        match self.stale_for {
            Some(stale_for) if age < stale_for => Some((entry.value, Freshness::Stale(age))),
            _ => {
                self.entries.invalidate(key);
                None
            }
        }
    }

    pub(crate) fn entry_count(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }

    pub(crate) fn clear(&self) {
        self.entries.invalidate_all();
    }
}
