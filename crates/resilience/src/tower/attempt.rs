use std::future::poll_fn;

use tower::Service;

use crate::integration::{classify_attempt, Unsuccessful};
use crate::outcome::Classify;

/// Sends one attempt's request through a clone of the inner service once it is ready, and
/// classifies the result. `next` is `None` when no copy of the request was left to send.
pub(super) async fn send_attempt<S, Req, K>(
    mut service: S,
    next: Option<(Req, bool)>,
    classifier: &K,
) -> Result<S::Response, Unsuccessful<S::Response, S::Error>>
where
    S: Service<Req>,
    K: Classify<S::Response, S::Error> + ?Sized,
{
    let Some((request, sent_original)) = next else {
        return Err(Unsuccessful::no_request());
    };
    let result = match poll_fn(|cx| service.poll_ready(cx)).await {
        Ok(()) => service.call(request).await,
        Err(error) => Err(error),
    };
    classify_attempt(classifier, result, sent_original)
}
