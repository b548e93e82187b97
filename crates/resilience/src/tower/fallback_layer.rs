use std::fmt;
use std::sync::Arc;

use tower::Layer;

use super::fallback_service::FallbackService;
use super::request::{DefaultClone, NoRoute};
use crate::manager::Manager;

/// A tower [`Layer`] that runs every call of the wrapped service through a provider's stack and,
/// when every attempt failed, the provider's fallback chain, as
/// [`Manager::execute_with_fallback`] does.
///
/// The service returns [`Served`](crate::Served): the response and where it came from (the
/// primary, the fresh or stale cache, an alternate provider, or the degraded response). The
/// response type must be the manager's `T`, because the cache stores it and the degraded response
/// builds it; a response type that is not `Clone`, such as an `http::Response` with a streaming
/// body, cannot be used here.
///
/// `cache_key` computes each request's key in the fallback cache from the request; `None` neither
/// reads nor writes the cache. The key must include who asked, so that one tenant's answer is
/// never served to another.
///
/// Alternate providers receive the same request through the same inner service. Set
/// [`route`](Self::route) so that each attempt's request names its provider. Read
/// [`FallbackService`] for readiness, retries and errors.
///
/// # Examples
///
/// ```
/// use resilience::tower::FallbackLayer;
/// use resilience::{Config, Manager, Source};
/// use tower::{Layer, Service};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let manager: Manager<String> = Manager::new(Config::default()).unwrap();
/// let layer = FallbackLayer::new(manager, "llm", |prompt: &String| Some(format!("tenant-1:{prompt}")));
/// let mut service = layer.layer(tower::service_fn(|prompt: String| async move {
///     Ok::<_, std::io::Error>(format!("answer to {prompt}"))
/// }));
///
/// let served = service.call("hello".to_string()).await.unwrap();
/// assert_eq!(served.value, "answer to hello");
/// assert_eq!(served.source, Source::Primary);
/// # }
/// ```
pub struct FallbackLayer<T, C, F, K = C, P = DefaultClone, Rt = NoRoute> {
    pub(super) manager: Manager<T, C>,
    pub(super) provider: Arc<str>,
    pub(super) cache_key: Arc<F>,
    pub(super) classifier: Arc<K>,
    pub(super) clone_request: P,
    pub(super) route: Arc<Rt>,
}

impl<T, C, F> FallbackLayer<T, C, F>
where
    T: Clone + Send + Sync + 'static,
    C: Clone,
{
    /// Creates a layer for `provider` with the manager's classifier, requests copied with their
    /// `Clone` implementation, and no routing.
    pub fn new(manager: Manager<T, C>, provider: impl Into<Arc<str>>, cache_key: F) -> Self {
        let classifier = Arc::new(manager.classifier().clone());
        FallbackLayer {
            manager,
            provider: provider.into(),
            cache_key: Arc::new(cache_key),
            classifier,
            clone_request: DefaultClone,
            route: Arc::new(NoRoute),
        }
    }
}

impl<T, C, F, K, P, Rt> FallbackLayer<T, C, F, K, P, Rt> {
    /// Sets the classifier of the inner service's results, in place of the manager's.
    #[must_use]
    pub fn classifier<K2>(self, classifier: K2) -> FallbackLayer<T, C, F, K2, P, Rt> {
        FallbackLayer {
            manager: self.manager,
            provider: self.provider,
            cache_key: self.cache_key,
            classifier: Arc::new(classifier),
            clone_request: self.clone_request,
            route: self.route,
        }
    }

    /// Sets how a request is copied for each attempt; see [`CloneRequest`](super::CloneRequest).
    /// A request that cannot be copied is sent once, to the primary provider only.
    #[must_use]
    pub fn clone_request<P2>(self, clone_request: P2) -> FallbackLayer<T, C, F, K, P2, Rt> {
        FallbackLayer {
            manager: self.manager,
            provider: self.provider,
            cache_key: self.cache_key,
            classifier: self.classifier,
            clone_request,
            route: self.route,
        }
    }

    /// Sets how each attempt's request is addressed to its provider; see [`Route`](super::Route).
    #[must_use]
    pub fn route<Rt2>(self, route: Rt2) -> FallbackLayer<T, C, F, K, P, Rt2> {
        FallbackLayer {
            manager: self.manager,
            provider: self.provider,
            cache_key: self.cache_key,
            classifier: self.classifier,
            clone_request: self.clone_request,
            route: Arc::new(route),
        }
    }

    /// Returns the primary provider of this layer's calls.
    pub fn provider(&self) -> &str {
        &self.provider
    }
}

impl<S, T, C, F, K, P: Clone, Rt> Layer<S> for FallbackLayer<T, C, F, K, P, Rt> {
    type Service = FallbackService<S, T, C, F, K, P, Rt>;

    fn layer(&self, inner: S) -> Self::Service {
        FallbackService {
            inner,
            manager: self.manager.clone(),
            provider: self.provider.clone(),
            cache_key: self.cache_key.clone(),
            classifier: self.classifier.clone(),
            clone_request: self.clone_request.clone(),
            route: self.route.clone(),
        }
    }
}

impl<T, C, F, K, P: Clone, Rt> Clone for FallbackLayer<T, C, F, K, P, Rt> {
    fn clone(&self) -> Self {
        FallbackLayer {
            manager: self.manager.clone(),
            provider: self.provider.clone(),
            cache_key: self.cache_key.clone(),
            classifier: self.classifier.clone(),
            clone_request: self.clone_request.clone(),
            route: self.route.clone(),
        }
    }
}

impl<T, C, F, K, P, Rt> fmt::Debug for FallbackLayer<T, C, F, K, P, Rt> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackLayer")
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}
