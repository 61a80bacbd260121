//! Node configuration: command-line flags over an optional TOML file over defaults.
//!
//! Every key of the TOML file has the flag's name with `_` for `-`:
//! ```toml
//! listen = "127.0.0.1:9092"
//! data_dir = "./myelin-data"
//! auto_create_topics = true
//! default_partitions = 1
//! segment_bytes = 1073741824
//! retention_ms = 604800000
//! retention_bytes = -1
//! frame_bytes_max = 104857600
//! request_timeout_ms = 30000
//! request_bytes_budget = 268435456
//! node_id = 1
//! peer_listen = "127.0.0.1:19093"
//! peers = "1=127.0.0.1:19093,2=127.0.0.1:29093,3=127.0.0.1:39093"
//! metrics_listen = "127.0.0.1:9094"
//! group_initial_rebalance_delay_ms = 3000
//! ```
//!
//! Without `peers` the node is a cluster of one, as before clusters existed. With it,
//! `peers` lists every node, this one included, as `id=host:port` (ids positive and
//! unique; host names resolved once, at start). `peer_listen` defaults to this node's own
//! entry; when given, it must have that entry's port, since that is where the other nodes
//! connect, but may bind another host (`0.0.0.0:19093` for entry `10.0.0.1:19093`).
//!
//! `metrics_listen` (Prometheus metrics, see `crate::metrics`) defaults to 127.0.0.1 and
//! the Kafka port + 2 (9094 for 9092; `myelin cluster` puts the peer port at + 1), or an
//! ephemeral port when the Kafka port is 0; `off` disables it. A config built in code
//! (`NodeConfig::default()`, the simulator's) has it off. Only a given address that cannot
//! be bound stops the node; a taken default leaves the node running without metrics.

use anyhow::{bail, Context};
use clap::Args;
use myelin_core::api::BrokerConfig;
use myelin_core::metadata::{TopicConfig, SEGMENT_BYTES_MIN};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

/// Flags of `myelin node`. Each overrides the same key of `--config`.
#[derive(Debug, Clone, Default, Args)]
pub struct NodeArgs {
    /// Kafka API address [default: 127.0.0.1:9092]
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Where partitions and metadata are stored [default: ./myelin-data]
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// A TOML file with any of these settings; flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// This node's id [default: 1]
    #[arg(long)]
    pub node_id: Option<i32>,
    /// Create a topic when a client first asks for it [default: true]
    #[arg(long)]
    pub auto_create_topics: Option<bool>,
    /// Partitions of an auto-created topic [default: 1]
    #[arg(long)]
    pub default_partitions: Option<i32>,
    /// Default segment size in bytes [default: 1 GiB]
    #[arg(long)]
    pub segment_bytes: Option<u32>,
    /// Default retention by time, in ms; -1 keeps forever [default: 7 days]
    #[arg(long)]
    pub retention_ms: Option<i64>,
    /// Default retention by size per partition, in bytes; -1: no limit [default: -1]
    #[arg(long)]
    pub retention_bytes: Option<i64>,
    /// Largest request frame accepted, in bytes [default: 100 MiB]
    #[arg(long)]
    pub frame_bytes_max: Option<usize>,
    /// How long a started request frame may take to arrive, in ms [default: 30000]
    #[arg(long)]
    pub request_timeout_ms: Option<u64>,
    /// Bytes of requests read and not yet answered, across every connection; reading from
    /// sockets pauses while they are spent [default: 256 MiB]
    #[arg(long)]
    pub request_bytes_budget: Option<usize>,
    /// Where this node accepts connections from its peers; the port must be that of its own
    /// --peers entry [default: its own --peers entry]
    #[arg(long)]
    pub peer_listen: Option<SocketAddr>,
    /// Every node of the cluster and its peer address: `1=host:port,2=host:port,...`
    /// (this node included). Without it, the node is a cluster of one.
    #[arg(long)]
    pub peers: Option<String>,
    /// Where Prometheus scrapes `/metrics` (HOST:PORT), or `off` [default: 127.0.0.1 and
    /// the --listen port + 2]
    #[arg(long)]
    pub metrics_listen: Option<String>,
    /// How long a new (empty) consumer group waits for more members before its first
    /// rebalance completes, each newcomer extending the wait up to the rebalance timeout
    /// (Kafka's group.initial.rebalance.delay.ms), in ms [default: 3000]
    #[arg(long)]
    pub group_initial_rebalance_delay_ms: Option<i64>,
}

/// The TOML file's shape: the same keys as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    node_id: Option<i32>,
    auto_create_topics: Option<bool>,
    default_partitions: Option<i32>,
    segment_bytes: Option<u32>,
    retention_ms: Option<i64>,
    retention_bytes: Option<i64>,
    frame_bytes_max: Option<usize>,
    request_timeout_ms: Option<u64>,
    request_bytes_budget: Option<usize>,
    peer_listen: Option<SocketAddr>,
    peers: Option<String>,
    metrics_listen: Option<String>,
    group_initial_rebalance_delay_ms: Option<i64>,
}

/// The resolved configuration of one node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub node_id: i32,
    pub auto_create_topics: bool,
    pub default_partitions: i32,
    pub topic_defaults: TopicConfig,
    pub frame_bytes_max: usize,
    pub request_timeout_ms: u64,
    pub request_bytes_budget: usize,
    /// Where peers connect; `None` for a cluster of one.
    pub peer_listen: Option<SocketAddr>,
    /// Every node of the cluster (this one included) and its peer address; empty for a
    /// cluster of one.
    pub peers: BTreeMap<i32, SocketAddr>,
    /// Where the metrics endpoint listens; `None`: no endpoint.
    pub metrics_listen: Option<SocketAddr>,
    /// Whether `metrics_listen` was given (flag or file) rather than derived from the Kafka
    /// port: only a given address that cannot be bound stops the node.
    pub metrics_listen_given: bool,
    /// Kafka's group.initial.rebalance.delay.ms (see `BrokerConfig`).
    pub group_initial_rebalance_delay_ms: i64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            data_dir: PathBuf::from("./myelin-data"),
            node_id: 1,
            auto_create_topics: true,
            default_partitions: 1,
            topic_defaults: TopicConfig::default(),
            frame_bytes_max: 100 * 1024 * 1024,
            request_timeout_ms: 30_000,
            request_bytes_budget: crate::kafka::REQUEST_BYTES_BUDGET_DEFAULT,
            peer_listen: None,
            peers: BTreeMap::new(),
            metrics_listen: None,
            metrics_listen_given: false,
            group_initial_rebalance_delay_ms: BrokerConfig::default()
                .group_initial_rebalance_delay_ms,
        }
    }
}

impl NodeConfig {
    /// Defaults, then the file named by `--config`, then the flags.
    pub fn resolve(args: &NodeArgs) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let mut config = Self::default();
        macro_rules! layer {
            ($field:ident => $target:expr) => {
                if let Some(value) = args.$field.clone().or(file.$field.clone()) {
                    $target = value;
                }
            };
        }
        layer!(listen => config.listen);
        layer!(data_dir => config.data_dir);
        layer!(node_id => config.node_id);
        layer!(auto_create_topics => config.auto_create_topics);
        layer!(default_partitions => config.default_partitions);
        layer!(segment_bytes => config.topic_defaults.segment_bytes);
        layer!(retention_ms => config.topic_defaults.retention_ms);
        layer!(retention_bytes => config.topic_defaults.retention_bytes);
        layer!(frame_bytes_max => config.frame_bytes_max);
        layer!(request_timeout_ms => config.request_timeout_ms);
        layer!(request_bytes_budget => config.request_bytes_budget);
        layer!(group_initial_rebalance_delay_ms => config.group_initial_rebalance_delay_ms);
        if let Some(peers) = args.peers.as_ref().or(file.peers.as_ref()) {
            config.peers = parse_peers(peers)?;
        }
        config.peer_listen = args
            .peer_listen
            .or(file.peer_listen)
            .or_else(|| config.peers.get(&config.node_id).copied());
        let given = args
            .metrics_listen
            .as_ref()
            .or(file.metrics_listen.as_ref());
        config.metrics_listen_given = given.is_some();
        config.metrics_listen = match given {
            Some(text) => parse_metrics_listen(text)?,
            None => {
                let default = default_metrics_listen(config.listen);
                if default.is_none() {
                    tracing::warn!(
                        "metrics are off: the Kafka port + 2 is above 65535; give \
                         --metrics-listen HOST:PORT to choose an address"
                    );
                }
                default
            }
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.default_partitions < 1 {
            bail!("default_partitions must be at least 1");
        }
        if self.topic_defaults.segment_bytes < SEGMENT_BYTES_MIN {
            bail!("segment_bytes must be at least {SEGMENT_BYTES_MIN}");
        }
        if self.frame_bytes_max < 1024 {
            bail!("frame_bytes_max must be at least 1024");
        }
        if self.request_bytes_budget < 1024 {
            bail!("request_bytes_budget must be at least 1024");
        }
        if self.group_initial_rebalance_delay_ms < 0 {
            bail!("group_initial_rebalance_delay_ms must not be negative");
        }
        if self.node_id < 1 {
            bail!("node_id must be positive (1, 2, ...), not {}", self.node_id);
        }
        if self.peers.is_empty() {
            if self.peer_listen.is_some() {
                bail!("--peer-listen needs --peers (the cluster's nodes)");
            }
            return Ok(());
        }
        let Some(own) = self.peers.get(&self.node_id) else {
            bail!(
                "--peers must list this node (--node-id {}) with its peer address",
                self.node_id
            );
        };
        // The other nodes dial the --peers entry: a listener on another port is never
        // reached. The hosts may differ (listen on 0.0.0.0, be reached at a real address).
        if let Some(listen) = self.peer_listen {
            if listen.port() != own.port() {
                bail!(
                    "--peer-listen {listen} and this node's --peers entry {own} name different \
                     ports; the other nodes would connect to {own}"
                );
            }
        }
        Ok(())
    }

    /// The nodes of the cluster, sorted: the `--peers` ids, or this node alone.
    pub fn voters(&self) -> Vec<i32> {
        if self.peers.is_empty() {
            vec![self.node_id]
        } else {
            self.peers.keys().copied().collect()
        }
    }

    /// The core's configuration, once the listener's real address is known.
    pub fn broker_config(&self, bound: SocketAddr) -> BrokerConfig {
        let host = if bound.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            bound.ip().to_string()
        };
        BrokerConfig {
            node_id: self.node_id,
            advertised_host: host,
            advertised_port: i32::from(bound.port()),
            auto_create_topics: self.auto_create_topics,
            default_partition_count: self.default_partitions,
            topic_defaults: self.topic_defaults.clone(),
            voters: self.voters(),
            group_initial_rebalance_delay_ms: self.group_initial_rebalance_delay_ms,
            recompressor: Some(crate::recompress::recompressor()),
            ..BrokerConfig::default()
        }
    }
}

/// The metrics address when none is given: 127.0.0.1 and the Kafka port + 2 (an
/// ephemeral port when the Kafka port is); none when that port would be above 65535.
pub fn default_metrics_listen(listen: SocketAddr) -> Option<SocketAddr> {
    let port = match listen.port() {
        0 => 0,
        kafka => kafka.checked_add(2)?,
    };
    Some(SocketAddr::from(([127, 0, 0, 1], port)))
}

/// `off`, or a `HOST:PORT` resolved now.
fn parse_metrics_listen(text: &str) -> anyhow::Result<Option<SocketAddr>> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let address = text
        .to_socket_addrs()
        .with_context(|| format!("--metrics-listen '{text}' is neither HOST:PORT nor 'off'"))?
        .next()
        .with_context(|| format!("--metrics-listen '{text}' resolves to nothing"))?;
    Ok(Some(address))
}

/// Parses `1=host:port,2=host:port`: positive, unique node ids; each address resolved now.
fn parse_peers(text: &str) -> anyhow::Result<BTreeMap<i32, SocketAddr>> {
    let mut peers = BTreeMap::new();
    for entry in text
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
    {
        let (id, address) = entry
            .split_once('=')
            .with_context(|| format!("peer '{entry}' is not id=host:port"))?;
        let id: i32 = id
            .trim()
            .parse()
            .with_context(|| format!("peer id '{id}' is not a number"))?;
        if id < 1 {
            bail!("peer id {id} must be positive (1, 2, ...)");
        }
        let address = address
            .trim()
            .to_socket_addrs()
            .with_context(|| format!("peer address '{address}' does not resolve"))?
            .next()
            .with_context(|| format!("peer address '{address}' resolves to nothing"))?;
        if peers.insert(id, address).is_some() {
            bail!("peer id {id} is listed twice");
        }
    }
    Ok(peers)
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("myelin.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:1234\"\ndefault_partitions = 4\nretention_ms = 10\n",
        )
        .unwrap();
        let args = NodeArgs {
            config: Some(path),
            default_partitions: Some(6),
            ..NodeArgs::default()
        };
        let config = NodeConfig::resolve(&args).unwrap();
        assert_eq!(config.listen.port(), 1234);
        assert_eq!(config.default_partitions, 6);
        assert_eq!(config.topic_defaults.retention_ms, 10);
        assert_eq!(config.data_dir, PathBuf::from("./myelin-data"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "listn = \"x\"\n").unwrap();
        let args = NodeArgs {
            config: Some(path),
            ..NodeArgs::default()
        };
        assert!(NodeConfig::resolve(&args).is_err());
        let args = NodeArgs {
            default_partitions: Some(0),
            ..NodeArgs::default()
        };
        assert!(NodeConfig::resolve(&args).is_err());
    }

    /// The error `resolve` gives, with its context chain.
    fn refusal(args: NodeArgs) -> String {
        match NodeConfig::resolve(&args) {
            Ok(config) => panic!("resolved, but should have been refused: {config:?}"),
            Err(error) => format!("{error:#}"),
        }
    }

    fn cluster_args(node_id: i32, peers: &str) -> NodeArgs {
        NodeArgs {
            node_id: Some(node_id),
            peers: Some(peers.into()),
            ..NodeArgs::default()
        }
    }

    const THREE: &str = "1=127.0.0.1:19093, 2=127.0.0.1:29093,3=127.0.0.1:39093";

    #[test]
    fn peers_parse_and_default_the_peer_listener() {
        let config = NodeConfig::resolve(&cluster_args(2, THREE)).unwrap();
        assert_eq!(config.voters(), vec![1, 2, 3]);
        assert_eq!(config.peers[&3], "127.0.0.1:39093".parse().unwrap());
        assert_eq!(config.peer_listen, Some("127.0.0.1:29093".parse().unwrap()));
    }

    #[test]
    fn the_initial_rebalance_delay_defaults_to_kafkas_and_the_file_and_flag_set_it() {
        let config = NodeConfig::resolve(&NodeArgs::default()).unwrap();
        assert_eq!(config.group_initial_rebalance_delay_ms, 3_000);
        let bound = "127.0.0.1:9092".parse().unwrap();
        assert_eq!(
            config.broker_config(bound).group_initial_rebalance_delay_ms,
            3_000
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, "group_initial_rebalance_delay_ms = 0\n").unwrap();
        let from_file = NodeArgs {
            config: Some(path.clone()),
            ..NodeArgs::default()
        };
        let config = NodeConfig::resolve(&from_file).unwrap();
        assert_eq!(
            config.broker_config(bound).group_initial_rebalance_delay_ms,
            0
        );
        let flag = NodeArgs {
            config: Some(path),
            group_initial_rebalance_delay_ms: Some(250),
            ..NodeArgs::default()
        };
        assert_eq!(
            NodeConfig::resolve(&flag)
                .unwrap()
                .group_initial_rebalance_delay_ms,
            250
        );
        assert!(refusal(NodeArgs {
            group_initial_rebalance_delay_ms: Some(-1),
            ..NodeArgs::default()
        })
        .contains("must not be negative"));
    }

    #[test]
    fn without_peers_the_node_is_a_cluster_of_one() {
        let config = NodeConfig::resolve(&NodeArgs::default()).unwrap();
        assert!(config.peers.is_empty());
        assert_eq!(config.peer_listen, None);
        assert_eq!(config.voters(), vec![1]);
        let config = NodeConfig::resolve(&NodeArgs {
            node_id: Some(7),
            ..NodeArgs::default()
        })
        .unwrap();
        assert_eq!(config.voters(), vec![7]);
    }

    #[test]
    fn peer_listen_may_bind_another_host_on_its_own_port() {
        let args = NodeArgs {
            peer_listen: Some("0.0.0.0:29093".parse().unwrap()),
            ..cluster_args(2, THREE)
        };
        let config = NodeConfig::resolve(&args).unwrap();
        assert_eq!(config.peer_listen, Some("0.0.0.0:29093".parse().unwrap()));
        assert_eq!(config.peers[&2], "127.0.0.1:29093".parse().unwrap());
    }

    #[test]
    fn peer_host_names_are_resolved() {
        let config = NodeConfig::resolve(&cluster_args(1, "1=localhost:19093")).unwrap();
        assert!(config.peers[&1].ip().is_loopback());
        assert_eq!(config.peers[&1].port(), 19093);
    }

    #[test]
    fn the_file_takes_the_cluster_keys_and_flags_override_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(
            &path,
            "node_id = 3\npeer_listen = \"0.0.0.0:39093\"\n\
             peers = \"1=127.0.0.1:19093,2=127.0.0.1:29093,3=127.0.0.1:39093\"\n",
        )
        .unwrap();
        let from_file = NodeArgs {
            config: Some(path.clone()),
            ..NodeArgs::default()
        };
        let config = NodeConfig::resolve(&from_file).unwrap();
        assert_eq!(config.node_id, 3);
        assert_eq!(config.voters(), vec![1, 2, 3]);
        assert_eq!(config.peer_listen, Some("0.0.0.0:39093".parse().unwrap()));
        let overridden = NodeArgs {
            config: Some(path),
            peers: Some("3=127.0.0.1:39093,4=127.0.0.1:49093".into()),
            ..NodeArgs::default()
        };
        assert_eq!(
            NodeConfig::resolve(&overridden).unwrap().voters(),
            vec![3, 4]
        );
    }

    #[test]
    fn bad_peer_lists_are_refused() {
        for (node_id, peers, expected) in [
            (
                1,
                "1=127.0.0.1:1,1=127.0.0.1:2",
                "peer id 1 is listed twice",
            ),
            (1, "x=127.0.0.1:1", "peer id 'x' is not a number"),
            (1, "1:127.0.0.1:1", "is not id=host:port"),
            (
                1,
                "1=127.0.0.1:1,0=127.0.0.1:2",
                "peer id 0 must be positive",
            ),
            (
                1,
                "1=127.0.0.1:1,-2=127.0.0.1:2",
                "peer id -2 must be positive",
            ),
            // No port, and a port out of range: refused without a name lookup.
            (
                1,
                "1=localhost",
                "peer address 'localhost' does not resolve",
            ),
            (1, "1=127.0.0.1:70000", "does not resolve"),
            (
                2,
                "1=127.0.0.1:1",
                "--peers must list this node (--node-id 2)",
            ),
        ] {
            let error = refusal(cluster_args(node_id, peers));
            assert!(error.contains(expected), "{peers}: {error}");
        }
    }

    #[test]
    fn metrics_listen_defaults_to_the_kafka_port_plus_two_and_can_be_off() {
        let config = NodeConfig::resolve(&NodeArgs::default()).unwrap();
        assert_eq!(
            config.metrics_listen,
            Some("127.0.0.1:9094".parse().unwrap())
        );
        let config = NodeConfig::resolve(&NodeArgs {
            listen: Some("0.0.0.0:19092".parse().unwrap()),
            ..NodeArgs::default()
        })
        .unwrap();
        assert_eq!(
            config.metrics_listen,
            Some("127.0.0.1:19094".parse().unwrap())
        );
        let config = NodeConfig::resolve(&NodeArgs {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            ..NodeArgs::default()
        })
        .unwrap();
        assert_eq!(config.metrics_listen, Some("127.0.0.1:0".parse().unwrap()));
        let config = NodeConfig::resolve(&NodeArgs {
            metrics_listen: Some("off".into()),
            ..NodeArgs::default()
        })
        .unwrap();
        assert_eq!(config.metrics_listen, None);
        let config = NodeConfig::resolve(&NodeArgs {
            metrics_listen: Some("0.0.0.0:9100".into()),
            ..NodeArgs::default()
        })
        .unwrap();
        assert_eq!(config.metrics_listen, Some("0.0.0.0:9100".parse().unwrap()));
        assert_eq!(NodeConfig::default().metrics_listen, None);
    }

    #[test]
    fn bad_metrics_listen_values_are_refused() {
        let error = refusal(NodeArgs {
            metrics_listen: Some("nowhere".into()),
            ..NodeArgs::default()
        });
        assert!(error.contains("--metrics-listen 'nowhere'"), "{error}");
    }

    #[test]
    fn a_kafka_port_without_room_for_the_default_metrics_port_runs_without_metrics() {
        let config = NodeConfig::resolve(&NodeArgs {
            listen: Some("127.0.0.1:65534".parse().unwrap()),
            ..NodeArgs::default()
        })
        .unwrap();
        assert_eq!(config.metrics_listen, None);
        assert!(!config.metrics_listen_given);
    }

    #[test]
    fn the_file_takes_metrics_listen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, "metrics_listen = \"off\"\n").unwrap();
        let config = NodeConfig::resolve(&NodeArgs {
            config: Some(path),
            ..NodeArgs::default()
        })
        .unwrap();
        assert_eq!(config.metrics_listen, None);
    }

    #[test]
    fn node_ids_must_be_positive() {
        for node_id in [0, -1] {
            let error = refusal(NodeArgs {
                node_id: Some(node_id),
                ..NodeArgs::default()
            });
            assert!(error.contains("node_id must be positive"), "{error}");
        }
    }

    #[test]
    fn peer_listen_without_peers_is_refused() {
        let error = refusal(NodeArgs {
            peer_listen: Some("127.0.0.1:19093".parse().unwrap()),
            ..NodeArgs::default()
        });
        assert!(error.contains("--peer-listen needs --peers"), "{error}");
    }

    #[test]
    fn peer_listen_on_another_port_than_the_own_entry_is_refused() {
        let error = refusal(NodeArgs {
            peer_listen: Some("127.0.0.1:29094".parse().unwrap()),
            ..cluster_args(2, THREE)
        });
        assert!(error.contains("name different ports"), "{error}");
    }
}
