//! The broker (being written).
use crate::api::{BrokerConfig, Input, Output, RecoveredPartition};
use crate::metadata::ClusterMetadata;

pub struct Broker {}

impl Broker {
    /// Builds the broker from what storage recovered. `metadata` is `None` on a fresh data
    /// directory. The returned outputs (e.g. persisting fresh metadata) must be executed
    /// before serving.
    pub fn new(
        _config: BrokerConfig,
        _metadata: Option<ClusterMetadata>,
        _recovered: Vec<RecoveredPartition>,
        _rng_seed: u64,
        _now_ms: i64,
    ) -> (Self, Vec<Output>) {
        todo!()
    }

    pub fn step(&mut self, _now_ms: i64, _input: Input) -> Vec<Output> {
        todo!()
    }

    /// The earliest time at which a `Tick` has work to do (a long-poll deadline).
    pub fn next_wakeup_ms(&self) -> Option<i64> {
        todo!()
    }
}
