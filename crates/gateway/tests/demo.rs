//! The `demo` command, run as the binary: its options, its header and its report.

use std::path::PathBuf;
use std::process::{Command, Output};

use resilience_gateway::demo::{MAX_CONCURRENCY, MAX_REQUESTS};
use serde_json::Value;

fn demo(arguments: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_resilience-gateway"))
        .arg("demo")
        .args(arguments)
        .env("RUST_LOG", "error")
        .output()
        .expect("the binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Returns a path under the target directory that no other test uses.
fn scratch_path(name: &str) -> PathBuf {
    let directory = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&directory).expect("scratch directory");
    directory.join(name)
}

#[test]
fn help_states_ranges() {
    let output = demo(&["--help"]);
    assert!(output.status.success());
    let help = stdout(&output);
    assert!(
        help.contains(&format!("from 1 to {MAX_REQUESTS}")),
        "{help}"
    );
    assert!(
        help.contains(&format!("from 1 to {MAX_CONCURRENCY}")),
        "{help}"
    );
}

#[test]
fn unwritable_json_fails_first() {
    let path = scratch_path("no-such-directory/report.json");
    let output = demo(&["--json", path.to_str().expect("UTF-8 path")]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("report.json"), "{stderr}");
    assert_eq!(stdout(&output), "", "no run before the failure");
}

#[test]
fn header_counts_what_runs() {
    let output = demo(&["--requests", "1", "--concurrency", "50"]);
    assert!(output.status.success());
    let text = stdout(&output);
    let header = text.lines().next().unwrap_or_default();
    assert_eq!(
        header,
        "resilience-gateway demo: 1 request, 1 in flight, seed 7"
    );
}

#[test]
fn high_concurrency_not_throttled() {
    // The provider faults are the demo's. A bulkhead smaller than the load would add degraded
    // responses of the gateway's own making.
    let path = scratch_path("demo-high-concurrency.json");
    let concurrency = MAX_CONCURRENCY.to_string();
    let output = demo(&[
        "--requests",
        "1024",
        "--concurrency",
        &concurrency,
        "--json",
        path.to_str().expect("UTF-8 path"),
    ]);
    assert!(output.status.success(), "{}", stdout(&output));
    let report: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("report written")).expect("JSON");
    assert_eq!(report["concurrency"], MAX_CONCURRENCY);
    let gateway = &report["gateway"];
    assert_eq!(gateway["degraded"], 0, "{gateway}");
    assert_eq!(gateway["failed"], 0, "{gateway}");
    assert_eq!(gateway["succeeded"], 1024, "{gateway}");
}
