//! The `resilience-gateway` command line: `serve` runs the gateway, `demo` shows it at work.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use prometheus_client::registry::Registry;
use resilience_gateway::config::GatewayConfig;
use resilience_gateway::demo::{self, DemoOptions};
use resilience_gateway::Gateway;
use tracing_subscriber::EnvFilter;

/// An OpenAI-compatible gateway with circuit breakers, bulkheads, retries and fallbacks.
#[derive(Debug, Parser)]
#[command(name = "resilience-gateway", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the gateway with a configuration file.
    Serve {
        /// The TOML configuration file.
        #[arg(long, value_name = "PATH")]
        config: PathBuf,
    },
    /// Start mock providers with injected faults and the gateway in front of them on 127.0.0.1,
    /// send a load through the gateway and straight to the providers, and compare the two.
    Demo(DemoOptions),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Serve { .. } => "info",
        Command::Demo(_) => "error",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .init();

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: failed to start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve { config } => runtime.block_on(serve(config)),
        Command::Demo(options) => runtime.block_on(demo::run(options)).map_err(Into::into),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(path: PathBuf) -> Result<(), Box<dyn std::error::Error>> {
    let config = GatewayConfig::from_file(&path)?;
    let listen = config.server.listen;
    let gateway = Gateway::new(config, |name| std::env::var(name).ok(), Registry::default())?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|error| format!("failed to listen on {listen} (server.listen): {error}"))?;
    tracing::info!(address = %listen, "gateway listening");

    let shutdown = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "failed to wait for Ctrl-C; stopping now");
        }
        tracing::info!("shutting down");
    };
    gateway.serve(listener, shutdown).await?;
    tracing::info!("gateway stopped");
    Ok(())
}
