//! The `myelin` binary. `myelin node` runs one node (see `myelin node --help`).

use anyhow::Context;
use clap::{Parser, Subcommand};
use myelin_node::config::{NodeArgs, NodeConfig};
use myelin_node::storage::file::FileStorage;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "myelin",
    version,
    about = "A Kafka-compatible event-streaming node with a deterministic core"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node: Kafka API on --listen, data in --data-dir.
    Node(NodeArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Node(args) => {
            let config = NodeConfig::resolve(&args)?;
            let storage = FileStorage::open(&config.data_dir)
                .with_context(|| format!("opening data directory {}", config.data_dir.display()))?;
            myelin_node::run_node(config, Arc::new(storage), shutdown_signal()).await
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(all(unix, not(madsim)))]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the node");
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(all(unix, not(madsim))))]
    let _ = interrupt.await;
}
