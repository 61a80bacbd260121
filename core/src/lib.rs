//! # myelin-core: the deterministic heart of Myelin
//!
//! Sans-IO state machines for a Kafka-compatible event-streaming broker: partition logs,
//! idempotent producers, Raft-family replication of every partition and of the cluster
//! metadata, consumer groups, transactions, and the broker that composes them. Nothing here performs I/O, reads a clock,
//! spawns a thread or draws from an unseeded RNG, so the same inputs give the same outputs
//! on every machine; the networked node (`myelin-node`) and the simulator drive the same
//! code.
//!
//! ## Driver's manual
//! 1. At start, the driver asks storage what it holds (metadata snapshot; per partition, the
//!    CRC-valid batches of each segment and the persisted replica state; the bytes of the
//!    metadata log) and builds the broker with [`broker::Broker::new`] from that
//!    [`api::Recovery`], a seed for the broker's RNG and the current time. It executes the
//!    returned outputs before serving.
//!    Time is an [`api::Now`], read before each step: a monotonic clock (milliseconds
//!    since the process started, never going back), which runs every timer, and the wall
//!    clock, which only stamps what the broker writes and decides time-based retention.
//! 2. Each event becomes one [`api::Input`] fed to [`broker::Broker::step`] with `now`:
//!    a decoded client request (with a driver-chosen [`api::RequestId`]), a storage sync
//!    completion (`Synced { through_sequence }`), a message from another node (`Peer`), or
//!    a `Tick`.
//! 3. The driver executes the returned [`api::Output`]s **in order**:
//!    - `Storage(command)`: carry it out before anything after it. `Append`s are numbered by
//!      `sequence`; they may sit in the page cache until a sync. `PersistMetadata` is
//!      durable when done.
//!    - `Respond { id, response }`: send it to the client that made request `id` (for an
//!      acks=0 produce, send nothing).
//!    - `Send { to, message }`: send it to node `to`, best effort; a replication append that
//!      names stored byte ranges (`Records::Stored`) is sent with those bytes inline.
//!      `Truncate` is durable before anything after it; `PersistReplicaState` before any
//!      later send or response and any later storage command of its partition (a driver
//!      may write many partitions' states in one write).
//! 4. Durability is reported back: after a sync that covered every append up to sequence
//!    `S`, feed `Input::Synced { through_sequence: S }`. Acknowledgements and the high
//!    watermark advance only then. One sync may cover many produces (group commit).
//! 5. Call `step(now, Input::Tick)` no later than [`broker::Broker::next_wakeup_ms`] (a
//!    monotonic time): it expires long-polling fetches and applies retention.
//! 6. A fetch response names byte ranges of segments ([`api::ReadChunk`]); the driver reads
//!    them from storage and sends the bytes as they are. Record bytes never pass through
//!    the core on the way out, and on the way in they are only checked, never copied.
//!
//! ## Reading order
//! [`batch`] (the record-batch format and its checks), [`log`] (offsets, segments, high
//! watermark), [`producers`] (idempotence), [`replication`] (one Raft-family protocol for
//! every log), [`metadata`] (topics and nodes), [`groups`] (a consumer group),
//! [`internal_log`] (what the coordinators' internal logs share), [`group_coordinator`]
//! (the consumer groups of a node, over `__consumer_offsets`), [`transactions`] (the
//! transaction coordinator's states and decisions), [`transaction_coordinator`] (the
//! transactional ids of a node, over `__transaction_state`, and their markers),
//! [`partition_txns`] (a partition's open and aborted transactions, the last stable
//! offset), [`controller`] (the metadata log and its controller), [`api`] (the inputs and
//! outputs), [`broker`] (each Kafka API's meaning, composing the above and driving the
//! controller and the coordinators).
//!
//! ## Invariant checks
//! Each module states its invariants in its doc and checks them with [`invariant!`] (or,
//! for whole-structure checks, behind [`INVARIANT_CHECKS`]). They are on in debug builds
//! and in simulation builds (`--cfg madsim`, whose release build the simulator runs), so
//! a violation stops the simulated node where the fault provoked it; the release node
//! binary leaves them out.

/// Whether invariant checks run: debug builds and simulation builds.
pub const INVARIANT_CHECKS: bool = cfg!(any(debug_assertions, madsim));

/// Asserts a protocol invariant where [`INVARIANT_CHECKS`] holds (debug and simulation
/// builds); takes `assert!`'s arguments.
#[macro_export]
macro_rules! invariant {
    ($($argument:tt)*) => {
        if $crate::INVARIANT_CHECKS {
            assert!($($argument)*);
        }
    };
}

pub mod api;
pub mod batch;
pub mod broker;
pub mod controller;
#[cfg(feature = "defects")]
pub mod defects;
pub mod group_coordinator;
pub mod groups;
pub mod internal_log;
pub mod log;
pub mod metadata;
pub mod partition_txns;
pub mod producers;
pub mod records;
pub mod replication;
pub mod transaction_coordinator;
pub mod transactions;

#[cfg(test)]
mod broker_tests;
#[cfg(test)]
mod cluster_tests;
#[cfg(test)]
mod mbt;
#[cfg(test)]
mod replication_exhaustive;
#[cfg(test)]
mod replication_model;
