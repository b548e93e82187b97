use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::manager::CallError;

/// The future of a call through [`ResilienceService`](super::ResilienceService) or
/// [`FallbackService`](super::FallbackService).
///
/// It owns everything the call needs, so it is `Send + 'static` and borrows nothing from the
/// service. The call's attempts run inside it: one allocation per call boxes them.
///
/// # Cancel safety
///
/// Dropping the future stops the call: the running attempt's breaker admission counts as neutral,
/// its bulkhead slot or queue place is freed, and no further attempt starts.
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture<R, E> {
    inner: Pin<Box<dyn Future<Output = Result<R, CallError<E>>> + Send>>,
}

impl<R, E> ResponseFuture<R, E> {
    pub(crate) fn new(
        future: impl Future<Output = Result<R, CallError<E>>> + Send + 'static,
    ) -> Self {
        ResponseFuture {
            inner: Box::pin(future),
        }
    }
}

impl<R, E> Future for ResponseFuture<R, E> {
    type Output = Result<R, CallError<E>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<R, E> fmt::Debug for ResponseFuture<R, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
