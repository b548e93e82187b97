//! A fault-injecting, OpenAI-compatible mock provider on 127.0.0.1, shared by the tests and the demo.
//!
//! It serves `POST /v1/chat/completions`, plain and streamed, and injects the faults a real
//! provider shows: 503s, 429s with `Retry-After`, quota-exhausted 429s, connection resets, slow
//! responses, outage windows, any 4xx, HTML error pages, and streams that break, stall, carry an in-band error or end
//! without a `finish_reason`. Faults come from a script first ([`MockProvider::push_faults`]),
//! then from seeded random draws ([`MockConfig`]), so a seed gives the same fault to the same
//! request number on every run.
//!
//! # Examples
//!
//! ```
//! use resilience_gateway::mock::{Fault, MockConfig, MockProvider};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let provider = MockProvider::start(MockConfig::named("primary")).await.unwrap();
//! provider.push_faults([Fault::Status(503)]);
//!
//! let client = reqwest::Client::new();
//! let url = format!("{}/chat/completions", provider.base_url());
//! let body = r#"{"model":"gpt-test","messages":[]}"#;
//! let first = client.post(&url).body(body).send().await.unwrap();
//! assert_eq!(first.status(), 503);
//! let second = client.post(&url).body(body).send().await.unwrap();
//! assert_eq!(second.status(), 200);
//! assert_eq!(provider.requests(), 2);
//! # }
//! ```

mod config;
mod responses;
mod server;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use self::config::{Fault, MockConfig, StreamConfig};

use self::server::{lock, Shared};

/// A running mock provider. Dropping it stops the server and closes its connections.
#[derive(Debug)]
pub struct MockProvider {
    address: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

/// The last request a mock provider received, for tests that check what the gateway sent.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// The request's path.
    pub path: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The request body.
    pub body: Bytes,
}

impl MockProvider {
    /// Starts a mock provider on an ephemeral port of 127.0.0.1.
    ///
    /// # Errors
    ///
    /// Returns the error of binding the listening socket.
    pub async fn start(config: MockConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let address = listener.local_addr()?;
        let shared = Arc::new(Shared {
            config: Mutex::new(config),
            script: Mutex::new(VecDeque::new()),
            requests: AtomicU64::new(0),
            open_streams: Arc::new(AtomicU64::new(0)),
            last_request: Mutex::new(None),
            started: Instant::now(),
        });
        let task = tokio::spawn(server::accept_loop(listener, shared.clone()));
        Ok(MockProvider {
            address,
            shared,
            task,
        })
    }

    /// Returns the address the provider listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Returns the base URL to configure as an upstream, such as `http://127.0.0.1:4000/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.address)
    }

    /// Returns the number of requests received, whatever was done with them.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Returns the number of streamed responses whose body is still open.
    pub fn open_streams(&self) -> u64 {
        self.shared.open_streams.load(Ordering::SeqCst)
    }

    /// Returns the last request received.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        lock(&self.shared.last_request).clone()
    }

    /// Queues faults for the next requests, in order, ahead of the random draws.
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        lock(&self.shared.script).extend(faults);
    }

    /// Changes the configuration for the requests that arrive from now on.
    pub fn update_config(&self, update: impl FnOnce(&mut MockConfig)) {
        update(&mut lock(&self.shared.config));
    }
}

impl Drop for MockProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}
