//! The `demo` command: mock providers with injected faults, the gateway in front of them, a bounded
//! load sent both through the gateway and straight to the primary provider, and a report that
//! compares the two.
//!
//! Everything listens on 127.0.0.1 and stops when the command ends.

mod load;
mod report;
mod scenario;

use std::io::Write as _;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

pub use self::report::{DemoReport, Percentiles, RunReport};

use crate::config::GatewayConfig;
use crate::mock::MockProvider;
use crate::Gateway;

/// The maximum number of requests a demo run accepts, to keep it bounded.
pub const MAX_REQUESTS: usize = 100_000;
/// The maximum number of requests in flight a demo run accepts.
pub const MAX_CONCURRENCY: usize = 256;

/// Options of the `demo` command.
// The ranges in the help text repeat MAX_REQUESTS and MAX_CONCURRENCY; a test keeps them equal.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoOptions {
    /// Requests to send in each of the two runs, from 1 to 100000.
    #[arg(long, default_value_t = 800)]
    pub requests: usize,
    /// Requests in flight at once, from 1 to 256. The demo's gateway admits at least as many
    /// at once on each provider.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// The seed of the injected faults; the same seed gives the same faults.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Also write the report as JSON to this file. It is opened before the runs start, so a path
    /// that cannot be written fails at once.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
}

/// An error that stops the demo.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// An option is out of range.
    #[error("invalid --{option} {value}: {reason}")]
    InvalidOption {
        /// The option's name.
        option: &'static str,
        /// The rejected value.
        value: usize,
        /// The accepted range.
        reason: String,
    },
    /// A server could not start.
    #[error("failed to start the {what} on 127.0.0.1: {source}")]
    Start {
        /// The mock provider or the gateway.
        what: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The gateway's configuration was rejected.
    #[error("the demo's gateway configuration is invalid: {0}")]
    Config(#[from] crate::config::ConfigError),
    /// The JSON report could not be written.
    #[error("failed to write the JSON report to {path}: {source}")]
    WriteJson {
        /// The file's path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Runs the demo and prints the report.
///
/// # Errors
///
/// Returns an error for an option out of range, a server that cannot start, or a JSON report that
/// cannot be written.
pub async fn run(options: DemoOptions) -> Result<(), DemoError> {
    validate(&options)?;
    let report_file = options.json.as_deref().map(ReportFile::open).transpose()?;
    let report = match run_both(&options).await {
        Ok(report) => report,
        Err(error) => {
            if let Some(file) = report_file {
                file.discard();
            }
            return Err(error);
        }
    };
    write_stdout(format_args!("{}", report.to_table()));
    if let Some(file) = report_file {
        file.write(&report)?;
    }
    Ok(())
}

/// Prints the header, runs the load directly and through the gateway, and returns the report.
async fn run_both(options: &DemoOptions) -> Result<DemoReport, DemoError> {
    // More workers than requests would stay idle, so the header shows how many requests run at once.
    let concurrency = options.concurrency.min(options.requests);
    let options = &DemoOptions {
        concurrency,
        ..options.clone()
    };
    let primary = scenario::primary(options.seed);
    let outage = scenario::OUTAGE;
    let noun = if options.requests == 1 {
        "request"
    } else {
        "requests"
    };
    write_stdout(format_args!(
        "resilience-gateway demo: {} {noun}, {} in flight, seed {}\n",
        options.requests, options.concurrency, options.seed
    ));
    write_stdout(format_args!(
        "primary provider: {:.0}% 503, {:.0}% 429 with Retry-After {} ms, {:.0}% connection resets, \
         {:.0}% slow (+{} ms), down from {:.1} s to {:.1} s\n",
        primary.server_error_share * 100.0,
        primary.rate_limit_share * 100.0,
        primary.rate_limit_retry_after.map_or(0, |delay| delay.as_millis()),
        primary.reset_share * 100.0,
        primary.slow_share * 100.0,
        primary.slow_latency.as_millis(),
        outage.start.as_secs_f64(),
        outage.end.as_secs_f64(),
    ));
    write_stdout(format_args!("alternate provider: healthy\n\n"));

    let progress = ProgressBar::new((options.requests * 2) as u64);
    progress.set_style(
        ProgressStyle::with_template("{prefix:>8} [{bar:40}] {pos}/{len} requests")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );

    progress.set_prefix("direct");
    let direct = run_direct(options, &progress).await?;
    progress.set_prefix("gateway");
    let gateway = run_gateway(options, &progress).await?;
    progress.finish_and_clear();

    Ok(DemoReport {
        requests: options.requests,
        concurrency: options.concurrency,
        seed: options.seed,
        direct,
        gateway,
    })
}

/// The file of the JSON report, opened before the runs.
struct ReportFile {
    path: PathBuf,
    file: std::fs::File,
    /// Whether opening it created it, so that a failed run removes it again.
    created: bool,
}

impl ReportFile {
    fn open(path: &Path) -> Result<Self, DemoError> {
        let created = !path.exists();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|source| DemoError::WriteJson {
                path: path.display().to_string(),
                source,
            })?;
        Ok(ReportFile {
            path: path.to_owned(),
            file,
            created,
        })
    }

    fn write(mut self, report: &DemoReport) -> Result<(), DemoError> {
        let json = serde_json::to_string_pretty(report).unwrap_or_default() + "\n";
        let written = self
            .file
            .set_len(0)
            .and_then(|()| self.file.write_all(json.as_bytes()));
        written.map_err(|source| DemoError::WriteJson {
            path: self.path.display().to_string(),
            source,
        })?;
        write_stdout(format_args!(
            "\nreport written to {}\n",
            self.path.display()
        ));
        Ok(())
    }

    fn discard(self) {
        if self.created {
            // The run failed already; a file left behind is the lesser problem.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Writes to standard output. Unlike `print!`, it does not panic when the reader has gone away,
/// as in `demo | head`.
fn write_stdout(text: std::fmt::Arguments<'_>) {
    let _ = std::io::stdout().lock().write_fmt(text);
}

fn validate(options: &DemoOptions) -> Result<(), DemoError> {
    if !(1..=MAX_REQUESTS).contains(&options.requests) {
        return Err(DemoError::InvalidOption {
            option: "requests",
            value: options.requests,
            reason: format!("must be between 1 and {MAX_REQUESTS}"),
        });
    }
    if !(1..=MAX_CONCURRENCY).contains(&options.concurrency) {
        return Err(DemoError::InvalidOption {
            option: "concurrency",
            value: options.concurrency,
            reason: format!("must be between 1 and {MAX_CONCURRENCY}"),
        });
    }
    Ok(())
}

async fn start_mock(config: crate::mock::MockConfig) -> Result<MockProvider, DemoError> {
    MockProvider::start(config)
        .await
        .map_err(|source| DemoError::Start {
            what: "mock provider",
            source,
        })
}

/// Sends the demo's load to `url` with the chosen request count and concurrency.
async fn drive_load(url: &str, options: &DemoOptions, progress: &ProgressBar) -> Vec<load::Sample> {
    load::drive(
        url,
        scenario::MODEL,
        options.requests,
        options.concurrency,
        progress,
    )
    .await
}

async fn run_direct(options: &DemoOptions, progress: &ProgressBar) -> Result<RunReport, DemoError> {
    let primary = start_mock(scenario::primary(options.seed)).await?;
    let url = format!("{}/chat/completions", primary.base_url());
    let samples = drive_load(&url, options, progress).await;
    Ok(RunReport::new(&samples, primary.requests(), None))
}

async fn run_gateway(
    options: &DemoOptions,
    progress: &ProgressBar,
) -> Result<RunReport, DemoError> {
    let primary = start_mock(scenario::primary(options.seed)).await?;
    let secondary = start_mock(scenario::secondary(options.seed)).await?;
    let toml = scenario::gateway_toml(&primary, &secondary, options.concurrency);
    let config = GatewayConfig::from_toml_str(&toml)?;
    let gateway = Gateway::new(config, |_| None, Registry::default())?;

    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|source| DemoError::Start {
            what: "gateway",
            source,
        })?;
    let address = listener.local_addr().map_err(|source| DemoError::Start {
        what: "gateway",
        source,
    })?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(gateway.clone().serve(listener, async {
        let _ = stopped.await;
    }));

    let url = format!("http://{address}/v1/chat/completions");
    let samples = drive_load(&url, options, progress).await;
    let stats = gateway.manager().stats();
    let upstream_requests = primary.requests() + secondary.requests();

    let _ = stop.send(());
    let _ = server.await;
    Ok(RunReport::new(&samples, upstream_requests, Some(&stats)))
}
