//! Deliberate defects (feature `defects` only): bugs the simulator must be able to catch.
//!
//! Each variant switches one real safeguard off. The core applies the broker's through
//! [`crate::api::BrokerConfig::defect`], which also reaches every partition's replica (the
//! replication defects); the storage defects (`SkipRecoveryCrc`, `SkipDirectoryFsync`,
//! `SkipSegmentFsync`, `SkipReplicaStateFsync`) are applied by the node's file storage, which the simulator opens
//! with its run's defect (`FileStorage::with_defect`). The simulator's single-node runs catch `ALL`; the
//! replication model tests (`replication.rs`) and the exhaustive search
//! (`replication_exhaustive.rs`) catch `REPLICATION`. Without the feature this module, the
//! config field and every branch that reads it do not exist, so the `myelin` binary can
//! never carry them. There is no global state: each broker gets its defect at
//! construction, so simulated nodes in one process stay independent.

use serde::{Deserialize, Serialize};

/// One deliberate bug. See the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Defect {
    /// Answer an acks=all produce as soon as its batch is appended, before the sync that
    /// makes it durable. A crash before the sync loses an acknowledged write.
    AckBeforeFsync,
    /// Serve fetches up to the log end offset instead of the high watermark, so consumers
    /// read data that a crash can still take back.
    ReadAboveHighWatermark,
    /// Recovery accepts any batch whose header and length look right, without its CRC: a
    /// torn write whose tail is garbage survives a crash.
    SkipRecoveryCrc,
    /// Storage: the group-commit sync does not fsync partition directories, so a segment
    /// file created by a roll has no durable name: a power loss takes it, synced batches
    /// and all.
    SkipDirectoryFsync,
    /// Storage: the group-commit sync fsyncs no segment's log, so acknowledged batches are
    /// still only in the page cache when the power goes.
    SkipSegmentFsync,
    /// Storage: a replica's epoch and vote are written to its state file without an fsync,
    /// so a power loss brings back an older epoch or vote: the replica can vote twice in one
    /// epoch, or lead an epoch it already left.
    SkipReplicaStateFsync,
    /// On restart, rebuild partition logs but not the idempotent producers' sequence state,
    /// so a retried or continued idempotent batch is refused or written twice.
    ForgetProducerStateOnRestart,
    /// Replication: grant a vote without the log up-to-date check, so a replica missing
    /// committed data can be elected and lose it.
    VoteWithoutUpToDateCheck,
    /// Replication: the leader counts its own durable log as a majority, so the high
    /// watermark passes data that only a minority holds.
    MinorityHighWatermark,
    /// Replication: a follower keeps its own batch where the leader's differs in epoch
    /// instead of truncating, so replicas disagree on committed offsets.
    FollowerKeepsDivergentTail,
    /// Groups: accept an offset commit from a member of an older generation (a zombie
    /// fenced out of the group, whose partitions were reassigned) without checking its
    /// generation or membership, so its stale position overwrites the new owner's.
    AcceptStaleGenerationCommit,
    /// Groups: a new coordinator starts from an empty offsets log instead of replaying it,
    /// so the group's committed offsets are lost on failover.
    LoseOffsetsOnFailover,
    /// Transactions: read_committed fetches report no aborted transactions (as another
    /// Rust broker on record does), so consumers deliver aborted records.
    EmptyAbortedTransactions,
    /// Transactions: the last stable offset ignores open transactions (it is the high
    /// watermark), so read_committed returns records whose transaction may still abort.
    LastStableOffsetIgnoresOpenTransactions,
    /// Transactions: the coordinator completes a transaction as soon as it sends its
    /// markers, without waiting for them, so a coordinator failover or a lost marker leaves
    /// partitions without their marker while the transaction counts as complete.
    CompleteBeforeMarkers,
    /// Transactions: the group coordinator applies a transaction's pending offsets on its
    /// abort marker too, so a consume-transform-produce copier skips the input of aborted
    /// transactions.
    CommitOffsetsOnAbort,
}

impl Defect {
    /// Every defect, in a fixed order.
    pub const ALL: [Defect; 7] = [
        Defect::AckBeforeFsync,
        Defect::ReadAboveHighWatermark,
        Defect::SkipRecoveryCrc,
        Defect::SkipDirectoryFsync,
        Defect::SkipSegmentFsync,
        Defect::SkipReplicaStateFsync,
        Defect::ForgetProducerStateOnRestart,
    ];

    /// The replication protocol's defects, caught by its model tests.
    pub const REPLICATION: [Defect; 3] = [
        Defect::VoteWithoutUpToDateCheck,
        Defect::MinorityHighWatermark,
        Defect::FollowerKeepsDivergentTail,
    ];

    /// The group coordinator's defects, caught by the simulator's group scenarios.
    pub const GROUPS: [Defect; 2] = [
        Defect::AcceptStaleGenerationCommit,
        Defect::LoseOffsetsOnFailover,
    ];

    /// The transaction protocol's defects, caught by the simulator's transaction scenarios.
    pub const TRANSACTIONS: [Defect; 4] = [
        Defect::EmptyAbortedTransactions,
        Defect::LastStableOffsetIgnoresOpenTransactions,
        Defect::CompleteBeforeMarkers,
        Defect::CommitOffsetsOnAbort,
    ];

    /// The kebab-case name used on command lines.
    pub fn name(self) -> &'static str {
        match self {
            Defect::AckBeforeFsync => "ack-before-fsync",
            Defect::ReadAboveHighWatermark => "read-above-high-watermark",
            Defect::SkipRecoveryCrc => "skip-recovery-crc",
            Defect::SkipDirectoryFsync => "skip-directory-fsync",
            Defect::SkipSegmentFsync => "skip-segment-fsync",
            Defect::SkipReplicaStateFsync => "skip-replica-state-fsync",
            Defect::ForgetProducerStateOnRestart => "forget-producer-state-on-restart",
            Defect::VoteWithoutUpToDateCheck => "vote-without-up-to-date-check",
            Defect::MinorityHighWatermark => "minority-high-watermark",
            Defect::FollowerKeepsDivergentTail => "follower-keeps-divergent-tail",
            Defect::AcceptStaleGenerationCommit => "accept-stale-generation-commit",
            Defect::LoseOffsetsOnFailover => "lose-offsets-on-failover",
            Defect::EmptyAbortedTransactions => "empty-aborted-transactions",
            Defect::LastStableOffsetIgnoresOpenTransactions => {
                "last-stable-offset-ignores-open-transactions"
            }
            Defect::CompleteBeforeMarkers => "complete-before-markers",
            Defect::CommitOffsetsOnAbort => "commit-offsets-on-abort",
        }
    }

    /// The defect with this kebab-case name.
    pub fn from_name(name: &str) -> Option<Defect> {
        Defect::ALL
            .into_iter()
            .chain(Defect::REPLICATION)
            .chain(Defect::GROUPS)
            .chain(Defect::TRANSACTIONS)
            .find(|defect| defect.name() == name)
    }
}

impl std::fmt::Display for Defect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
