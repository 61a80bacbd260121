//! The `myelin` binary. `myelin node` runs one node (see `myelin node --help`);
//! `myelin cluster` runs a local cluster of them.

use anyhow::Context;
use clap::{Parser, Subcommand};
use myelin_node::config::{NodeArgs, NodeConfig};
use myelin_node::launcher::ClusterArgs;
use myelin_node::shutdown_signal;
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
    Node(Box<NodeArgs>),
    /// Run a local cluster: N nodes on 127.0.0.1 (node i: Kafka on base+(i-1)*10000, by
    /// default 19092, 29092, ...; peers on the port after it; data in <data-dir>/node-i).
    /// Ctrl-C stops them all.
    Cluster(ClusterArgs),
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
            let storage = Arc::new(storage);
            myelin_node::run_node(config, storage.clone(), shutdown_signal()).await?;
            // After the last sync: the next start scans nothing.
            storage
                .write_recovery_points()
                .context("writing recovery points at shutdown")
        }
        Command::Cluster(args) => myelin_node::launcher::run(args).await,
    }
}
