//! An OpenAI-compatible gateway that protects its upstream providers with the `resilience` library,
//! and the fault-injecting mock provider that its tests and demo run against.
//!
//! A request flows one way: [`routes`] → the library's `Manager` → [`upstream`] → the provider,
//! and back through [`streaming`] for a streamed response.
//!
//! - [`config`]: the TOML configuration, validated at start.
//! - [`gateway`]: the shared state and the HTTP server.
//! - [`routes`]: chat completions, models, health, statistics, metrics, admin.
//! - [`upstream`]: calls to providers, their timeouts and the classification of their errors.
//! - [`streaming`] and [`sse`]: forwarding server-sent events.
//! - [`errors`]: errors in the OpenAI shape.
//! - [`metrics`]: Prometheus metrics.
//! - [`mock`]: the fault-injecting mock provider.
//! - [`demo`]: the `demo` command.

#![forbid(unsafe_code)]
#![deny(unused_must_use)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    clippy::all
)]

pub mod config;
mod deadline;
pub mod demo;
pub mod errors;
pub mod gateway;
pub mod metrics;
pub mod mock;
pub mod routes;
pub mod sse;
pub mod streaming;
pub mod upstream;

pub use gateway::Gateway;
