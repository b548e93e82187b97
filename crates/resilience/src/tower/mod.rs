//! Tower layers (feature `tower`): any tower `Service`, such as an axum handler, a hyper or
//! tonic client, or `reqwest::Client`, behind one provider's stack from a [`Manager`](crate::Manager).
//!
//! - [`ResilienceLayer`] runs each call through the provider's retry loop, circuit breaker and
//!   bulkhead, as [`Manager::execute`](crate::Manager::execute) does.
//! - [`FallbackLayer`] adds the provider's fallback chain and returns
//!   [`Served`](crate::Served), as [`Manager::execute_with_fallback`](crate::Manager::execute_with_fallback)
//!   does.
//!
//! Both keep their state in the manager: every service and clone for a provider shares that
//! provider's breaker, bulkhead and statistics with the manager's other callers. Both are always
//! ready, and report an open circuit or a full bulkhead as a [`CallError`](crate::CallError) from
//! the call's future. Retries and alternates need a copy of the request for each attempt, made
//! by a [`CloneRequest`]: `Clone` by default, a closure for a request type that is not `Clone`, or
//! [`NoClone`] to send every request once.
//!
//! # Examples
//!
//! An axum route behind the layer, with rejections turned into `503 Service Unavailable`:
//!
//! ```
//! use axum::error_handling::HandleErrorLayer;
//! use axum::http::StatusCode;
//! use axum::routing::get;
//! use axum::Router;
//! use resilience::tower::{NoClone, ResilienceLayer};
//! use resilience::{CallError, Config, Manager};
//! use tower::ServiceBuilder;
//!
//! let manager: Manager<()> = Manager::new(Config::default()).unwrap();
//! let protection = ServiceBuilder::new()
//!     .layer(HandleErrorLayer::new(|error: CallError<std::convert::Infallible>| async move {
//!         (StatusCode::SERVICE_UNAVAILABLE, error.to_string())
//!     }))
//!     // axum's request body cannot be copied: each request is sent once.
//!     .layer(ResilienceLayer::new(manager, "search").clone_request(NoClone));
//! let app: Router = Router::new().route("/search", get(|| async { "results" }).layer(protection));
//! # let _ = app;
//! ```

mod attempt;
mod fallback_layer;
mod fallback_service;
mod future;
mod layer;
mod request;
mod service;

pub use self::fallback_layer::FallbackLayer;
pub use self::fallback_service::FallbackService;
pub use self::future::ResponseFuture;
pub use self::layer::ResilienceLayer;
pub use self::request::{CloneRequest, DefaultClone, NoClone, NoRoute, Route};
pub use self::service::ResilienceService;
