use std::fmt;
use std::sync::Arc;

use tower::Layer;

use super::request::DefaultClone;
use super::service::ResilienceService;
use crate::manager::Manager;

/// A tower [`Layer`] that runs every call of the wrapped service through one provider's retry
/// loop, circuit breaker and bulkhead, taken from a [`Manager`].
///
/// The breaker and bulkhead are the manager's own for that provider: every service this layer
/// makes, every clone of it (axum clones a service per request), and every
/// [`Manager::execute`] for the same provider share them.
///
/// The service's error is [`CallError`](crate::CallError), and what the inner service returned
/// comes back unchanged: a response classified as a failure is retried, and after the last
/// attempt it is returned as `Ok`, as the inner service returned it. Read
/// [`ResilienceService`] for readiness, retries and errors.
///
/// # Examples
///
/// ```
/// use resilience::tower::ResilienceLayer;
/// use resilience::{Config, Manager};
/// use tower::{Layer, Service};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let manager: Manager<()> = Manager::new(Config::default()).unwrap();
/// let layer = ResilienceLayer::new(manager.clone(), "search");
/// let mut service = layer.layer(tower::service_fn(|query: String| async move {
///     Ok::<_, std::io::Error>(query.len())
/// }));
///
/// let length = service.call("rust".to_string()).await.unwrap();
/// assert_eq!(length, 4);
/// assert_eq!(manager.stats().providers["search"].requests.succeeded, 1);
/// # }
/// ```
pub struct ResilienceLayer<T, C, K = C, P = DefaultClone> {
    pub(super) manager: Manager<T, C>,
    pub(super) provider: Arc<str>,
    pub(super) classifier: Arc<K>,
    pub(super) clone_request: P,
}

impl<T, C> ResilienceLayer<T, C>
where
    T: Clone + Send + Sync + 'static,
    C: Clone,
{
    /// Creates a layer for `provider`, classifying results with the manager's classifier and
    /// copying requests with their `Clone` implementation.
    ///
    /// The provider's stack is looked up on each call, so a later
    /// [`set_provider_config`](Manager::set_provider_config) takes effect, and a call after
    /// [`close`](Manager::close) fails with [`CallErrorKind::Closed`](crate::CallErrorKind::Closed).
    pub fn new(manager: Manager<T, C>, provider: impl Into<Arc<str>>) -> Self {
        let classifier = Arc::new(manager.classifier().clone());
        ResilienceLayer {
            manager,
            provider: provider.into(),
            classifier,
            clone_request: DefaultClone,
        }
    }
}

impl<T, C, K, P> ResilienceLayer<T, C, K, P> {
    /// Sets the classifier of the inner service's results, in place of the manager's.
    ///
    /// It receives the inner service's `Result<Response, Error>`, so a response can be a failure
    /// (an HTTP 503) or neutral (an HTTP 400, the caller's own fault).
    #[must_use]
    pub fn classifier<K2>(self, classifier: K2) -> ResilienceLayer<T, C, K2, P> {
        ResilienceLayer {
            manager: self.manager,
            provider: self.provider,
            classifier: Arc::new(classifier),
            clone_request: self.clone_request,
        }
    }

    /// Sets how a request is copied for each attempt; see [`CloneRequest`](super::CloneRequest).
    #[must_use]
    pub fn clone_request<P2>(self, clone_request: P2) -> ResilienceLayer<T, C, K, P2> {
        ResilienceLayer {
            manager: self.manager,
            provider: self.provider,
            classifier: self.classifier,
            clone_request,
        }
    }

    /// Returns the provider whose stack this layer applies.
    pub fn provider(&self) -> &str {
        &self.provider
    }
}

impl<S, T, C, K, P: Clone> Layer<S> for ResilienceLayer<T, C, K, P> {
    type Service = ResilienceService<S, T, C, K, P>;

    fn layer(&self, inner: S) -> Self::Service {
        ResilienceService {
            inner,
            manager: self.manager.clone(),
            provider: self.provider.clone(),
            classifier: self.classifier.clone(),
            clone_request: self.clone_request.clone(),
        }
    }
}

impl<T, C, K, P: Clone> Clone for ResilienceLayer<T, C, K, P> {
    fn clone(&self) -> Self {
        ResilienceLayer {
            manager: self.manager.clone(),
            provider: self.provider.clone(),
            classifier: self.classifier.clone(),
            clone_request: self.clone_request.clone(),
        }
    }
}

impl<T, C, K, P> fmt::Debug for ResilienceLayer<T, C, K, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResilienceLayer")
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}
