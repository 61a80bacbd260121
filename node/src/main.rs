//! The `myelin` binary. `myelin node` runs one node (see `myelin node --help`);
//! `myelin cluster` runs a local cluster of them; `topics`, `groups`, `produce`, `consume`
//! and `cluster status` are a client of any running cluster (see `cli/`).

mod cli;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
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
    /// Run a local cluster (`myelin cluster [start]`), or show a cluster's state
    /// (`myelin cluster status`).
    Cluster(ClusterCli),
    /// Create, list, describe and delete topics.
    Topics(cli::topics::TopicsArgs),
    /// List and describe consumer groups (members, committed offsets, lag); reset their
    /// offsets.
    Groups(cli::groups::GroupsArgs),
    /// Produce the lines of stdin to a topic (KEY<SEP>VALUE with --key-separator).
    Produce(cli::produce::ProduceArgs),
    /// Print a topic's records, alone or as a member of a consumer group.
    Consume(cli::consume::ConsumeArgs),
}

/// `myelin cluster`: without a subcommand (or with `start`) it launches a local cluster.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
struct ClusterCli {
    #[command(subcommand)]
    command: Option<ClusterCommand>,
    #[command(flatten)]
    launch: ClusterArgs,
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Run a local cluster: N nodes on 127.0.0.1 (node i: Kafka on base+(i-1)*10000, by
    /// default 19092, 29092, ...; peers on the port after it, metrics on the next; data in
    /// <data-dir>/node-i). Ctrl-C stops them all. The default of `myelin cluster`.
    Start(ClusterArgs),
    /// Show a running cluster: its nodes, the controller, and the partitions without a
    /// leader or with fewer in-sync replicas than replicas.
    Status(cli::status::StatusArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    keep_freed_memory_for_reuse();
    let cli = Cli::parse();
    // The client subcommands print only their results and errors unless RUST_LOG asks.
    let default_level = match &cli.command {
        Command::Node(_)
        | Command::Cluster(ClusterCli {
            command: None | Some(ClusterCommand::Start(_)),
            ..
        }) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .init();
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
        Command::Cluster(ClusterCli { command, launch }) => match command {
            None => myelin_node::launcher::run(launch).await,
            Some(ClusterCommand::Start(args)) => myelin_node::launcher::run(args).await,
            Some(ClusterCommand::Status(args)) => client_exit(cli::status::run(args).await),
        },
        Command::Topics(args) => client_exit(cli::topics::run(args).await),
        Command::Groups(args) => client_exit(cli::groups::run(args).await),
        Command::Produce(args) => client_exit(cli::produce::run(args).await),
        Command::Consume(args) => client_exit(cli::consume::run(args).await),
    }
}

/// Ends a client subcommand: its error, with its causes and no backtrace, then exit code 1.
fn client_exit(result: anyhow::Result<()>) -> anyhow::Result<()> {
    if let Err(error) = result {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
    Ok(())
}

/// glibc's malloc serves large blocks (over 128 KiB at first) with their own mappings and
/// returns freed memory at the top of a heap to the kernel: every produce request and peer
/// frame of a few MiB then page-faults its pages in and the kernel zeroes them again. In a
/// three-node cluster producing, those faults took about a fifth of the nodes' CPU. Blocks
/// up to glibc's largest threshold (32 MiB, above the peer frames' 8 MiB appends) now come
/// from the heaps, which keep up to 128 MiB free at their top for reuse.
fn keep_freed_memory_for_reuse() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const MMAP_THRESHOLD_BYTES: libc::c_int = 32 << 20;
        const TRIM_THRESHOLD_BYTES: libc::c_int = 128 << 20;
        // SAFETY: mallopt only sets malloc's tunables; called before any large allocation.
        let set = unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
        };
        if !set {
            eprintln!(
                "warning: glibc's malloc refused the node's thresholds; running with its defaults"
            );
        }
    }
}
