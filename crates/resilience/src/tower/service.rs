use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use tower::Service;

use super::attempt::send_attempt;
use super::future::ResponseFuture;
use super::request::CloneRequest;
use crate::integration::{finish, Finished, Recorded, RequestSlot};
use crate::manager::{CallError, Manager};
use crate::outcome::Classify;

/// A service whose calls run through one provider's retry loop, circuit breaker and bulkhead.
/// Made by [`ResilienceLayer`](super::ResilienceLayer).
///
/// # Readiness
///
/// `poll_ready` is always ready. The breaker and the bulkhead decide in `call`: an open circuit, a
/// full bulkhead or a queue timeout is an error of the returned future, never a `poll_ready` that
/// waits. Each attempt waits for its own clone of the inner service to be ready, inside its
/// bulkhead slot, so an error from the inner `poll_ready` is that attempt's error: it is
/// classified, retried and counted like an error from `call`.
///
/// # Retries
///
/// Each attempt calls a clone of the inner service with a copy of the request made by the
/// layer's [`CloneRequest`]. A request that cannot be copied is sent once: its failure is not
/// retried.
///
/// # Errors
///
/// The future returns a [`CallError`] when the breaker or the bulkhead rejected the call, or when
/// the last attempt returned an error. In the second case the inner service's error is its
/// [`source_error`](CallError::source_error). A response classified as a failure or as neutral is
/// not an error: after the last attempt it is returned as `Ok`, as the inner service returned it.
pub struct ResilienceService<S, T, C, K, P> {
    pub(super) inner: S,
    pub(super) manager: Manager<T, C>,
    pub(super) provider: Arc<str>,
    pub(super) classifier: Arc<K>,
    pub(super) clone_request: P,
}

impl<S, Req, T, C, K, P> Service<Req> for ResilienceService<S, T, C, K, P>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
    Req: Send + 'static,
    T: Clone + Send + Sync + 'static,
    C: Send + Sync + 'static,
    K: Classify<S::Response, S::Error> + Send + Sync + 'static,
    P: CloneRequest<Req> + Clone + Send + Sync + 'static,
{
    type Response = S::Response;
    type Error = CallError<S::Error>;
    type Future = ResponseFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let manager = self.manager.clone();
        let provider = self.provider.clone();
        let classifier = self.classifier.clone();
        let clone_request = self.clone_request.clone();
        // NOTE: the mutex makes the shared template `Sync` without asking `S: Sync`; it is locked
        // only to clone the service, never across an await.
        let template = Mutex::new(self.inner.clone());

        ResponseFuture::new(async move {
            let slot = RequestSlot::new(request);
            let classifier = &*classifier;
            let operation = |_: &crate::manager::Attempt<'_>| {
                let next = slot.next(|request| clone_request.clone_request(request));
                let service = template
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                send_attempt(service, next, classifier)
            };

            match manager
                .execute_classified(&provider, &Recorded, operation)
                .await
            {
                Ok(response) => Ok(response),
                Err(error) => match finish(error) {
                    Finished::Response { response, .. } => Ok(response),
                    Finished::Failed(error) => Err(error),
                },
            }
        })
    }
}

impl<S: Clone, T, C, K, P: Clone> Clone for ResilienceService<S, T, C, K, P> {
    fn clone(&self) -> Self {
        ResilienceService {
            inner: self.inner.clone(),
            manager: self.manager.clone(),
            provider: self.provider.clone(),
            classifier: self.classifier.clone(),
            clone_request: self.clone_request.clone(),
        }
    }
}

impl<S: fmt::Debug, T, C, K, P> fmt::Debug for ResilienceService<S, T, C, K, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResilienceService")
            .field("inner", &self.inner)
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}
