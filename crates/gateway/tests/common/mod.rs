//! Helpers shared by the integration tests: a gateway on 127.0.0.1 in front of mock providers.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use prometheus_client::registry::Registry;
use resilience_gateway::config::GatewayConfig;
use resilience_gateway::mock::{MockConfig, MockProvider};
use resilience_gateway::Gateway;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const MODEL: &str = "gpt-test";
pub const BACKUP_MODEL: &str = "gpt-backup";
pub const ADMIN_TOKEN: &str = "admin-secret";
pub const PRIMARY_KEY: &str = "sk-primary-key";

/// A gateway serving on 127.0.0.1 in front of a primary and a backup mock provider.
pub struct TestGateway {
    pub address: SocketAddr,
    pub gateway: Gateway,
    pub primary: MockProvider,
    pub backup: MockProvider,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

/// Settings short enough to keep the tests fast: retries after a few milliseconds, circuits that
/// open after three failures and probe again after 200 ms.
pub fn base_toml(primary: &MockProvider, backup: &MockProvider, extra: &str) -> String {
    format!(
        r#"
[server]
max_body_bytes = 4096
request_timeout = "5s"
admin_token_env = "ADMIN_TOKEN"

[timeouts]
connect = "500ms"
status = "500ms"
first_event = "500ms"
idle = "300ms"
attempt = "3s"

[degraded]
message = "degraded answer"

[[upstreams]]
name = "primary"
base_url = "{primary}"
api_key_env = "PRIMARY_KEY"
models = ["{MODEL}"]

[[upstreams]]
name = "backup"
base_url = "{backup}"
models = ["{BACKUP_MODEL}"]

[resilience.defaults.circuit_breaker]
failure_threshold = 3
success_threshold = 1
timeout = "200ms"
half_open_max_requests = 1

[resilience.defaults.bulkhead]
max_concurrent = 4
max_queue = 0

[resilience.defaults.retry]
max_retries = 2
initial_backoff = "5ms"
max_backoff = "300ms"
jitter = false

[resilience.defaults.fallback]
strategies = ["error"]

{extra}
"#,
        primary = primary.base_url(),
        backup = backup.base_url(),
    )
}

impl TestGateway {
    /// Starts healthy mocks and a gateway configured by `base_toml` plus `extra`.
    pub async fn start(extra: &str) -> Self {
        Self::start_with(
            MockConfig::named("primary"),
            MockConfig::named("backup"),
            extra,
        )
        .await
    }

    /// Starts mocks with these settings and a gateway configured by `base_toml` plus `extra`.
    pub async fn start_with(primary: MockConfig, backup: MockConfig, extra: &str) -> Self {
        Self::start_toml(primary, backup, |primary, backup| {
            base_toml(primary, backup, extra)
        })
        .await
    }

    /// Starts mocks with these settings and a gateway configured by the text `toml` returns for
    /// the two mocks.
    pub async fn start_toml(
        primary: MockConfig,
        backup: MockConfig,
        toml: impl FnOnce(&MockProvider, &MockProvider) -> String,
    ) -> Self {
        let primary = MockProvider::start(primary)
            .await
            .expect("start primary mock");
        let backup = MockProvider::start(backup)
            .await
            .expect("start backup mock");
        let toml = toml(&primary, &backup);
        let config = GatewayConfig::from_toml_str(&toml).expect("valid test configuration");
        Self::start_config(primary, backup, config).await
    }

    /// Starts a gateway with `base_toml` changed by `edit` after validation, which lets a test
    /// set values that the file would reject.
    pub async fn start_edited(edit: impl FnOnce(&mut GatewayConfig)) -> Self {
        let primary = MockProvider::start(MockConfig::named("primary"))
            .await
            .expect("start primary mock");
        let backup = MockProvider::start(MockConfig::named("backup"))
            .await
            .expect("start backup mock");
        let toml = base_toml(&primary, &backup, "");
        let mut config = GatewayConfig::from_toml_str(&toml).expect("valid test configuration");
        edit(&mut config);
        Self::start_config(primary, backup, config).await
    }

    async fn start_config(
        primary: MockProvider,
        backup: MockProvider,
        config: GatewayConfig,
    ) -> Self {
        let env: HashMap<&str, &str> =
            HashMap::from([("ADMIN_TOKEN", ADMIN_TOKEN), ("PRIMARY_KEY", PRIMARY_KEY)]);
        let gateway = Gateway::new(
            config,
            |name| env.get(name).map(|value| value.to_string()),
            Registry::default(),
        )
        .expect("gateway builds");

        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(gateway.clone().serve(listener, async {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        TestGateway {
            address,
            gateway,
            primary,
            backup,
            client,
            stop: Some(stop),
            server: Some(server),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Sends a chat request for `model` with a fixed prompt, as tenant `tenant`.
    pub async fn chat(&self, model: &str, tenant: &str) -> reqwest::Response {
        self.chat_body(tenant, chat_body(model, false)).await
    }

    pub async fn chat_body(&self, tenant: &str, body: Value) -> reqwest::Response {
        self.client
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(tenant)
            .json(&body)
            .send()
            .await
            .expect("the gateway responds")
    }

    pub async fn stats(&self) -> Value {
        self.client
            .get(self.url("/stats"))
            .send()
            .await
            .expect("stats respond")
            .json()
            .await
            .expect("stats are JSON")
    }

    /// Returns the OpenMetrics text of `/metrics`.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics respond")
            .text()
            .await
            .expect("metrics are text")
    }

    /// Waits, up to two seconds, until `check` holds for the statistics; returns the last ones.
    pub async fn wait_for_stats(&self, check: impl Fn(&Value) -> bool) -> Value {
        self.wait_for_stats_within(Duration::from_secs(2), check)
            .await
    }

    /// Waits, up to `limit`, until `check` holds for the statistics; returns the last ones.
    pub async fn wait_for_stats_within(
        &self,
        limit: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            let stats = self.stats().await;
            if check(&stats) {
                return stats;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.stats().await
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

pub fn chat_body(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "stream": stream,
        "messages": [{"role": "user", "content": "Say hello."}]
    })
}

pub fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
}

/// Returns the OpenAI error code of an error body.
pub fn error_code(body: &Value) -> Option<&str> {
    body["error"]["code"].as_str()
}
