//! The Kafka wire protocol listener: unmodified Kafka clients talk to the node through it.
//!
//! Reading order:
//! - `server`: the accept loop and the per-connection loop (framing, pipelining, ordered
//!   responses, timeouts, connection limit). `serve` is the entry point `main` calls.
//! - `codec`: frame length checks, request decoding (header + body) and response encoding.
//! - `precheck`: a structural walk of each request body run before the decoder, so that a
//!   hostile array length can never make the decoder allocate more than the frame holds.
//! - `versions`: the API versions this node advertises (and accepts), and ApiVersions.
//! - `dispatch`: routes one decoded request to its API module.
//! - One module per API group, each translating between the wire messages and the core's
//!   `Request`/`Response` for exactly the version the client asked for: `metadata`,
//!   `produce`, `fetch`, `offsets` (ListOffsets), `epochs` (OffsetForLeaderEpoch), `admin` (CreateTopics, DeleteTopics,
//!   CreatePartitions), `configs` (DescribeConfigs, IncrementalAlterConfigs, AlterConfigs), `producer_id` (InitProducerId), `groups` (FindCoordinator, JoinGroup,
//!   SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch, ListGroups,
//!   DescribeGroups), `group_admin` (DeleteGroups, OffsetDelete), `log_dirs` (DescribeLogDirs), `delete_records` (DeleteRecords), `transactions` (AddPartitionsToTxn, AddOffsetsToTxn, EndTxn,
//!   TxnOffsetCommit, DescribeTransactions, ListTransactions, DescribeProducers).
//!   `topic_ids` maps Kafka topic UUIDs to names for the APIs that address topics by id.
//!
//! Nothing here decides anything about the log: the core does. A bad request closes its own
//! connection with a logged reason and never affects the node.

mod admin;
mod codec;
mod configs;
mod delete_records;
mod dispatch;
mod epochs;
mod fetch;
mod group_admin;
mod groups;
mod log_dirs;
mod metadata;
mod offsets;
mod precheck;
mod produce;
mod producer_id;
mod server;
#[cfg(test)]
mod test_support;
mod topic_ids;
mod transactions;
mod versions;

pub use server::{
    serve, KafkaListenerConfig, FRAME_BYTES_MAX_DEFAULT, REQUEST_BYTES_BUDGET_DEFAULT,
};
