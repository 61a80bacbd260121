//! Replica states: each partition's epoch and the vote cast in it (`ReplicaState`), which
//! must survive a restart (a forgotten vote could elect two leaders in one epoch).
//!
//! One file for the data directory, `replica-states.json`, replaced whole and durably
//! (temporary file, fsync, rename, fsync of the directory), so that an election over many
//! partitions costs one durable write, not one per partition. A data directory written
//! before this file existed holds a `replica-state.json` in each partition directory; those
//! are still read, and the node-wide file overrides them once it names the partition.

use super::{partition_table, read_json_file, StorageError, StorageResult};
use crate::storage::fs::FileSystem;
use myelin_core::metadata::TopicPartition;
use myelin_core::replication::{NodeId, ReplicaState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The replica states, in the data directory.
pub(super) const REPLICA_STATES_FILE: &str = "replica-states.json";
/// A partition's replica state in its own directory, as data directories written before
/// `REPLICA_STATES_FILE` hold it.
pub(super) const LEGACY_REPLICA_STATE_FILE: &str = "replica-state.json";
/// The file format's version; another one is refused, not guessed at.
const FORMAT_VERSION: u32 = 1;

/// The replica state of every partition that has one.
pub(super) type ReplicaStates = BTreeMap<TopicPartition, ReplicaState>;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplicaStatesDocument {
    version: u32,
    states: Vec<PartitionState>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartitionState {
    topic: String,
    partition: i32,
    epoch: i32,
    voted_for: Option<NodeId>,
}

/// The replica states in `data_dir`; none when the file does not exist. A file that does
/// not parse is an error naming it, never an empty map: a lost vote is not a fresh start.
pub(super) fn read_replica_states<F: FileSystem>(
    fs: &F,
    data_dir: &Path,
) -> StorageResult<ReplicaStates> {
    let path = data_dir.join(REPLICA_STATES_FILE);
    let Some(document) = read_json_file::<F, ReplicaStatesDocument>(fs, &path)? else {
        return Ok(ReplicaStates::new());
    };
    let entries = document.states.into_iter().map(|entry| {
        let state = if entry.epoch < 0 {
            Err(format!("negative epoch {}", entry.epoch))
        } else {
            Ok(ReplicaState {
                epoch: entry.epoch,
                voted_for: entry.voted_for,
            })
        };
        (TopicPartition::new(entry.topic, entry.partition), state)
    });
    partition_table(&path, document.version, FORMAT_VERSION, entries)
}

/// The file's contents for `states`.
pub(super) fn encode_replica_states(states: &ReplicaStates) -> StorageResult<Vec<u8>> {
    let document = ReplicaStatesDocument {
        version: FORMAT_VERSION,
        states: states
            .iter()
            .map(|(partition, state)| PartitionState {
                topic: partition.topic.clone(),
                partition: partition.partition,
                epoch: state.epoch,
                voted_for: state.voted_for,
            })
            .collect(),
    };
    serde_json::to_vec(&document)
        .map_err(|error| StorageError::io("encode replica states", std::io::Error::other(error)))
}
