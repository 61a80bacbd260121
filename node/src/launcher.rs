//! `myelin cluster`: a local cluster in one command, for trying Myelin out and for teaching.
//!
//! It starts `--nodes` child processes of this same binary, each an ordinary
//! `myelin node` with the flags one would type by hand (printed at start): node `i` serves
//! Kafka on `127.0.0.1:<base + (i-1)*10000>`, peers on the port after it, metrics (the
//! node's default, `--metrics-listen`) on the one after that, and keeps its data in
//! `<data-dir>/node-<i>`. With the default base, 19092, that is 19092/19093/19094,
//! 29092/29093/29094, 39092/39093/39094. Flags after `--` are passed to every node. Ctrl-C or SIGTERM is passed on to
//! every node, which shut down cleanly; if one node exits on its own, the others are stopped
//! too and the launcher fails.

use anyhow::{bail, Context};
use clap::Args;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Ports between one node's Kafka port and the next node's.
pub const PORT_STRIDE: u16 = 10_000;
/// How long the nodes may take to accept Kafka connections after they are started.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a node may take to exit after SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the launcher looks at its nodes.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Flags of `myelin cluster`.
#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Example: myelin cluster --nodes 3 -- --default-partitions 3\n\
    starts nodes 1..=3 (Kafka on 127.0.0.1:19092, :29092, :39092; peers on :19093, :29093, \
    :39093; metrics on :19094, :29094, :39094; data in ./myelin-cluster/node-1, ...), each with --default-partitions 3."
)]
pub struct ClusterArgs {
    /// Nodes to start, with ids 1..=N (as many as fit below port 65536: 5 with the default
    /// base port).
    #[arg(long, default_value_t = 3)]
    pub nodes: u16,
    /// Parent of the nodes' data directories (`node-1`, `node-2`, ...).
    #[arg(long, default_value = "./myelin-cluster")]
    pub data_dir: PathBuf,
    /// Kafka port of node 1; node i serves Kafka on base + (i-1)*10000 and peers on the
    /// next port.
    #[arg(long, default_value_t = 19092)]
    pub base_port: u16,
    /// `myelin node` flags for every node, after `--` (not those the launcher sets:
    /// --node-id, --listen, --peer-listen, --peers, --data-dir).
    #[arg(last = true, value_name = "NODE_FLAGS")]
    pub node_flags: Vec<String>,
}

/// One node of the local cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedNode {
    pub id: u16,
    pub kafka: SocketAddr,
    pub peer: SocketAddr,
    /// The node's default metrics address (Kafka port + 2).
    pub metrics: SocketAddr,
    pub data_dir: PathBuf,
}

/// The nodes `args` ask for, or why the port scheme cannot hold them.
pub fn plan(args: &ClusterArgs) -> anyhow::Result<Vec<PlannedNode>> {
    if args.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    if args.base_port == 0 {
        bail!("--base-port must be a port number, not 0");
    }
    (1..=args.nodes)
        .map(|id| {
            // The peer port (Kafka port + 1) and the metrics port (+ 2) must fit too.
            let kafka = (id - 1)
                .checked_mul(PORT_STRIDE)
                .and_then(|offset| args.base_port.checked_add(offset))
                .filter(|port| *port < u16::MAX - 1)
                .with_context(|| {
                    format!(
                        "--nodes {} with --base-port {} puts node {id} above port 65535 \
                         (node i uses base + (i-1)*{PORT_STRIDE} and the two ports after it)",
                        args.nodes, args.base_port
                    )
                })?;
            Ok(PlannedNode {
                id,
                kafka: loopback(kafka),
                peer: loopback(kafka + 1),
                metrics: loopback(kafka + 2),
                data_dir: args.data_dir.join(format!("node-{id}")),
            })
        })
        .collect()
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// The `myelin node` arguments of `node` in the cluster `nodes`.
pub fn node_args(nodes: &[PlannedNode], node: &PlannedNode, node_flags: &[String]) -> Vec<String> {
    let peers = nodes
        .iter()
        .map(|peer| format!("{}={}", peer.id, peer.peer))
        .collect::<Vec<_>>()
        .join(",");
    let mut args = vec![
        "node".into(),
        "--node-id".into(),
        node.id.to_string(),
        "--listen".into(),
        node.kafka.to_string(),
        "--peer-listen".into(),
        node.peer.to_string(),
        "--peers".into(),
        peers,
        "--data-dir".into(),
        node.data_dir.display().to_string(),
    ];
    args.extend(node_flags.iter().cloned());
    args
}

/// The `--bootstrap-servers` string of the cluster.
pub fn bootstrap(nodes: &[PlannedNode]) -> String {
    nodes
        .iter()
        .map(|node| node.kafka.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Runs the cluster until a signal or until a node exits.
pub async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let nodes = plan(&args)?;
    let exe = std::env::current_exe().context("finding the myelin executable")?;
    let mut children: Vec<(u16, Child)> = Vec::new();
    for node in &nodes {
        let node_args = node_args(&nodes, node, &args.node_flags);
        eprintln!("starting node {}: myelin {}", node.id, node_args.join(" "));
        let child = Command::new(&exe)
            .args(&node_args)
            .spawn()
            .with_context(|| format!("starting node {}", node.id));
        match child {
            Ok(child) => children.push((node.id, child)),
            Err(error) => {
                stop_all(&mut children).await;
                return Err(error);
            }
        }
    }
    let outcome = tokio::select! {
        _ = crate::shutdown_signal() => Ok(()),
        exited = serve(&nodes, &mut children) => exited,
    };
    stop_all(&mut children).await;
    outcome
}

/// Announces the cluster once every node accepts Kafka connections, then watches the
/// nodes. Resolves only with an error: a node that did not start, or one that exited.
async fn serve(nodes: &[PlannedNode], children: &mut [(u16, Child)]) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut waiting: Vec<&PlannedNode> = nodes.iter().collect();
    while !waiting.is_empty() {
        first_exit(children)?;
        let mut still_waiting = Vec::new();
        for node in waiting {
            if tokio::net::TcpStream::connect(node.kafka).await.is_err() {
                still_waiting.push(node);
            }
        }
        waiting = still_waiting;
        if !waiting.is_empty() && started.elapsed() > READY_TIMEOUT {
            let ids: Vec<u16> = waiting.iter().map(|node| node.id).collect();
            bail!("nodes {ids:?} did not accept Kafka connections within {READY_TIMEOUT:?}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    eprintln!("cluster of {} nodes ready:", nodes.len());
    for node in nodes {
        eprintln!(
            "  node {}: Kafka {}, peers {}, metrics http://{}/metrics, data {}",
            node.id,
            node.kafka,
            node.peer,
            node.metrics,
            node.data_dir.display()
        );
    }
    eprintln!("bootstrap servers: {}", bootstrap(nodes));
    loop {
        first_exit(children)?;
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// An error naming the first node that has exited, if one has.
fn first_exit(children: &mut [(u16, Child)]) -> anyhow::Result<()> {
    for (id, child) in children.iter_mut() {
        if let Some(status) = child.try_wait().context("watching the nodes")? {
            bail!("node {id} exited ({status}); stopping the others");
        }
    }
    Ok(())
}

/// SIGTERM to every running node, then wait for each (they sync and exit); a node still
/// running after [`STOP_TIMEOUT`] is killed.
async fn stop_all(children: &mut [(u16, Child)]) {
    for (id, child) in children.iter_mut() {
        if let Ok(None) = child.try_wait() {
            if let Err(error) = signal(child, libc::SIGTERM) {
                eprintln!("node {id}: cannot send SIGTERM: {error}");
            }
        }
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    for (id, child) in children.iter_mut() {
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    eprintln!("node {id} stopped ({status})");
                    break;
                }
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(POLL_INTERVAL).await;
                }
                Ok(None) => {
                    eprintln!("node {id} still runs {STOP_TIMEOUT:?} after SIGTERM; killing it");
                    // Child::kill is SIGKILL; wait reaps it, which cannot block for long.
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Err(error) => {
                    eprintln!("node {id}: {error}");
                    break;
                }
            }
        }
    }
}

/// Sends `signal_number` to a child that has not been reaped (so its pid is still ours).
fn signal(child: &Child, signal_number: libc::c_int) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(child.id())
        .map_err(|_| std::io::Error::other("the child's pid does not fit pid_t"))?;
    // SAFETY: kill(2) on our own child's pid has no memory effects.
    if unsafe { libc::kill(pid, signal_number) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(nodes: u16, base_port: u16) -> ClusterArgs {
        ClusterArgs {
            nodes,
            data_dir: PathBuf::from("c"),
            base_port,
            node_flags: Vec::new(),
        }
    }

    #[test]
    fn nodes_get_the_documented_ports_and_directories() {
        let nodes = plan(&cluster(3, 19092)).unwrap();
        assert_eq!(
            node_args(&nodes, &nodes[1], &[]).join(" "),
            "node --node-id 2 --listen 127.0.0.1:29092 --peer-listen 127.0.0.1:29093 \
             --peers 1=127.0.0.1:19093,2=127.0.0.1:29093,3=127.0.0.1:39093 --data-dir c/node-2"
        );
        assert_eq!(
            bootstrap(&nodes),
            "127.0.0.1:19092,127.0.0.1:29092,127.0.0.1:39092"
        );
        assert_eq!(nodes[2].metrics, loopback(39094));
    }

    #[test]
    fn the_base_port_shifts_every_port_and_node_flags_follow() {
        let nodes = plan(&cluster(2, 20000)).unwrap();
        let flags = ["--default-partitions".to_string(), "3".to_string()];
        assert_eq!(
            node_args(&nodes, &nodes[1], &flags).join(" "),
            "node --node-id 2 --listen 127.0.0.1:30000 --peer-listen 127.0.0.1:30001 \
             --peers 1=127.0.0.1:20001,2=127.0.0.1:30001 --data-dir c/node-2 \
             --default-partitions 3"
        );
    }

    #[test]
    fn clusters_that_do_not_fit_the_port_range_are_refused() {
        assert_eq!(plan(&cluster(5, 19092)).unwrap().len(), 5);
        let error = format!("{:#}", plan(&cluster(6, 19092)).unwrap_err());
        assert!(error.contains("puts node 6 above port 65535"), "{error}");
        // The last Kafka port fits, its peer port does not; nor does its metrics port.
        let error = format!("{:#}", plan(&cluster(1, u16::MAX)).unwrap_err());
        assert!(error.contains("puts node 1 above port 65535"), "{error}");
        assert!(plan(&cluster(1, u16::MAX - 1)).is_err());
        assert_eq!(
            plan(&cluster(1, u16::MAX - 2)).unwrap()[0].metrics.port(),
            u16::MAX
        );
        assert!(plan(&cluster(0, 19092)).is_err());
        assert!(plan(&cluster(3, 0)).is_err());
    }
}
