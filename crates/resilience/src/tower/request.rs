//! The copy of a request for each attempt, and its addressing to the attempt's provider.

/// Makes a copy of a request for one attempt.
///
/// A layer sends a copy on every attempt and keeps the original until a copy cannot be made. When
/// [`clone_request`](Self::clone_request) returns `None`, the layer sends the original itself and
/// makes no further attempt: a failure of that attempt is not retried and does not fall back to an
/// alternate provider. The breaker and the bulkhead still protect that single attempt.
///
/// The default, [`DefaultClone`], uses the request's `Clone` implementation. A closure
/// `Fn(&Req) -> Option<Req>` implements this trait, so a request type that is not `Clone`, such as
/// an `http::Request` with a streaming body, can still be retried when the closure can copy
/// some of them, for example those without a body. [`NoClone`] sends every request once.
///
/// # Examples
///
/// ```
/// use resilience::tower::CloneRequest;
///
/// // Copies requests that carry no body; a request with a body is sent once.
/// let copy_bodiless = |request: &(String, Option<Vec<u8>>)| match request {
///     (path, None) => Some((path.clone(), None)),
///     (_, Some(_)) => None,
/// };
/// assert!(copy_bodiless.clone_request(&("/models".to_string(), None)).is_some());
/// assert!(copy_bodiless.clone_request(&("/upload".to_string(), Some(vec![1]))).is_none());
/// ```
pub trait CloneRequest<Req> {
    /// Returns a copy of `request`, or `None` when it cannot be copied.
    fn clone_request(&self, request: &Req) -> Option<Req>;
}

/// Copies every request with its `Clone` implementation. The default of both layers.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultClone;

impl<Req: Clone> CloneRequest<Req> for DefaultClone {
    fn clone_request(&self, request: &Req) -> Option<Req> {
        Some(request.clone())
    }
}

/// Copies no request: every request is sent once, and no failure is retried or sent to an
/// alternate provider.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoClone;

impl<Req> CloneRequest<Req> for NoClone {
    fn clone_request(&self, _request: &Req) -> Option<Req> {
        None
    }
}

impl<Req, F> CloneRequest<Req> for F
where
    F: Fn(&Req) -> Option<Req>,
{
    fn clone_request(&self, request: &Req) -> Option<Req> {
        self(request)
    }
}

/// Addresses the request of one attempt to the provider it is for.
///
/// The [`FallbackLayer`](super::FallbackLayer) sends the same request through the same inner
/// service to every alternate provider, so the inner service can tell the providers apart only if
/// the request names the one it is for. A closure `Fn(&mut Req, &str)` implements this trait and
/// receives each attempt's request with the name of its provider, the primary's included.
///
/// # Examples
///
/// ```
/// use resilience::tower::Route;
///
/// struct Completion { provider: String, prompt: String }
///
/// let route = |request: &mut Completion, provider: &str| request.provider = provider.to_owned();
/// let mut request = Completion { provider: String::new(), prompt: "hi".into() };
/// route.route(&mut request, "anthropic");
/// assert_eq!(request.provider, "anthropic");
/// ```
pub trait Route<Req> {
    /// Addresses `request` to `provider`.
    fn route(&self, request: &mut Req, provider: &str);
}

/// Leaves every request as it is. The default of the [`FallbackLayer`](super::FallbackLayer).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRoute;

impl<Req> Route<Req> for NoRoute {
    fn route(&self, _request: &mut Req, _provider: &str) {}
}

impl<Req, F> Route<Req> for F
where
    F: Fn(&mut Req, &str),
{
    fn route(&self, request: &mut Req, provider: &str) {
        self(request, provider)
    }
}
