//! A read-only summary of what the broker holds, for the node's metrics.
//!
//! [`Broker::stats`] reads the broker's fields and changes nothing: it is not a step, emits
//! no output and draws no randomness, so asking for it (or not) never changes what the
//! core decides. The counters it reports ([`BrokerCounters`]) are bumped where the events
//! happen and are read by nothing else in the core.

use super::Broker;
use crate::api::Now;
use crate::groups::GroupState;
use crate::metadata::TopicPartition;
use crate::replication::FollowerProgressView;

/// What a scrape of the node's metrics wants from the core.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerStats {
    /// The partitions this node leads, in order.
    pub led: Vec<LedPartition>,
    /// The state and member count of each group this node coordinates.
    pub groups: Vec<(GroupState, usize)>,
    /// The names of the topics that exist (metrics of others are dropped).
    pub topics: Vec<String>,
    pub counters: BrokerCounters,
}

/// A partition led here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedPartition {
    pub partition: TopicPartition,
    pub high_watermark: i64,
    pub log_end_offset: i64,
    pub followers: Vec<FollowerProgressView>,
}

impl LedPartition {
    /// A follower is not in sync (see [`crate::replication::Replica::follower_progress`]).
    pub fn under_replicated(&self) -> bool {
        self.followers.iter().any(|follower| !follower.in_sync)
    }
}

/// Events counted since the broker started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BrokerCounters {
    /// Times a replica here became its partition's leader.
    pub leaderships_won: u64,
    /// Produces refused REQUEST_TIMED_OUT because `WAITING_PRODUCES_MAX` produces wait.
    pub waiting_produces_refused: u64,
    /// Long-polls answered at once because `PARKED_FETCHES_MAX` fetches are parked.
    pub parked_fetches_refused: u64,
    /// DeleteRecords refused REQUEST_TIMED_OUT because `WAITING_DELETES_MAX` deletes wait.
    pub waiting_deletes_refused: u64,
}

impl Broker {
    /// The summary at `now` (only `now.monotonic_ms` is read: whether followers were heard
    /// from lately). Read only; see the module doc.
    pub fn stats(&self, now: Now) -> BrokerStats {
        let led = self
            .partitions
            .iter()
            .filter(|(_, state)| state.replica.is_leader())
            .map(|(partition, state)| LedPartition {
                partition: partition.clone(),
                high_watermark: state.log.high_watermark(),
                log_end_offset: state.log.log_end_offset(),
                followers: state.replica.follower_progress(now.monotonic_ms),
            })
            .collect();
        BrokerStats {
            led,
            groups: self.group_coordinator.group_summaries().collect(),
            topics: self.metadata.topics.keys().cloned().collect(),
            counters: self.counters,
        }
    }
}
