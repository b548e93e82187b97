//! A [`reqwest_middleware::Middleware`] (feature `reqwest-middleware`) that runs every request of
//! a reqwest client through its provider's stack from a [`Manager`]: retry loop, circuit breaker
//! and bulkhead.
//!
//! - The provider is the request's [`Provider`] extension when one is set, else the URL's host,
//!   with the port when the URL names one (`api.openai.com`, `127.0.0.1:8080`).
//! - Responses and errors are classified by an [`HttpClassifier`]: 5xx, 429 and transport errors
//!   are retried, and a `Retry-After` (or `retry-after-ms`) hint sets the minimum wait before the
//!   next attempt. A 4xx other than 408 and 429 is never retried.
//! - A request whose body cannot be cloned (`Request::try_clone` returns `None`, as for a
//!   streaming body) is sent once and never retried; the breaker and bulkhead still apply.
//!
//! # Responses and errors
//!
//! Whatever the server answered comes back as `Ok`: after the last attempt, a failed response
//! (a 503 after every retry, a 400 at once) is returned as the server sent it. An `Err` is a
//! [`reqwest_middleware::Error::Middleware`] wrapping a [`CallError`]: a rejection by the breaker
//! or the bulkhead, or the last attempt's transport error, which is then its
//! [`source_error`](CallError::source_error). [`call_error`] finds it.
//!
//! # Examples
//!
//! ```
//! use reqwest_middleware::ClientBuilder;
//! use resilience::reqwest_middleware::{Provider, ResilienceMiddleware};
//! use resilience::{Config, Manager};
//!
//! let manager: Manager<()> = Manager::new(Config::default()).unwrap();
//! let client = ClientBuilder::new(reqwest::Client::new())
//!     .with(ResilienceMiddleware::new(manager))
//!     .build();
//! // Every request to this host shares the provider "openai" instead of the host name.
//! let request = client
//!     .get("http://127.0.0.1:9/v1/models")
//!     .with_extension(Provider::new("openai"));
//! # let _ = request;
//! ```

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use ::reqwest_middleware::{Error, Middleware, Next};
use http::Extensions;
use reqwest::{Request, Response};

use crate::http::HttpClassifier;
use crate::integration::{classify_attempt, finish, Finished, Recorded, RequestSlot, Unsuccessful};
use crate::manager::{Attempt, CallError, Manager};
use crate::outcome::{Classify, Failure, FailureClass, Outcome};

/// The provider of one request, set with `RequestBuilder::with_extension` in place of the host.
///
/// # Examples
///
/// ```
/// use resilience::reqwest_middleware::Provider;
///
/// let provider = Provider::new("azure-east");
/// assert_eq!(provider.name(), "azure-east");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Provider(Arc<str>);

impl Provider {
    /// Creates the extension for `name`.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Provider(name.into())
    }

    /// Returns the provider's name.
    pub fn name(&self) -> &str {
        &self.0
    }
}

/// Protects each request of a `reqwest_middleware` client with its provider's stack.
///
/// Place it before middleware that should run once per attempt (authentication, tracing of each
/// try), and after middleware that should see the request once.
///
/// The manager's `max_providers` bounds the number of distinct hosts: a request to a new host
/// beyond it fails with [`CallErrorKind::TooManyProviders`](crate::CallErrorKind::TooManyProviders).
/// Set a [`Provider`] on requests to hosts that share one provider's limits.
pub struct ResilienceMiddleware<T = (), C = crate::DefaultClassifier> {
    manager: Manager<T, C>,
    classifier: HttpClassifier,
}

impl<T, C> ResilienceMiddleware<T, C>
where
    T: Clone + Send + Sync + 'static,
    C: Send + Sync + 'static,
{
    /// Creates the middleware with the default [`HttpClassifier`]. The manager's own classifier is
    /// not used.
    pub fn new(manager: Manager<T, C>) -> Self {
        ResilienceMiddleware {
            manager,
            classifier: HttpClassifier::new(),
        }
    }

    /// Sets the classifier of responses and errors.
    ///
    /// # Examples
    ///
    /// ```
    /// use resilience::http::HttpClassifier;
    /// use resilience::reqwest_middleware::ResilienceMiddleware;
    /// use resilience::{Config, Manager};
    ///
    /// let manager: Manager<()> = Manager::new(Config::default()).unwrap();
    /// let middleware = ResilienceMiddleware::new(manager)
    ///     .classifier(HttpClassifier::new().credentials_trip_circuit(true));
    /// # let _ = middleware;
    /// ```
    #[must_use]
    pub fn classifier(mut self, classifier: HttpClassifier) -> Self {
        self.classifier = classifier;
        self
    }
}

impl<T, C> fmt::Debug for ResilienceMiddleware<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResilienceMiddleware")
            .field("manager", &self.manager)
            .field("classifier", &self.classifier)
            .finish()
    }
}

#[async_trait::async_trait]
impl<T, C> Middleware for ResilienceMiddleware<T, C>
where
    T: Clone + Send + Sync + 'static,
    C: Send + Sync + 'static,
{
    async fn handle(
        &self,
        request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> Result<Response, Error> {
        let provider = provider_of(&request, extensions).into_owned();
        let slot = RequestSlot::new(request);
        // Attempts run one after another; the mutex only lends the caller's extensions to each.
        let extensions = tokio::sync::Mutex::new(extensions);
        let classifier = ReqwestClassifier(self.classifier);

        let operation = |_: &Attempt<'_>| {
            let request = slot.next(Request::try_clone);
            let next = next.clone();
            let extensions = &extensions;
            let classifier = &classifier;
            async move {
                let Some((request, sent_original)) = request else {
                    return Err(Unsuccessful::no_request());
                };
                let mut extensions = extensions.lock().await;
                let result = next.run(request, &mut extensions).await;
                classify_attempt(classifier, result, sent_original)
            }
        };

        match self
            .manager
            .execute_classified(&provider, &Recorded, operation)
            .await
        {
            Ok(response) => Ok(response),
            Err(error) => match finish(error) {
                Finished::Response { response, .. } => Ok(response),
                Finished::Failed(error) => Err(Error::middleware(error)),
            },
        }
    }
}

/// Returns the [`CallError`] inside an error from a client with [`ResilienceMiddleware`], or
/// `None` for an error that another middleware or reqwest returned directly.
///
/// # Examples
///
/// ```
/// use reqwest_middleware::ClientBuilder;
/// use resilience::reqwest_middleware::{call_error, ResilienceMiddleware};
/// use resilience::{CallErrorKind, Config, FailureClass, Manager};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let config = Config::from_toml_str("[defaults.retry]\nmax_retries = 0").unwrap();
/// let manager: Manager<()> = Manager::new(config).unwrap();
/// let client = ClientBuilder::new(reqwest::Client::new())
///     .with(ResilienceMiddleware::new(manager))
///     .build();
///
/// // Bind a port, then free it, so that connecting to it is refused.
/// let address = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
/// let error = client.get(format!("http://{address}/")).send().await.unwrap_err();
/// let failure = call_error(&error).unwrap();
/// assert_eq!(failure.kind(), CallErrorKind::Failed(FailureClass::Transport));
/// assert!(failure.source_error().unwrap().is_connect());
/// # }
/// ```
pub fn call_error(error: &Error) -> Option<&CallError<Error>> {
    match error {
        Error::Middleware(error) => error.downcast_ref(),
        Error::Reqwest(_) => None,
    }
}

/// Returns the request's provider: its [`Provider`] extension, else `host` or `host:port`.
fn provider_of<'a>(request: &'a Request, extensions: &'a Extensions) -> Cow<'a, str> {
    if let Some(provider) = extensions.get::<Provider>() {
        return Cow::Borrowed(provider.name());
    }
    let url = request.url();
    // NOTE: reqwest sends only http and https URLs, which always have a host.
    let host = url.host_str().unwrap_or("unknown-host");
    match url.port() {
        Some(port) => Cow::Owned(format!("{host}:{port}")),
        None => Cow::Borrowed(host),
    }
}

/// The [`HttpClassifier`] for the results of the rest of the middleware chain.
#[derive(Debug, Clone, Copy)]
struct ReqwestClassifier(HttpClassifier);

impl Classify<Response, Error> for ReqwestClassifier {
    fn classify(&self, result: &Result<Response, Error>) -> Outcome {
        match result {
            // NOTE: the body is not read, so a 429 that reports an exhausted quota is classified
            // as a rate limit and retried until the retries run out.
            Ok(response) => self
                .0
                .classify_response(response.status(), response.headers(), None),
            Err(Error::Reqwest(error)) => self.0.classify_error(error),
            // Another middleware failed, not the provider, and sending again would most likely
            // fail the same way.
            Err(Error::Middleware(_)) => Outcome::Failure(
                Failure::new(FailureClass::Other)
                    .retryable(false)
                    .trips_circuit(false),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(url: &str) -> Request {
        Request::new(reqwest::Method::GET, url.parse().expect("valid URL"))
    }

    #[test]
    fn provider_is_host_without_default_port() {
        let extensions = Extensions::new();
        let request = request("https://api.openai.com/v1/chat/completions");
        assert_eq!(provider_of(&request, &extensions), "api.openai.com");
        let request = request_with_port();
        assert_eq!(provider_of(&request, &extensions), "127.0.0.1:8080");
    }

    fn request_with_port() -> Request {
        request("http://127.0.0.1:8080/v1/models")
    }

    #[test]
    fn provider_extension_wins() {
        let mut extensions = Extensions::new();
        extensions.insert(Provider::new("openai"));
        assert_eq!(provider_of(&request_with_port(), &extensions), "openai");
    }

    #[test]
    fn other_middleware_error_not_retried() {
        let error = Error::middleware(std::io::Error::other("token refresh failed"));
        let outcome = ReqwestClassifier(HttpClassifier::new()).classify(&Err(error));
        let failure = outcome.as_failure().expect("a failure");
        assert!(!failure.retryable);
        assert!(!failure.trips_circuit);
    }
}
