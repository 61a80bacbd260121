//! A cluster-aware wrapper around `myelin-client` connections: the bootstrap list, one
//! connection per broker (opened on first use), the last Metadata seen, and the routing of
//! a request to a partition's leader or a group's coordinator with bounded retries.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use myelin_client::{ClientConfig, ClusterMetadata, Connection, Error, TopicMetadata};

/// How long a request may keep being retried against a moving leader or coordinator (a
/// leader election takes a few seconds after a node dies).
pub const RETRY_FOR: Duration = Duration::from_secs(20);
/// Pause between retries.
const RETRY_BACKOFF: Duration = Duration::from_millis(250);

/// A boxed future borrowing a connection, for [`Client::on_leader`] and friends.
pub type ConnFuture<'c, T> = Pin<Box<dyn Future<Output = myelin_client::Result<T>> + 'c>>;

/// Connections to a cluster.
pub struct Client {
    bootstrap: Vec<String>,
    config: ClientConfig,
    /// The bootstrap broker that answered (used for metadata and admin requests).
    any: Option<Connection>,
    /// Connections by node id.
    nodes: BTreeMap<i32, Connection>,
    metadata: Option<ClusterMetadata>,
    /// Coordinator node per group.
    coordinators: BTreeMap<String, i32>,
}

impl Client {
    /// Connects to the first bootstrap broker that answers.
    pub async fn connect(bootstrap: &str) -> anyhow::Result<Client> {
        let bootstrap: Vec<String> = bootstrap
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if bootstrap.is_empty() {
            bail!("--bootstrap is empty: give host:port of a node, e.g. 127.0.0.1:9092");
        }
        if let Some(bad) = bootstrap.iter().find(|a| {
            a.rsplit_once(':')
                .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
        }) {
            bail!("--bootstrap {bad:?} is not host:port: give e.g. 127.0.0.1:9092");
        }
        let mut client = Client {
            bootstrap,
            config: ClientConfig {
                client_id: "myelin-cli".into(),
                connect_timeout: Duration::from_secs(5),
                request_timeout: Duration::from_secs(30),
                ..ClientConfig::default()
            },
            any: None,
            nodes: BTreeMap::new(),
            metadata: None,
            coordinators: BTreeMap::new(),
        };
        client.any().await?;
        Ok(client)
    }

    /// The connection to a bootstrap broker, reconnecting (trying each in turn) if broken.
    pub async fn any(&mut self) -> anyhow::Result<&mut Connection> {
        if self.any.as_ref().is_some_and(Connection::is_broken) {
            self.any = None;
        }
        if self.any.is_none() {
            let mut failures = Vec::new();
            for address in &self.bootstrap {
                match Connection::connect(address.as_str(), self.config.clone()).await {
                    Ok(conn) => {
                        self.any = Some(conn);
                        break;
                    }
                    Err(error) => failures.push(format!("{address} ({})", reach_failure(&error))),
                }
            }
            if self.any.is_none() {
                bail!(
                    "cannot reach {}: is a node running? Start one with `myelin node`, or point \
                     -b/--bootstrap at a running node",
                    failures.join(", ")
                );
            }
        }
        self.any.as_mut().context("no bootstrap connection")
    }

    /// Metadata of `topics` (`None`: all), remembered for routing.
    pub async fn metadata(&mut self, topics: Option<&[&str]>) -> anyhow::Result<ClusterMetadata> {
        self.metadata_request(topics, false).await
    }

    /// Metadata of `topic`, letting the node create it if it auto-creates topics (as the
    /// producers of Kafka clients and kcat do).
    pub async fn metadata_auto_create(&mut self, topic: &str) -> anyhow::Result<ClusterMetadata> {
        self.metadata_request(Some(&[topic]), true).await
    }

    async fn metadata_request(
        &mut self,
        topics: Option<&[&str]>,
        auto_create: bool,
    ) -> anyhow::Result<ClusterMetadata> {
        let mut last_error = None;
        for _ in 0..=self.bootstrap.len() {
            let conn = self.any().await?;
            let result = if auto_create {
                let request = MetadataRequest::default()
                    .with_topics(topics.map(|names| {
                        names
                            .iter()
                            .map(|n| {
                                MetadataRequestTopic::default().with_name(Some(TopicName(
                                    StrBytes::from_string((*n).to_owned()),
                                )))
                            })
                            .collect()
                    }))
                    .with_allow_auto_topic_creation(true);
                match conn.version(ApiKey::Metadata) {
                    Ok(version) => conn
                        .send(&request, version)
                        .await
                        .map(ClusterMetadata::from),
                    Err(error) => Err(error),
                }
            } else {
                conn.metadata(topics).await
            };
            match result {
                Ok(metadata) => {
                    self.remember(&metadata);
                    return Ok(metadata);
                }
                Err(error) if error.breaks_connection() => {
                    // Try the next bootstrap broker.
                    self.any = None;
                    self.bootstrap.rotate_left(1);
                    last_error = Some(error);
                }
                Err(error) => return Err(error).context("Metadata request failed"),
            }
        }
        Err(anyhow!(
            "Metadata request failed: {}",
            last_error.map_or_else(|| "no broker answered".into(), |e| e.to_string())
        ))
    }

    fn remember(&mut self, metadata: &ClusterMetadata) {
        match &mut self.metadata {
            None => self.metadata = Some(metadata.clone()),
            Some(known) => {
                known.brokers = metadata.brokers.clone();
                known.controller_id = metadata.controller_id;
                for topic in &metadata.topics {
                    known.topics.retain(|t| t.name != topic.name);
                    known.topics.push(topic.clone());
                }
            }
        }
    }

    /// `name`'s metadata, or an error saying how to create it.
    pub async fn topic(&mut self, name: &str) -> anyhow::Result<TopicMetadata> {
        let metadata = self.metadata(Some(&[name])).await?;
        existing_topic(&metadata, name)
    }

    /// The connection to node `id` (opened on first use, from the brokers Metadata listed).
    pub async fn node(&mut self, id: i32) -> anyhow::Result<&mut Connection> {
        if self.nodes.get(&id).is_some_and(Connection::is_broken) {
            self.nodes.remove(&id);
        }
        if !self.nodes.contains_key(&id) {
            if !self.knows_broker(id) {
                self.metadata(Some(&[])).await?;
            }
            let broker = self
                .metadata
                .as_ref()
                .and_then(|m| m.brokers.iter().find(|b| b.node_id == id))
                .ok_or(Unroutable::NotLive(id))?;
            let address = format!("{}:{}", broker.host, broker.port);
            let conn = Connection::connect(address.as_str(), self.config.clone())
                .await
                .with_context(|| Unroutable::Unreachable { id, address })?;
            self.nodes.insert(id, conn);
        }
        self.nodes.get_mut(&id).context("connection vanished")
    }

    fn knows_broker(&self, id: i32) -> bool {
        self.metadata
            .as_ref()
            .is_some_and(|m| m.brokers.iter().any(|b| b.node_id == id))
    }

    /// The live brokers of the last Metadata.
    pub fn broker_ids(&self) -> Vec<i32> {
        self.metadata
            .as_ref()
            .map(|m| m.brokers.iter().map(|b| b.node_id).collect())
            .unwrap_or_default()
    }

    /// The leader of `topic`/`partition` per the last Metadata (refreshed when unknown).
    async fn leader_id(&mut self, topic: &str, partition: i32) -> anyhow::Result<i32> {
        let known = |metadata: &Option<ClusterMetadata>| {
            metadata
                .as_ref()
                .and_then(|m| m.topic(topic))
                .and_then(|t| t.partitions.iter().find(|p| p.partition == partition))
                .map(|p| p.leader_id)
                .filter(|leader| *leader >= 0)
        };
        if let Some(leader) = known(&self.metadata) {
            return Ok(leader);
        }
        let metadata = self.metadata(Some(&[topic])).await?;
        let topic_metadata = existing_topic(&metadata, topic)?;
        if !topic_metadata
            .partitions
            .iter()
            .any(|p| p.partition == partition)
        {
            bail!(
                "topic {topic:?} has no partition {partition} (it has {}): add partitions with \
                 `myelin topics add-partitions {topic} --partitions N`",
                topic_metadata.partitions.len()
            );
        }
        known(&self.metadata).ok_or_else(|| {
            Unroutable::NoLeader {
                topic: topic.to_owned(),
                partition,
            }
            .into()
        })
    }

    /// Forgets the leaders and coordinators learnt so far (after a stale-routing error).
    pub fn invalidate(&mut self) {
        self.metadata = None;
        self.coordinators.clear();
    }

    /// Runs `request` on the leader of `topic`/`partition`, looking the leader up again and
    /// retrying (for up to [`RETRY_FOR`]) when the answer says it moved or the connection
    /// failed.
    pub async fn on_leader<T>(
        &mut self,
        topic: &str,
        partition: i32,
        mut request: impl for<'c> FnMut(&'c mut Connection) -> ConnFuture<'c, T>,
    ) -> anyhow::Result<T> {
        let deadline = Instant::now() + RETRY_FOR;
        loop {
            let outcome = match self.leader_id(topic, partition).await {
                Ok(leader) => match self.node(leader).await {
                    Ok(conn) => request(conn).await.map_err(Failure::Client),
                    Err(error) => Err(Failure::Routing(error)),
                },
                Err(error) => Err(Failure::Routing(error)),
            };
            match outcome {
                Ok(value) => return Ok(value),
                Err(failure) if failure.is_retriable() && Instant::now() < deadline => {
                    tracing::debug!(%topic, partition, error = %failure, "retrying on a fresh leader");
                    self.invalidate();
                    tokio::time::sleep(RETRY_BACKOFF).await;
                }
                Err(failure) => {
                    return Err(failure.into_anyhow())
                        .with_context(|| format!("partition {topic}/{partition}"))
                }
            }
        }
    }

    /// The node coordinating `group` (FindCoordinator, retried while the coordinator is
    /// being chosen or loading).
    async fn coordinator_id(&mut self, group: &str) -> anyhow::Result<i32> {
        if let Some(id) = self.coordinators.get(group) {
            return Ok(*id);
        }
        let deadline = Instant::now() + RETRY_FOR;
        loop {
            let conn = self.any().await?;
            match conn.find_coordinator(group).await {
                Ok(coordinator) => {
                    self.coordinators
                        .insert(group.to_owned(), coordinator.node_id);
                    return Ok(coordinator.node_id);
                }
                Err(error) if error.is_retriable() && Instant::now() < deadline => {
                    if error.breaks_connection() {
                        self.any = None;
                    }
                    tokio::time::sleep(RETRY_BACKOFF).await;
                }
                Err(error) => {
                    return Err(error)
                        .with_context(|| format!("finding group {group:?}'s coordinator"))
                }
            }
        }
    }

    /// The connection to `group`'s coordinator.
    pub async fn coordinator(&mut self, group: &str) -> anyhow::Result<&mut Connection> {
        let id = self.coordinator_id(group).await?;
        self.node(id).await
    }

    /// Runs `request` on `group`'s coordinator, finding it again and retrying (for up to
    /// [`RETRY_FOR`]) when the answer says it moved, is loading, or the connection failed.
    pub async fn on_coordinator<T>(
        &mut self,
        group: &str,
        mut request: impl for<'c> FnMut(&'c mut Connection) -> ConnFuture<'c, T>,
    ) -> anyhow::Result<T> {
        let deadline = Instant::now() + RETRY_FOR;
        loop {
            let outcome = match self.coordinator(group).await {
                Ok(conn) => request(conn).await.map_err(Failure::Client),
                Err(error) => Err(Failure::Routing(error)),
            };
            match outcome {
                Ok(value) => return Ok(value),
                Err(failure) if failure.is_retriable() && Instant::now() < deadline => {
                    tracing::debug!(%group, error = %failure, "retrying on a fresh coordinator");
                    self.invalidate();
                    tokio::time::sleep(RETRY_BACKOFF).await;
                }
                Err(failure) => {
                    return Err(failure.into_anyhow()).with_context(|| format!("group {group:?}"))
                }
            }
        }
    }
}

/// Why a routed request failed: routing (no leader, unreachable node) or the request itself.
/// A request that cannot be routed until a fresh Metadata says where to: the cluster is
/// moving. A node that just died is still listed for a few seconds; a partition may have no
/// leader during an election; a leader may be missing from the live brokers for a moment
/// (its node was not heard from lately by the node that answered Metadata).
#[derive(Debug, thiserror::Error)]
enum Unroutable {
    #[error("partition {topic}/{partition} has no leader right now")]
    NoLeader { topic: String, partition: i32 },
    #[error("node {0} is not among the cluster's live nodes")]
    NotLive(i32),
    #[error("cannot reach node {id} at {address}")]
    Unreachable { id: i32, address: String },
}

enum Failure {
    Routing(anyhow::Error),
    Client(Error),
}

impl Failure {
    fn is_retriable(&self) -> bool {
        match self {
            Failure::Routing(error) => error.downcast_ref::<Unroutable>().is_some(),
            Failure::Client(error) => error.is_retriable() || error.needs_coordinator_lookup(),
        }
    }

    fn into_anyhow(self) -> anyhow::Error {
        match self {
            Failure::Routing(error) => error,
            Failure::Client(error) => error.into(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Routing(error) => write!(f, "{error:#}"),
            Failure::Client(error) => write!(f, "{error}"),
        }
    }
}

/// `name` from `metadata`, or an error saying how to create it.
pub fn existing_topic(metadata: &ClusterMetadata, name: &str) -> anyhow::Result<TopicMetadata> {
    match metadata.topic(name) {
        Some(topic) if topic.error_code == 0 => Ok(topic.clone()),
        Some(topic) if topic.error_code != ResponseError::UnknownTopicOrPartition.code() => {
            Err(anyhow!(
                "topic {name:?}: {}",
                Error::Broker {
                    api: ApiKey::Metadata,
                    code: topic.error_code,
                    message: None
                }
            ))
        }
        _ => Err(missing_topic(name)),
    }
}

/// The error for a topic that does not exist.
pub fn missing_topic(name: &str) -> anyhow::Error {
    anyhow!("topic {name:?} does not exist: create it with `myelin topics create {name} --partitions N`")
}

/// Checks a `--partition` asked of `topic`, which has `partition_count` partitions.
pub fn check_partition(
    topic: &str,
    partition_count: i32,
    partition: Option<i32>,
) -> anyhow::Result<()> {
    match partition {
        Some(p) if !(0..partition_count).contains(&p) => Err(anyhow!(
            "topic {topic:?} has {partition_count} partition(s), 0 to {}: no partition {p} (grow \
             it with `myelin topics add-partitions {topic} --partitions N`)",
            partition_count - 1
        )),
        _ => Ok(()),
    }
}

/// "connection refused", "timed out", ... for a failed connect.
fn reach_failure(error: &Error) -> String {
    match error {
        Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
            _ => io.to_string(),
        },
        Error::Timeout { after, .. } => format!("no answer within {after:?}"),
        other => other.to_string(),
    }
}

/// The Kafka error code at the root of `error`, if a broker answered with one.
pub fn broker_error(error: &anyhow::Error) -> Option<ResponseError> {
    error
        .chain()
        .find_map(|cause| cause.downcast_ref::<Error>())
        .and_then(Error::broker_code)
        .and_then(ResponseError::try_from_code)
}
