//! # myelin-node: the networked shell around myelin-core
//!
//! The core decides; this crate does the I/O. Reading order:
//! - [`config`]: flags and TOML settings of a node;
//! - [`storage`]: the storage contract and the file-backed segments;
//! - [`runtime`]: the task that owns the core's broker, executes its outputs and runs the
//!   group-commit syncs;
//! - [`kafka`]: the Kafka wire protocol: framing, version negotiation, and the translation
//!   of each API to and from the core's requests;
//! - [`recompress`]: broker-side recompression for topics with a `compression.type`;
//! - [`run_node`]: all of it put together, used by the `myelin` binary;
//! - [`launcher`]: `myelin cluster`, a local cluster of node processes.

pub mod config;
pub(crate) mod frame;
pub mod kafka;
pub mod launcher;
pub mod metrics;
pub mod peer;
pub mod recompress;
pub mod runtime;
pub mod storage;

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use config::NodeConfig;
use myelin_core::api::{ReadChunk, RecoveredPartition, Recovery};
use myelin_core::broker::{is_internal_topic, Broker};
use myelin_core::metadata::TopicPartition;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use storage::Storage;

/// Recovers storage, starts the core task and serves the Kafka API until `shutdown`
/// resolves; then syncs everything appended and returns.
pub async fn run_node(
    config: NodeConfig,
    storage: Arc<dyn Storage>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    run_node_with(config, storage, shutdown, runtime::NodeHooks::default()).await
}

/// [`run_node`] with observation and fault hooks (the simulator's entry point).
pub async fn run_node_with(
    config: NodeConfig,
    storage: Arc<dyn Storage>,
    shutdown: impl Future<Output = ()>,
    hooks: runtime::NodeHooks,
) -> anyhow::Result<()> {
    let recovered = storage.recover().context("recovering the data directory")?;
    let internal_logs = read_internal_logs(storage.as_ref(), &recovered.partitions)
        .context("reading the recovered internal logs")?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding the Kafka listener to {}", config.listen))?;
    let bound = listener.local_addr().context("reading the bound address")?;
    let metrics_listener = match config.metrics_listen {
        Some(address) => match tokio::net::TcpListener::bind(address).await {
            Ok(listener) => {
                let bound = listener
                    .local_addr()
                    .context("reading the metrics address")?;
                tracing::info!(address = %bound, "metrics on http://{bound}/metrics");
                Some(listener)
            }
            // The default address is a convenience: a node whose Kafka port + 2 is taken
            // (another process, another node's port) still serves Kafka, without metrics.
            Err(error) if !config.metrics_listen_given => {
                tracing::warn!(
                    %address,
                    %error,
                    "metrics are off: the default metrics address (the Kafka port + 2) \
                     cannot be bound; give --metrics-listen HOST:PORT to choose one"
                );
                None
            }
            Err(error) => {
                return Err(anyhow::Error::new(error).context(format!(
                    "binding the metrics listener (--metrics-listen) to {address}"
                )))
            }
        },
        None => None,
    };
    let partition_count = recovered.partitions.len();
    let mut broker_config = config.broker_config(bound);
    if let Some(adjust) = &hooks.adjust_broker_config {
        adjust(&mut broker_config);
    }
    let clock = runtime::NodeClock::start(&hooks);
    let now = clock.now();
    hooks.trace(
        now,
        runtime::TraceEvent::Started {
            node_id: broker_config.node_id,
            recovered: &recovered.partitions,
        },
    );
    let peers = match config.peer_listen {
        Some(peer_listen) => {
            let peer_config =
                peer::PeerConfig::new(config.node_id, peer_listen, config.peers.clone());
            let started = peer::PeerTransport::start(peer_config)
                .await
                .with_context(|| format!("starting the peer transport on {peer_listen}"))?;
            tracing::info!(address = %peer_listen, peers = ?config.peers, "peer transport listening");
            Some(started)
        }
        None => None,
    };
    let (broker, initial) = Broker::new(
        broker_config,
        Recovery {
            metadata: recovered.metadata,
            partitions: recovered.partitions,
            internal_logs,
        },
        hooks.broker_rng_seed.unwrap_or_else(rand::random),
        now,
    );
    let handle = runtime::start_with(broker, storage, initial, peers, hooks, clock)
        .context("applying recovery outputs")?;
    if let Some(listener) = metrics_listener {
        tokio::spawn(metrics::http::serve(listener, handle.clone()));
    }
    tracing::info!(
        address = %bound,
        data_dir = %config.data_dir.display(),
        partitions = partition_count,
        "myelin node serving Kafka on {bound}"
    );
    let listener_config = kafka::KafkaListenerConfig {
        frame_bytes_max: config.frame_bytes_max,
        request_timeout_ms: config.request_timeout_ms,
        request_bytes_budget: config.request_bytes_budget,
        topic_defaults: config.topic_defaults.clone(),
        node_id: config.node_id,
        ..kafka::KafkaListenerConfig::default()
    };
    tokio::select! {
        served = kafka::serve(listener, handle.clone(), listener_config) => {
            served.context("serving the Kafka listener")?;
        }
        _ = shutdown => {
            tracing::info!("shutting down: syncing outstanding appends");
        }
    }
    handle.shutdown().await;
    tracing::info!("myelin node stopped");
    Ok(())
}

/// The batches of each recovered internal partition (the metadata log, the offsets topic),
/// concatenated: the core rebuilds their state by replaying them (it holds no record bytes
/// of its own).
fn read_internal_logs(
    storage: &dyn Storage,
    partitions: &[RecoveredPartition],
) -> Result<BTreeMap<TopicPartition, Bytes>, storage::StorageError> {
    let mut logs = BTreeMap::new();
    let internal = partitions
        .iter()
        .filter(|partition| is_internal_topic(&partition.partition.topic));
    for partition in internal {
        let mut bytes = BytesMut::new();
        for segment in &partition.segments {
            for batch in &segment.batches {
                let chunk = ReadChunk {
                    segment_base_offset: segment.base_offset,
                    position: batch.position,
                    length: batch.header.size_bytes,
                };
                bytes.extend_from_slice(&storage.read(&partition.partition, &chunk)?);
            }
        }
        logs.insert(partition.partition.clone(), bytes.freeze());
    }
    Ok(logs)
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
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

/// `parts` back to back in one buffer: the part itself when there is one (no copy).
pub(crate) fn joined(parts: Vec<Bytes>) -> Bytes {
    match <[Bytes; 1]>::try_from(parts) {
        Ok([single]) => single,
        Err(parts) => {
            let mut whole = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
            for part in parts {
                whole.extend_from_slice(&part);
            }
            whole.freeze()
        }
    }
}
