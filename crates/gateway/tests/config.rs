//! Loading and validating the gateway's configuration.

use prometheus_client::registry::Registry;
use resilience_gateway::config::{ConfigError, GatewayConfig};
use resilience_gateway::Gateway;

const UPSTREAM: &str = r#"
[[upstreams]]
name = "primary"
base_url = "http://127.0.0.1:9/v1"
models = ["gpt-test"]
"#;

fn error_of(text: &str) -> String {
    GatewayConfig::from_toml_str(text)
        .expect_err("the configuration is invalid")
        .to_string()
}

#[test]
fn minimal_config_valid() {
    let config = GatewayConfig::from_toml_str(UPSTREAM).expect("valid");
    assert_eq!(config.upstreams.len(), 1);
    assert_eq!(
        config
            .upstream_for_model("gpt-test")
            .map(|u| u.name.as_str()),
        Some("primary")
    );
    assert!(config.resilience.providers.contains_key("primary"));
}

#[test]
fn unknown_keys_rejected() {
    let cases = [
        ("[server]\nlisten_on = \"127.0.0.1:1\"\n", "listen_on"),
        ("[timeouts]\nfirst_byte = \"1s\"\n", "first_byte"),
        ("[[upstreams]]\nname = \"a\"\nbase_url = \"http://h/v1\"\nmodels = [\"m\"]\nkey = \"x\"\n", "key"),
        ("[resilience.defaults.retry]\nretries = 2\n", "retries"),
        ("colour = 1\n", "colour"),
    ];
    for (text, key) in cases {
        let text = if text.contains("[[upstreams]]") {
            text.to_owned()
        } else {
            format!("{text}{UPSTREAM}")
        };
        let message = error_of(&text);
        assert!(message.contains(key), "key {key}: {message}");
    }
}

#[test]
fn invalid_values_name_key() {
    let cases = [
        ("[server]\nmax_body_bytes = 0\n", "server.max_body_bytes"),
        ("[timeouts]\nidle = \"0s\"\n", "timeouts.idle"),
        (
            "[resilience.defaults.circuit_breaker]\nfailure_threshold = 0\n",
            "failure_threshold",
        ),
        (
            "[resilience.providers.primry.retry]\nmax_retries = 1\n",
            "resilience.providers.primry",
        ),
    ];
    for (text, key) in cases {
        let message = error_of(&format!("{text}{UPSTREAM}"));
        assert!(message.contains(key), "key {key}: {message}");
    }
}

#[test]
fn upstream_checks() {
    let upstream = |name: &str, url: &str, models: &str| {
        format!("[[upstreams]]\nname = \"{name}\"\nbase_url = \"{url}\"\nmodels = {models}\n")
    };
    let cases = [
        (String::new(), "upstreams"),
        (
            upstream("a b", "http://h/v1", "[\"m\"]"),
            "upstreams[0].name",
        ),
        (
            upstream("a", "ftp://h/v1", "[\"m\"]"),
            "upstreams[0].base_url",
        ),
        (
            upstream("a", "not a url", "[\"m\"]"),
            "upstreams[0].base_url",
        ),
        (upstream("a", "http://h/v1", "[]"), "upstreams[0].models"),
        (
            upstream("a", "http://h/v1", "[\"m\"]") + &upstream("a", "http://h/v1", "[\"n\"]"),
            "upstreams[1].name",
        ),
        (
            upstream("a", "http://h/v1", "[\"m\"]") + &upstream("b", "http://h/v1", "[\"m\"]"),
            "upstreams[1].models",
        ),
    ];
    for (text, key) in cases {
        let message = error_of(&text);
        assert!(message.contains(key), "key {key}: {message}");
    }
}

#[test]
fn upstream_overrides_merge() {
    let text = r#"
[[upstreams]]
name = "primary"
base_url = "http://127.0.0.1:9/v1"
models = ["gpt-test"]
resilience = { circuit_breaker = { failure_threshold = 2 } }

[resilience.defaults.circuit_breaker]
failure_threshold = 7
success_threshold = 3

[resilience.providers.primary.retry]
max_retries = 1
"#;
    let config = GatewayConfig::from_toml_str(text).expect("valid");
    let primary = config.resilience.provider("primary");
    assert_eq!(
        primary.circuit_breaker.failure_threshold, 2,
        "the upstream's override"
    );
    assert_eq!(
        primary.circuit_breaker.success_threshold, 3,
        "from the defaults"
    );
    assert_eq!(
        primary.retry.max_retries, 1,
        "from [resilience.providers.primary]"
    );
}

#[test]
fn alternate_must_be_upstream() {
    let text = format!(
        "{UPSTREAM}\n[resilience.providers.primary.fallback]\nalternate_providers = [\"ghost\"]\n"
    );
    let message = error_of(&text);
    assert!(message.contains("alternate_providers"), "{message}");
}

#[test]
fn missing_env_names_variable() {
    let text = UPSTREAM.replace(
        "models",
        "api_key_env = \"TEST_KEY_THAT_IS_NOT_SET\"\nmodels",
    );
    let config = GatewayConfig::from_toml_str(&text).expect("valid");
    let error =
        Gateway::new(config, |_| None, Registry::default()).expect_err("the key is missing");
    assert!(matches!(error, ConfigError::MissingEnv { .. }));
    let message = error.to_string();
    assert!(message.contains("TEST_KEY_THAT_IS_NOT_SET"), "{message}");
    assert!(message.contains("upstreams[0].api_key_env"), "{message}");
}

#[test]
fn example_config_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.example.toml");
    let config = GatewayConfig::from_file(path).expect("the example configuration is valid");
    assert!(!config.upstreams.is_empty());
}

#[test]
fn absurd_timeouts_rejected() {
    let keys = [
        ("server", "request_timeout"),
        ("timeouts", "connect"),
        ("timeouts", "status"),
        ("timeouts", "first_event"),
        ("timeouts", "idle"),
        ("timeouts", "attempt"),
    ];
    for (table, key) in keys {
        for value in ["18446744073709551615s", "500000000years", "25h"] {
            let message = error_of(&format!("[{table}]\n{key} = \"{value}\"\n{UPSTREAM}"));
            assert!(
                message.contains(&format!("{table}.{key}")),
                "{key} = {value}: {message}"
            );
            assert!(
                message.contains("at most 24h"),
                "{key} = {value}: {message}"
            );
        }
        let text = format!("[{table}]\n{key} = \"24h\"\n{UPSTREAM}");
        assert!(
            GatewayConfig::from_toml_str(&text).is_ok(),
            "{key} = 24h is accepted"
        );
    }
}
