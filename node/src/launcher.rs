//! `myelin cluster`: a local cluster in one command, for trying Myelin out and for teaching.
//!
//! It starts `--nodes` child processes of this same binary, each an ordinary
//! `myelin node` with the flags one would type by hand (printed at start): node `i` serves
//! Kafka on `127.0.0.1:<i*10000 + 9092>`, peers on `<i*10000 + 9093>`, and keeps its data in
//! `<data-dir>/node-<i>`. Ctrl-C or SIGTERM is passed on to every node, which shut down
//! cleanly; if one node exits on its own, the others are stopped too.

use anyhow::{bail, Context};
use clap::Args;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

/// Flags of `myelin cluster`.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Nodes to start (node ids 1..=N; at most 6, so the port scheme stays below 65536).
    #[arg(long, default_value_t = 3)]
    pub nodes: u16,
    /// Parent of the nodes' data directories (`node-1`, `node-2`, ...).
    #[arg(long, default_value = "./myelin-cluster")]
    pub data_dir: PathBuf,
}

/// The `myelin node` arguments of node `id` in a cluster of `nodes`.
pub fn node_args(args: &ClusterArgs, id: u16) -> Vec<String> {
    let peers = (1..=args.nodes)
        .map(|peer| format!("{peer}=127.0.0.1:{}", peer_port(peer)))
        .collect::<Vec<_>>()
        .join(",");
    vec![
        "node".into(),
        "--node-id".into(),
        id.to_string(),
        "--listen".into(),
        format!("127.0.0.1:{}", kafka_port(id)),
        "--peer-listen".into(),
        format!("127.0.0.1:{}", peer_port(id)),
        "--peers".into(),
        peers,
        "--data-dir".into(),
        args.data_dir
            .join(format!("node-{id}"))
            .display()
            .to_string(),
    ]
}

fn kafka_port(id: u16) -> u16 {
    id * 10_000 + 9092
}

fn peer_port(id: u16) -> u16 {
    id * 10_000 + 9093
}

/// Runs the cluster until a signal or until a node exits.
pub async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    if !(1..=6).contains(&args.nodes) {
        bail!("--nodes must be between 1 and 6");
    }
    let exe = std::env::current_exe().context("finding the myelin executable")?;
    let mut children: Vec<(u16, Child)> = Vec::new();
    for id in 1..=args.nodes {
        let node_args = node_args(&args, id);
        eprintln!("starting node {id}: myelin {}", node_args.join(" "));
        let child = Command::new(&exe)
            .args(&node_args)
            .spawn()
            .with_context(|| format!("starting node {id}"));
        match child {
            Ok(child) => children.push((id, child)),
            Err(error) => {
                stop_all(&mut children);
                return Err(error);
            }
        }
    }
    let bootstrap = (1..=args.nodes)
        .map(|id| format!("127.0.0.1:{}", kafka_port(id)))
        .collect::<Vec<_>>()
        .join(",");
    eprintln!(
        "cluster of {} nodes; bootstrap servers: {bootstrap}",
        args.nodes
    );
    let outcome = tokio::select! {
        _ = crate::shutdown_signal() => Ok(()),
        exited = first_exit(&mut children) => exited,
    };
    stop_all(&mut children);
    outcome
}

/// Resolves when some node exits, as an error naming it.
async fn first_exit(children: &mut [(u16, Child)]) -> anyhow::Result<()> {
    loop {
        for (id, child) in children.iter_mut() {
            if let Some(status) = child.try_wait().context("watching the nodes")? {
                bail!("node {id} exited ({status}); stopping the others");
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// SIGTERM to every running node, then wait for each (they sync and exit).
fn stop_all(children: &mut [(u16, Child)]) {
    for (_, child) in children.iter_mut() {
        if let Ok(None) = child.try_wait() {
            if let Ok(pid) = i32::try_from(child.id()) {
                // SAFETY: kill(2) on our own child's pid has no memory effects.
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
        }
    }
    for (id, child) in children.iter_mut() {
        match child.wait() {
            Ok(status) => eprintln!("node {id} stopped ({status})"),
            Err(error) => eprintln!("node {id}: {error}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_get_the_documented_ports_and_directories() {
        let args = ClusterArgs {
            nodes: 3,
            data_dir: PathBuf::from("c"),
        };
        let second = node_args(&args, 2);
        assert_eq!(
            second.join(" "),
            "node --node-id 2 --listen 127.0.0.1:29092 --peer-listen 127.0.0.1:29093 \
             --peers 1=127.0.0.1:19093,2=127.0.0.1:29093,3=127.0.0.1:39093 --data-dir c/node-2"
        );
    }
}
