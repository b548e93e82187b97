//! HTTP outcome classification and Retry-After parsing, for reqwest users (feature `http`).
//!
//! - [`HttpClassifier`] turns a status, headers and the start of an error body, or a reqwest
//!   error, into an [`Outcome`](crate::Outcome): which failures are retried, which trip the circuit
//!   and which are the caller's own fault.
//! - [`retry_after`] reads the server's minimum wait from `retry-after-ms`, `x-ms-retry-after-ms`
//!   or `Retry-After`, and [`rate_limit_reset`] from OpenAI's rate-limit headers.
//!
//! # Examples
//!
//! ```
//! use http::{HeaderMap, StatusCode};
//! use resilience::http::HttpClassifier;
//! use resilience::{Classify, FailureClass};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! # let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
//! # let address = listener.local_addr().unwrap();
//! # drop(listener);
//! let result = reqwest::get(format!("http://{address}/v1/models")).await;
//! let outcome = HttpClassifier::new().classify(&result);
//! assert_eq!(outcome.as_failure().unwrap().class, FailureClass::Transport);
//! # }
//! ```

mod classify;
mod retry_after;

pub use self::classify::{classify_response, HttpClassifier, BODY_SNIPPET_LIMIT};
pub use self::retry_after::{rate_limit_reset, retry_after, retry_after_at, MAX_RETRY_AFTER};

#[cfg(test)]
mod tests;
