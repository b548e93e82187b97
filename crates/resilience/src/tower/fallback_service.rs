use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use tower::Service;

use super::attempt::send_attempt;
use super::future::ResponseFuture;
use super::request::{CloneRequest, Route};
use crate::fallback::{Served, Source};
use crate::integration::{finish, Finished, Recorded, RequestSlot};
use crate::manager::{Attempt, CallError, Manager};
use crate::outcome::{Classify, Outcome};

/// A service whose calls run through a provider's stack and then its fallback chain. Made by
/// [`FallbackLayer`](super::FallbackLayer).
///
/// # Readiness
///
/// As for [`ResilienceService`](super::ResilienceService): `poll_ready` is always ready, a
/// rejection by the breaker or the bulkhead is an error of the returned future, and each attempt
/// waits for its own clone of the inner service to be ready.
///
/// # Retries and alternates
///
/// Each attempt, on the primary or on an alternate provider, calls a clone of the inner service
/// with a copy of the request made by the layer's [`CloneRequest`] and addressed by its
/// [`Route`]. A request that cannot be copied is sent once, to the primary. After its failure the
/// alternates receive nothing, while the cache, stale and degraded strategies still apply.
///
/// # Errors
///
/// A response classified as neutral (the caller's own fault, such as an HTTP 400) is returned as
/// served by the primary, without fallback and without being cached. When every strategy failed,
/// the future returns a [`CallError`]: its kind is the class of the primary's last failure, and
/// its [`source_error`](CallError::source_error) is the inner service's error when that attempt
/// returned one. A response classified as a failure is not cached and is dropped.
pub struct FallbackService<S, T, C, F, K, P, Rt> {
    pub(super) inner: S,
    pub(super) manager: Manager<T, C>,
    pub(super) provider: Arc<str>,
    pub(super) cache_key: Arc<F>,
    pub(super) classifier: Arc<K>,
    pub(super) clone_request: P,
    pub(super) route: Arc<Rt>,
}

impl<S, Req, T, C, F, K, P, Rt> Service<Req> for FallbackService<S, T, C, F, K, P, Rt>
where
    S: Service<Req, Response = T> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    Req: Send + 'static,
    T: Clone + Send + Sync + 'static,
    C: Send + Sync + 'static,
    F: Fn(&Req) -> Option<String>,
    K: Classify<T, S::Error> + Send + Sync + 'static,
    P: CloneRequest<Req> + Clone + Send + Sync + 'static,
    Rt: Route<Req> + Send + Sync + 'static,
{
    type Response = Served<T>;
    type Error = CallError<S::Error>;
    type Future = ResponseFuture<Served<T>, S::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let cache_key = (self.cache_key)(&request);
        let manager = self.manager.clone();
        let provider = self.provider.clone();
        let classifier = self.classifier.clone();
        let clone_request = self.clone_request.clone();
        let route = self.route.clone();
        // NOTE: locked only to clone the service, never across an await; see ResilienceService.
        let template = Mutex::new(self.inner.clone());

        ResponseFuture::new(async move {
            let slot = RequestSlot::new(request);
            let classifier = &*classifier;
            let operation = |attempt: &Attempt<'_>| {
                let next = slot
                    .next(|request| clone_request.clone_request(request))
                    .map(|(mut request, sent_original)| {
                        route.route(&mut request, attempt.provider());
                        (request, sent_original)
                    });
                let service = template
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                send_attempt(service, next, classifier)
            };

            let result = manager
                .execute_with_fallback_classified(
                    &provider,
                    cache_key.as_deref(),
                    &Recorded,
                    operation,
                )
                .await;
            match result {
                Ok(served) => Ok(served),
                Err(error) => match finish(error) {
                    Finished::Response {
                        response,
                        outcome: Outcome::Neutral(_),
                        report,
                    } => Ok(Served {
                        value: response,
                        source: Source::Primary,
                        attempts: u32::try_from(report.attempts.len()).unwrap_or(u32::MAX),
                        provider: report.provider,
                    }),
                    Finished::Response { report, .. } => Err(CallError::new(report, None)),
                    Finished::Failed(error) => Err(error),
                },
            }
        })
    }
}

impl<S: Clone, T, C, F, K, P: Clone, Rt> Clone for FallbackService<S, T, C, F, K, P, Rt> {
    fn clone(&self) -> Self {
        FallbackService {
            inner: self.inner.clone(),
            manager: self.manager.clone(),
            provider: self.provider.clone(),
            cache_key: self.cache_key.clone(),
            classifier: self.classifier.clone(),
            clone_request: self.clone_request.clone(),
            route: self.route.clone(),
        }
    }
}

impl<S: fmt::Debug, T, C, F, K, P, Rt> fmt::Debug for FallbackService<S, T, C, F, K, P, Rt> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackService")
            .field("inner", &self.inner)
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}
