//! Drives a bounded load at a fixed concurrency and records every request's result.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{stream, StreamExt};
use indicatif::ProgressBar;
use tokio::time::Instant;

/// The distinct prompts of the load, so that some requests repeat and the cache can serve them.
const PROMPTS: usize = 150;
/// The distinct tenants of the load; each has its own cached responses.
const TENANTS: usize = 4;
/// The maximum time the demo's client waits for one response.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// The result of one request.
#[derive(Debug, Clone)]
pub(super) struct Sample {
    pub(super) latency: Duration,
    /// The status, or `None` when no response arrived (a reset or a timeout).
    pub(super) status: Option<u16>,
    /// The gateway's `x-gateway-source` header, if any.
    pub(super) source: Option<String>,
}

/// Sends `requests` requests to `url` with at most `concurrency` in flight, and returns their
/// results in the order they finished.
pub(super) async fn drive(
    url: &str,
    model: &str,
    requests: usize,
    concurrency: usize,
    progress: &ProgressBar,
) -> Vec<Sample> {
    let client = match reqwest::Client::builder().timeout(CLIENT_TIMEOUT).build() {
        Ok(client) => client,
        Err(_) => reqwest::Client::new(),
    };
    let url: Arc<str> = Arc::from(url);
    let model: Arc<str> = Arc::from(model);

    stream::iter(0..requests)
        .map(|index| {
            let client = client.clone();
            let url = url.clone();
            let model = model.clone();
            async move {
                let sample = send(&client, &url, &model, index).await;
                progress.inc(1);
                sample
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

async fn send(client: &reqwest::Client, url: &str, model: &str, index: usize) -> Sample {
    let prompt = index % PROMPTS;
    let tenant = index % TENANTS;
    let body = serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": format!("Question number {prompt}")}]
    });
    let started = Instant::now();
    let response = client
        .post(url)
        .bearer_auth(format!("demo-tenant-{tenant}"))
        .json(&body)
        .send()
        .await;
    let (status, source) = match response {
        Ok(response) => {
            let status = response.status().as_u16();
            let source = response
                .headers()
                .get("x-gateway-source")
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned);
            // Reads the body so the latency covers the whole response; a broken body is a failure.
            match response.bytes().await {
                Ok(_) => (Some(status), source),
                Err(_) => (None, None),
            }
        }
        Err(_) => (None, None),
    };
    Sample {
        latency: started.elapsed(),
        status,
        source,
    }
}
