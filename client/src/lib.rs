//! `myelin-client`: a small async Kafka-protocol client for Myelin's deterministic
//! simulator workloads (under madsim), tests and benchmarks.
//!
//! One [`Connection`] talks to one broker over one TCP connection, strictly one request at
//! a time. On connect it sends ApiVersions and then uses, for each API, the highest version
//! both sides support (see [`CLIENT_VERSIONS`]). Every request has a deadline
//! ([`ClientConfig::request_timeout`]); oversized frames are refused before allocation. The
//! wire format comes from the `kafka-protocol` crate; only `tokio::net::TcpStream`,
//! `tokio::io` and `tokio::time` are used, so the same code runs on real tokio and under
//! `--cfg madsim`.
//!
//! ```no_run
//! use myelin_client::{ClientConfig, Connection, FetchOptions, NewRecord, ProduceOptions};
//! # async fn demo() -> myelin_client::Result<()> {
//! let mut conn = Connection::connect("127.0.0.1:9092", ClientConfig::default()).await?;
//! conn.create_topic("events", 1, 1, &[]).await?;
//! let records = [NewRecord::kv("k", "hello"), ("k2", "world").into()];
//! let base = conn.produce("events", 0, &records, &ProduceOptions::default()).await?;
//! let fetched = conn.fetch("events", 0, base, &FetchOptions::default()).await?;
//! assert_eq!(fetched.records[0].value.as_deref(), Some(&b"hello"[..]));
//! # Ok(()) }
//! ```
//!
//! Modules: [`connection`] (framing, correlation ids, timeouts, versions; generic
//! [`Connection::send`] and raw frames for malformed-input tests), [`admin`] (Metadata,
//! CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs, IncrementalAlterConfigs,
//! DescribeCluster), [`produce`] (Produce, InitProducerId,
//! [`IdempotentProducer`]), [`fetch`] (Fetch, ListOffsets), [`groups`] (the consumer-group
//! APIs, DeleteGroups, OffsetDelete), [`group_admin`] (ListGroups, DescribeGroups, all of
//! a group's offsets), [`consumer_protocol`] (the "consumer" subscription and assignment,
//! the range assignor), [`partitioner`] (Kafka's murmur2 key partitioner), [`log_admin`]
//! (DeleteRecords, DescribeLogDirs), [`transactions`] (the transaction coordinator's APIs,
//! OffsetFetch with require_stable, [`TransactionalProducer`]), [`records`] (record batches).
//! Errors are [`Error`]; a broker error code is [`Error::Broker`].

pub mod admin;
pub mod connection;
pub mod consumer_protocol;
pub mod error;
pub mod fetch;
pub mod group_admin;
pub mod groups;
pub mod log_admin;
pub mod partitioner;
pub mod produce;
pub mod records;
pub mod transactions;

pub use admin::{
    BrokerMetadata, ClusterMetadata, ConfigEntry, DescribedCluster, PartitionMetadata,
    TopicMetadata,
};
pub use connection::{client_version_range, ClientConfig, Connection, CLIENT_VERSIONS};
pub use error::{Error, Result};
pub use fetch::{
    AbortedTransaction, FetchOptions, FetchedPartition, IsolationLevel, EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP, MAX_TIMESTAMP,
};
pub use group_admin::{CommittedOffset, GroupDescription, GroupMember, ListedGroup};
pub use groups::{Coordinator, JoinedGroup};
pub use log_admin::{LogDirDescription, LogDirPartition};
pub use produce::{IdempotentProducer, ProduceOptions, ProducerBatch};
pub use records::{BatchHeader, BatchOptions, Compression, ConsumedRecord, NewRecord};
pub use transactions::{
    FetchedOffset, GroupMembership, PartitionCode, TransactionalProducer, TxnProducerId,
};

/// The `kafka-protocol` crate this client is built on, for use with [`Connection::send`].
pub use kafka_protocol;
