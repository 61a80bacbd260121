//! Routes one decoded request to its API module and encodes the answer as a response frame.
//!
//! Each API module translates the wire request into the core's `Request`, awaits the core
//! through the `NodeHandle`, and builds the wire response for exactly the version the client
//! asked for. This module owns what they share: the per-connection context, the reply type
//! and the error that closes a connection.

use crate::frame::SplicedFrame;
use crate::kafka::codec::{encode_response, DecodedRequest};
use crate::kafka::topic_ids::TopicIdCache;
use crate::kafka::versions::api_versions_response;
use crate::kafka::{
    admin, configs, delete_records, epochs, fetch, group_admin, groups, log_dirs, metadata,
    offsets, produce, producer_id, transactions,
};
use crate::runtime::{NodeHandle, RuntimeError};
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use myelin_core::api::{Request, Response};
use std::net::SocketAddr;
use thiserror::Error;

/// What every request of one connection can reach.
pub(crate) struct ConnectionContext {
    pub handle: NodeHandle,
    pub peer: SocketAddr,
    /// This connection's number, in the order the node accepted them.
    pub connection_id: u64,
    pub topic_ids: TopicIdCache,
    /// The node's topic defaults (see `KafkaListenerConfig::topic_defaults`).
    pub topic_defaults: myelin_core::metadata::TopicConfig,
    /// This node's id (see `KafkaListenerConfig::node_id`).
    pub node_id: i32,
}

/// What an API module decided to send back.
pub(crate) enum Reply {
    Respond {
        body: Box<ResponseKind>,
        /// Bytes to reserve for the encoded frame (record bytes dominate fetch responses).
        capacity_hint_bytes: usize,
    },
    /// acks=0 produce: Kafka sends nothing, and the client does not wait for anything.
    NoResponse,
}

impl Reply {
    pub fn small(body: impl Into<ResponseKind>) -> Self {
        Reply::Respond {
            body: Box::new(body.into()),
            capacity_hint_bytes: 256,
        }
    }
}

/// Why a request ended its connection instead of getting a response.
#[derive(Debug, Error)]
pub(crate) enum HandlerError {
    #[error("the node is shutting down")]
    NodeStopped,
    #[error("the core answered a {request} request with a different response kind")]
    UnexpectedResponse { request: &'static str },
    #[error("{api_key:?} is not served by this node")]
    NotServed { api_key: ApiKey },
    #[error("encoding the {api_key:?} v{version} response failed: {reason}")]
    Encode {
        api_key: ApiKey,
        version: i16,
        reason: String,
    },
}

impl From<RuntimeError> for HandlerError {
    fn from(error: RuntimeError) -> Self {
        match error {
            RuntimeError::Stopped => HandlerError::NodeStopped,
        }
    }
}

/// Sends one request to the core and waits for its answer.
pub(crate) async fn call(
    context: &ConnectionContext,
    request: Request,
) -> Result<Response, HandlerError> {
    Ok(context
        .handle
        .call(request.on_connection(context.connection_id))
        .await?)
}

/// Handles one request: `Ok(None)` when no response is due (acks=0).
pub(crate) async fn respond(
    context: &ConnectionContext,
    request: DecodedRequest,
) -> Result<Option<SplicedFrame>, HandlerError> {
    let DecodedRequest {
        api_key,
        version,
        header,
        body,
    } = request;
    let reply = match body {
        RequestKind::ApiVersions(_) => Reply::small(api_versions_response(0)),
        RequestKind::Metadata(request) => metadata::handle(context, version, request).await?,
        RequestKind::Produce(request) => produce::handle(context, version, request).await?,
        RequestKind::Fetch(request) => fetch::handle(context, version, request).await?,
        RequestKind::ListOffsets(request) => offsets::handle(context, version, request).await?,
        RequestKind::OffsetForLeaderEpoch(request) => {
            epochs::handle(context, version, request).await?
        }
        RequestKind::InitProducerId(request) => {
            producer_id::handle(context, version, request).await?
        }
        RequestKind::CreateTopics(request) => {
            admin::create_topics(context, version, request).await?
        }
        RequestKind::DeleteTopics(request) => {
            admin::delete_topics(context, version, request).await?
        }
        RequestKind::DescribeConfigs(request) => {
            configs::describe_configs(context, version, request).await?
        }
        RequestKind::IncrementalAlterConfigs(request) => {
            configs::incremental_alter_configs(context, version, request).await?
        }
        RequestKind::AlterConfigs(request) => {
            configs::alter_configs(context, version, request).await?
        }
        RequestKind::CreatePartitions(request) => {
            admin::create_partitions(context, version, request).await?
        }
        RequestKind::DescribeCluster(request) => {
            metadata::describe_cluster(context, version, request).await?
        }
        RequestKind::FindCoordinator(request) => {
            groups::find_coordinator(context, version, request).await?
        }
        RequestKind::JoinGroup(request) => {
            let client_id = header.client_id.as_deref();
            groups::join_group(context, version, request, client_id).await?
        }
        RequestKind::SyncGroup(request) => groups::sync_group(context, version, request).await?,
        RequestKind::Heartbeat(request) => groups::heartbeat(context, version, request).await?,
        RequestKind::LeaveGroup(request) => groups::leave_group(context, version, request).await?,
        RequestKind::OffsetCommit(request) => {
            groups::offset_commit(context, version, request).await?
        }
        RequestKind::OffsetFetch(request) => {
            groups::offset_fetch(context, version, request).await?
        }
        RequestKind::ListGroups(request) => groups::list_groups(context, version, request).await?,
        RequestKind::DescribeGroups(request) => {
            groups::describe_groups(context, version, request).await?
        }
        RequestKind::AddPartitionsToTxn(request) => {
            transactions::add_partitions_to_txn(context, version, request).await?
        }
        RequestKind::AddOffsetsToTxn(request) => {
            transactions::add_offsets_to_txn(context, version, request).await?
        }
        RequestKind::EndTxn(request) => transactions::end_txn(context, version, request).await?,
        RequestKind::TxnOffsetCommit(request) => {
            transactions::txn_offset_commit(context, version, request).await?
        }
        RequestKind::DescribeTransactions(request) => {
            transactions::describe_transactions(context, version, request).await?
        }
        RequestKind::ListTransactions(request) => {
            transactions::list_transactions(context, version, request).await?
        }
        RequestKind::DescribeProducers(request) => {
            transactions::describe_producers(context, version, request).await?
        }
        RequestKind::DeleteGroups(request) => {
            group_admin::delete_groups(context, version, request).await?
        }
        RequestKind::OffsetDelete(request) => {
            group_admin::offset_delete(context, version, request).await?
        }
        RequestKind::DescribeLogDirs(request) => {
            log_dirs::describe_log_dirs(context, version, request).await?
        }
        RequestKind::DeleteRecords(request) => {
            delete_records::delete_records(context, version, request).await?
        }
        // The codec refuses every API outside the advertised table before decoding.
        _ => return Err(HandlerError::NotServed { api_key }),
    };
    if let Reply::Respond { body, .. } = &reply {
        context.handle.metrics().record_response(api_key, body);
    }
    match reply {
        Reply::NoResponse => Ok(None),
        Reply::Respond {
            body,
            capacity_hint_bytes,
        } => encode_response(
            api_key,
            version,
            header.correlation_id,
            &body,
            capacity_hint_bytes,
        )
        .map(Some)
        .map_err(|error| HandlerError::Encode {
            api_key,
            version,
            reason: error.to_string(),
        }),
    }
}

/// A wire string from an owned one.
pub(crate) fn wire_string(text: impl Into<String>) -> StrBytes {
    StrBytes::from_string(text.into())
}
