//! Transactions: the coordinator requests (FindCoordinator key type 1, InitProducerId with
//! a transactional id, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, TxnOffsetCommit),
//! OffsetFetch with `require_stable`, and [`TransactionalProducer`], which keeps a
//! transactional producer's state between those requests.
//!
//! Every call is exactly one request: nothing is retried here, so a caller (the simulator's
//! workloads) records exactly what the broker answered. A Kafka error code comes back as
//! [`Error::Broker`] with the code unchanged (CONCURRENT_TRANSACTIONS 51, PRODUCER_FENCED 90,
//! INVALID_PRODUCER_EPOCH 47, INVALID_TXN_STATE 48, NOT_COORDINATOR 16,
//! COORDINATOR_LOAD_IN_PROGRESS 14, ...); the per-partition answers of AddPartitionsToTxn,
//! TxnOffsetCommit and OffsetFetch are also available whole ([`PartitionCode`]).
//!
//! The flow of one transaction (Kafka's "transactions v1", which every client tested here
//! uses): find the coordinator, InitProducerId once, then per transaction AddPartitionsToTxn
//! before the first batch to a partition, transactional Produce to the partition leaders,
//! optionally AddOffsetsToTxn + TxnOffsetCommit (to the group's coordinator), and EndTxn.
//! ```no_run
//! # async fn demo(coord: &mut myelin_client::Connection, leader: &mut myelin_client::Connection)
//! # -> myelin_client::Result<()> {
//! use myelin_client::{NewRecord, TransactionalProducer};
//! let mut producer = TransactionalProducer::init(coord, "copier-1", 60_000).await?;
//! producer.add_partitions(coord, &[("out", 0)]).await?;
//! producer.produce(leader, "out", 0, &[NewRecord::new("a")]).await?;
//! producer.end(coord, true).await?; // commit
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, ApiKey, EndTxnRequest, GroupId,
    InitProducerIdRequest, OffsetFetchRequest, ProducerId, TransactionalId, TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::StrBytes;

use crate::admin::topic_name;
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::groups::Coordinator;
use crate::produce::{IdempotentProducer, ProduceOptions, ProducerBatch};
use crate::records::NewRecord;

/// FindCoordinator key type of a transactional id.
pub const KEY_TYPE_TRANSACTION: i8 = 1;
/// Kafka error code OPERATION_NOT_ATTEMPTED: the partitions of a request that were not
/// tried because another one failed.
pub const OPERATION_NOT_ATTEMPTED: i16 = 55;

/// What identifies a transactional producer to its coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnProducerId {
    /// The `transactional.id`.
    pub transactional_id: String,
    /// Producer id from InitProducerId.
    pub producer_id: i64,
    /// Producer epoch from InitProducerId.
    pub producer_epoch: i16,
}

/// The consumer-group generation a TxnOffsetCommit (v3+) claims to act for (KIP-447), so
/// that the coordinator can fence a zombie. [`GroupMembership::standalone`] is "no member".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMembership {
    /// Member id (empty: none).
    pub member_id: String,
    /// Generation (-1: none).
    pub generation: i32,
    /// Static member id, if any.
    pub group_instance_id: Option<String>,
}

impl GroupMembership {
    /// No membership: what clients without KIP-447 (and versions below 3) send.
    pub fn standalone() -> Self {
        GroupMembership {
            member_id: String::new(),
            generation: -1,
            group_instance_id: None,
        }
    }

    fn is_standalone(&self) -> bool {
        self.member_id.is_empty() && self.generation == -1 && self.group_instance_id.is_none()
    }
}

/// One partition's error code in a per-partition answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionCode {
    pub topic: String,
    pub partition: i32,
    /// Kafka error code (0 = none).
    pub code: i16,
}

/// One partition of an OffsetFetch answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedOffset {
    pub partition: i32,
    /// The committed offset (-1: none, or unknown because of `error_code`).
    pub offset: i64,
    /// Kafka error code, e.g. 88 UNSTABLE_OFFSET_COMMIT under `require_stable`.
    pub error_code: i16,
}

/// The error of a per-partition answer: the first code other than 0 and
/// OPERATION_NOT_ATTEMPTED (the cause rather than its consequence), else the first
/// OPERATION_NOT_ATTEMPTED, else `Ok`.
pub fn first_partition_error(api: ApiKey, codes: &[PartitionCode]) -> Result<()> {
    let cause = codes
        .iter()
        .find(|c| c.code != 0 && c.code != OPERATION_NOT_ATTEMPTED)
        .or_else(|| codes.iter().find(|c| c.code != 0));
    match cause {
        Some(c) => Err(Error::Broker {
            api,
            code: c.code,
            message: Some(format!("{}/{}", c.topic, c.partition)),
        }),
        None => Ok(()),
    }
}

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

fn txn_id(id: &str) -> TransactionalId {
    TransactionalId(text(id))
}

/// Groups `(topic, partition)` pairs by topic, in first-seen order.
fn by_topic<T: Copy>(items: &[(&str, T)]) -> Vec<(String, Vec<T>)> {
    let mut out: Vec<(String, Vec<T>)> = Vec::new();
    for (topic, item) in items {
        match out.iter_mut().find(|(t, _)| t == topic) {
            Some((_, list)) => list.push(*item),
            None => out.push(((*topic).to_owned(), vec![*item])),
        }
    }
    out
}

impl Connection {
    /// The transaction coordinator of `transactional_id` (FindCoordinator key type 1).
    pub async fn find_transaction_coordinator(
        &mut self,
        transactional_id: &str,
    ) -> Result<Coordinator> {
        self.find_coordinator_of(transactional_id, KEY_TYPE_TRANSACTION)
            .await
    }

    /// InitProducerId for a transactional producer. `current` is KIP-360's resume form
    /// (InitProducerId v3+): the producer id and epoch the producer holds, which the
    /// coordinator bumps (or answers PRODUCER_FENCED when they are stale). Without it the
    /// coordinator fences any earlier producer of the same id (and aborts its open
    /// transaction, answering CONCURRENT_TRANSACTIONS meanwhile: retry).
    pub async fn init_transactional_producer_id(
        &mut self,
        transactional_id: &str,
        transaction_timeout_ms: i32,
        current: Option<(i64, i16)>,
    ) -> Result<(i64, i16)> {
        let version = self.version(ApiKey::InitProducerId)?;
        let (producer_id, producer_epoch) = current.unwrap_or((-1, -1));
        if current.is_some() && version < 3 {
            return Err(Error::UnsupportedVersion {
                api: ApiKey::InitProducerId,
                detail: format!("resuming a producer id needs v3+, the connection uses v{version}"),
            });
        }
        let request = InitProducerIdRequest::default()
            .with_transactional_id(Some(txn_id(transactional_id)))
            .with_transaction_timeout_ms(transaction_timeout_ms)
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(producer_epoch);
        let response = self.send(&request, version).await?;
        Error::check(ApiKey::InitProducerId, response.error_code, None)?;
        Ok((response.producer_id.0, response.producer_epoch))
    }

    /// AddPartitionsToTxn (v0-3): every partition's error code as the coordinator answered.
    pub async fn add_partitions_to_txn_codes(
        &mut self,
        producer: &TxnProducerId,
        partitions: &[(&str, i32)],
    ) -> Result<Vec<PartitionCode>> {
        let version = self.version(ApiKey::AddPartitionsToTxn)?;
        let request = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(txn_id(&producer.transactional_id))
            .with_v3_and_below_producer_id(ProducerId(producer.producer_id))
            .with_v3_and_below_producer_epoch(producer.producer_epoch)
            .with_v3_and_below_topics(
                by_topic(partitions)
                    .into_iter()
                    .map(|(topic, partitions)| {
                        AddPartitionsToTxnTopic::default()
                            .with_name(topic_name(&topic))
                            .with_partitions(partitions)
                    })
                    .collect(),
            );
        let response = self.send(&request, version).await?;
        let codes: Vec<PartitionCode> = response
            .results_by_topic_v3_and_below
            .iter()
            .flat_map(|t| {
                t.results_by_partition.iter().map(|p| PartitionCode {
                    topic: t.name.0.to_string(),
                    partition: p.partition_index,
                    code: p.partition_error_code,
                })
            })
            .collect();
        check_all_answered(ApiKey::AddPartitionsToTxn, partitions, &codes)?;
        Ok(codes)
    }

    /// AddPartitionsToTxn; the error is [`first_partition_error`]'s.
    pub async fn add_partitions_to_txn(
        &mut self,
        producer: &TxnProducerId,
        partitions: &[(&str, i32)],
    ) -> Result<()> {
        let codes = self
            .add_partitions_to_txn_codes(producer, partitions)
            .await?;
        first_partition_error(ApiKey::AddPartitionsToTxn, &codes)
    }

    /// AddOffsetsToTxn: the group's offsets partition joins the transaction.
    pub async fn add_offsets_to_txn(
        &mut self,
        producer: &TxnProducerId,
        group: &str,
    ) -> Result<()> {
        let version = self.version(ApiKey::AddOffsetsToTxn)?;
        let request = AddOffsetsToTxnRequest::default()
            .with_transactional_id(txn_id(&producer.transactional_id))
            .with_producer_id(ProducerId(producer.producer_id))
            .with_producer_epoch(producer.producer_epoch)
            .with_group_id(GroupId(text(group)));
        let response = self.send(&request, version).await?;
        Error::check(ApiKey::AddOffsetsToTxn, response.error_code, None)
    }

    /// EndTxn: commit (`commit = true`) or abort the open transaction.
    pub async fn end_txn(&mut self, producer: &TxnProducerId, commit: bool) -> Result<()> {
        let version = self.version(ApiKey::EndTxn)?;
        let request = EndTxnRequest::default()
            .with_transactional_id(txn_id(&producer.transactional_id))
            .with_producer_id(ProducerId(producer.producer_id))
            .with_producer_epoch(producer.producer_epoch)
            .with_committed(commit);
        let response = self.send(&request, version).await?;
        Error::check(ApiKey::EndTxn, response.error_code, None)
    }

    /// TxnOffsetCommit to the group's coordinator: `offsets` are (topic, partition, next
    /// offset to read). A membership other than [`GroupMembership::standalone`] needs v3.
    /// Every partition's error code as the coordinator answered.
    pub async fn txn_offset_commit_codes(
        &mut self,
        producer: &TxnProducerId,
        group: &str,
        membership: &GroupMembership,
        offsets: &[(&str, i32, i64)],
    ) -> Result<Vec<PartitionCode>> {
        let version = self.version(ApiKey::TxnOffsetCommit)?;
        if version < 3 && !membership.is_standalone() {
            return Err(Error::UnsupportedVersion {
                api: ApiKey::TxnOffsetCommit,
                detail: format!("group membership needs v3+, the connection uses v{version}"),
            });
        }
        let pairs: Vec<(&str, (i32, i64))> = offsets
            .iter()
            .map(|&(topic, partition, offset)| (topic, (partition, offset)))
            .collect();
        let request = TxnOffsetCommitRequest::default()
            .with_transactional_id(txn_id(&producer.transactional_id))
            .with_group_id(GroupId(text(group)))
            .with_producer_id(ProducerId(producer.producer_id))
            .with_producer_epoch(producer.producer_epoch)
            .with_generation_id(membership.generation)
            .with_member_id(text(&membership.member_id))
            .with_group_instance_id(membership.group_instance_id.as_deref().map(text))
            .with_topics(
                by_topic(&pairs)
                    .into_iter()
                    .map(|(topic, partitions)| {
                        TxnOffsetCommitRequestTopic::default()
                            .with_name(topic_name(&topic))
                            .with_partitions(
                                partitions
                                    .into_iter()
                                    .map(|(partition, offset)| {
                                        TxnOffsetCommitRequestPartition::default()
                                            .with_partition_index(partition)
                                            .with_committed_offset(offset)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        let response = self.send(&request, version).await?;
        let codes: Vec<PartitionCode> = response
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| PartitionCode {
                    topic: t.name.0.to_string(),
                    partition: p.partition_index,
                    code: p.error_code,
                })
            })
            .collect();
        let asked: Vec<(&str, i32)> = offsets.iter().map(|&(t, p, _)| (t, p)).collect();
        check_all_answered(ApiKey::TxnOffsetCommit, &asked, &codes)?;
        Ok(codes)
    }

    /// TxnOffsetCommit; the error is [`first_partition_error`]'s.
    pub async fn txn_offset_commit(
        &mut self,
        producer: &TxnProducerId,
        group: &str,
        membership: &GroupMembership,
        offsets: &[(&str, i32, i64)],
    ) -> Result<()> {
        let codes = self
            .txn_offset_commit_codes(producer, group, membership, offsets)
            .await?;
        first_partition_error(ApiKey::TxnOffsetCommit, &codes)
    }

    /// OffsetFetch of `partitions` of `topic` with every partition's error code. With
    /// `require_stable` (OffsetFetch v7+) a partition whose transactional offset commit
    /// awaits its marker answers UNSTABLE_OFFSET_COMMIT (88). A group-level error is `Err`.
    pub async fn fetch_offsets_detailed(
        &mut self,
        group: &str,
        topic: &str,
        partitions: &[i32],
        require_stable: bool,
    ) -> Result<Vec<FetchedOffset>> {
        let version = self.version(ApiKey::OffsetFetch)?;
        if require_stable && version < 7 {
            return Err(Error::UnsupportedVersion {
                api: ApiKey::OffsetFetch,
                detail: format!("require_stable needs v7+, the connection uses v{version}"),
            });
        }
        let request = OffsetFetchRequest::default()
            .with_group_id(GroupId(text(group)))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(topic_name(topic))
                .with_partition_indexes(partitions.to_vec())]))
            .with_require_stable(require_stable);
        let response = self.send(&request, version).await?;
        Error::check(ApiKey::OffsetFetch, response.error_code, None)?;
        Ok(response
            .topics
            .iter()
            .filter(|t| t.name.0.as_str() == topic)
            .flat_map(|t| t.partitions.iter())
            .map(|p| FetchedOffset {
                partition: p.partition_index,
                offset: p.committed_offset,
                error_code: p.error_code,
            })
            .collect())
    }
}

/// Refuses an answer that leaves out a partition asked about.
fn check_all_answered(api: ApiKey, asked: &[(&str, i32)], codes: &[PartitionCode]) -> Result<()> {
    for (topic, partition) in asked {
        if !codes
            .iter()
            .any(|c| c.topic == *topic && c.partition == *partition)
        {
            return Err(Error::UnexpectedResponse(format!(
                "{api:?} response lacks {topic}/{partition}"
            )));
        }
    }
    Ok(())
}

/// A transactional producer's state between requests: its identity, the sequence numbers
/// of every partition it wrote to (they continue across transactions while the producer id
/// and epoch stay the same, as in Kafka), and the partitions and groups in the open
/// transaction. Like [`IdempotentProducer`] (which it uses, one per partition), it owns no
/// connection: each call takes the connection to the coordinator or partition leader, so
/// it survives reconnects and coordinator moves. Each call is one request and nothing is
/// retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionalProducer {
    id: TxnProducerId,
    transaction_timeout_ms: i32,
    partitions: BTreeMap<(String, i32), IdempotentProducer>,
    in_transaction: BTreeSet<(String, i32)>,
    groups: BTreeSet<String>,
    /// `acks`, `timeout_ms` and `compression` used for every batch (acks must stay -1).
    /// The other fields are managed by the producer.
    pub options: ProduceOptions,
}

impl TransactionalProducer {
    /// InitProducerId for `transactional_id` on `coordinator` (its transaction
    /// coordinator). Fences any earlier producer with the same transactional id.
    pub async fn init(
        coordinator: &mut Connection,
        transactional_id: &str,
        transaction_timeout_ms: i32,
    ) -> Result<Self> {
        let (producer_id, producer_epoch) = coordinator
            .init_transactional_producer_id(transactional_id, transaction_timeout_ms, None)
            .await?;
        Ok(Self::new(
            transactional_id,
            transaction_timeout_ms,
            producer_id,
            producer_epoch,
        ))
    }

    /// A producer for an id and epoch obtained elsewhere, with no open transaction.
    pub fn new(
        transactional_id: &str,
        transaction_timeout_ms: i32,
        producer_id: i64,
        producer_epoch: i16,
    ) -> Self {
        TransactionalProducer {
            id: TxnProducerId {
                transactional_id: transactional_id.to_owned(),
                producer_id,
                producer_epoch,
            },
            transaction_timeout_ms,
            partitions: BTreeMap::new(),
            in_transaction: BTreeSet::new(),
            groups: BTreeSet::new(),
            options: ProduceOptions::default(),
        }
    }

    /// InitProducerId again, in KIP-360's resume form (v3+) with the current id and epoch:
    /// after an abortable error, or a transaction the coordinator aborted on timeout. On
    /// success the producer takes the new id / epoch, sequences restart at 0 and no
    /// transaction is open.
    pub async fn reinit(&mut self, coordinator: &mut Connection) -> Result<()> {
        let current = (self.id.producer_id, self.id.producer_epoch);
        let (producer_id, producer_epoch) = coordinator
            .init_transactional_producer_id(
                &self.id.transactional_id,
                self.transaction_timeout_ms,
                Some(current),
            )
            .await?;
        self.reset(producer_id, producer_epoch);
        Ok(())
    }

    /// Takes a new producer id / epoch: sequences restart at 0, no transaction is open.
    pub fn reset(&mut self, producer_id: i64, producer_epoch: i16) {
        self.id.producer_id = producer_id;
        self.id.producer_epoch = producer_epoch;
        self.partitions.clear();
        self.forget_transaction();
    }

    /// The identity the coordinator knows this producer by.
    pub fn id(&self) -> &TxnProducerId {
        &self.id
    }

    /// The transactional id.
    pub fn transactional_id(&self) -> &str {
        &self.id.transactional_id
    }

    /// The producer id.
    pub fn producer_id(&self) -> i64 {
        self.id.producer_id
    }

    /// The producer epoch.
    pub fn producer_epoch(&self) -> i16 {
        self.id.producer_epoch
    }

    /// The transaction timeout sent with InitProducerId.
    pub fn transaction_timeout_ms(&self) -> i32 {
        self.transaction_timeout_ms
    }

    /// The partitions added to the open transaction.
    pub fn transaction_partitions(&self) -> impl Iterator<Item = (&str, i32)> {
        self.in_transaction.iter().map(|(t, p)| (t.as_str(), *p))
    }

    /// The groups whose offsets were added to the open transaction.
    pub fn transaction_groups(&self) -> impl Iterator<Item = &str> {
        self.groups.iter().map(String::as_str)
    }

    /// True once a partition or group was added to the open transaction.
    pub fn in_transaction(&self) -> bool {
        !self.in_transaction.is_empty() || !self.groups.is_empty()
    }

    /// Forgets the open transaction's partitions and groups (after the coordinator ended
    /// it some other way, e.g. fenced on timeout). Sequences are kept.
    pub fn forget_transaction(&mut self) {
        self.in_transaction.clear();
        self.groups.clear();
    }

    /// AddPartitionsToTxn for those of `partitions` not yet in the open transaction (no
    /// request if none). On success they are in the transaction.
    pub async fn add_partitions(
        &mut self,
        coordinator: &mut Connection,
        partitions: &[(&str, i32)],
    ) -> Result<()> {
        let mut missing: Vec<(&str, i32)> = partitions
            .iter()
            .copied()
            .filter(|(t, p)| !self.in_transaction.contains(&((*t).to_owned(), *p)))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() {
            return Ok(());
        }
        coordinator
            .add_partitions_to_txn(&self.id, &missing)
            .await?;
        self.in_transaction
            .extend(missing.iter().map(|(t, p)| ((*t).to_owned(), *p)));
        Ok(())
    }

    /// The sequence the next batch to `topic`/`partition` will start at.
    pub fn next_sequence(&self, topic: &str, partition: i32) -> i32 {
        self.partitions
            .get(&(topic.to_owned(), partition))
            .map_or(0, IdempotentProducer::next_sequence)
    }

    /// Encodes `records` as one transactional batch for `topic`/`partition` with the next
    /// sequence numbers (advancing them). Does not check that the partition was added to
    /// the transaction: the broker's refusal of a batch outside it is worth testing.
    pub fn batch(
        &mut self,
        topic: &str,
        partition: i32,
        records: &[NewRecord],
    ) -> Result<ProducerBatch> {
        let options = ProduceOptions {
            transactional_id: Some(self.id.transactional_id.clone()),
            ..self.options.clone()
        };
        let (producer_id, producer_epoch) = (self.id.producer_id, self.id.producer_epoch);
        let state = self
            .partitions
            .entry((topic.to_owned(), partition))
            .or_insert_with(|| {
                IdempotentProducer::new(topic, partition, producer_id, producer_epoch)
            });
        state.options = options;
        state.batch(records)
    }

    /// Sends (or re-sends) a prepared batch to the partition's leader; returns its base
    /// offset.
    pub async fn send(
        &self,
        leader: &mut Connection,
        topic: &str,
        partition: i32,
        batch: &ProducerBatch,
    ) -> Result<i64> {
        let state = self
            .partitions
            .get(&(topic.to_owned(), partition))
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "no batch was prepared for {topic}/{partition} with this producer id"
                ))
            })?;
        state.send(leader, batch).await
    }

    /// [`TransactionalProducer::batch`] then one [`TransactionalProducer::send`].
    pub async fn produce(
        &mut self,
        leader: &mut Connection,
        topic: &str,
        partition: i32,
        records: &[NewRecord],
    ) -> Result<i64> {
        let batch = self.batch(topic, partition, records)?;
        self.send(leader, topic, partition, &batch).await
    }

    /// AddOffsetsToTxn for `group` (no request if already added). Then commit the offsets
    /// with [`TransactionalProducer::commit_offsets`] on the group's coordinator.
    pub async fn add_offsets(&mut self, coordinator: &mut Connection, group: &str) -> Result<()> {
        if self.groups.contains(group) {
            return Ok(());
        }
        coordinator.add_offsets_to_txn(&self.id, group).await?;
        self.groups.insert(group.to_owned());
        Ok(())
    }

    /// TxnOffsetCommit on the group's coordinator (not the transaction coordinator).
    pub async fn commit_offsets(
        &self,
        group_coordinator: &mut Connection,
        group: &str,
        membership: &GroupMembership,
        offsets: &[(&str, i32, i64)],
    ) -> Result<()> {
        group_coordinator
            .txn_offset_commit(&self.id, group, membership, offsets)
            .await
    }

    /// EndTxn: commit or abort. On success no transaction is open; on an error the
    /// transaction stays as it was (retry, or reinit after a fencing error).
    pub async fn end(&mut self, coordinator: &mut Connection, commit: bool) -> Result<()> {
        coordinator.end_txn(&self.id, commit).await?;
        self.forget_transaction();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::decode_batches;

    #[test]
    fn first_partition_error_prefers_the_cause() {
        let code = |topic: &str, partition, code| PartitionCode {
            topic: topic.into(),
            partition,
            code,
        };
        let api = ApiKey::AddPartitionsToTxn;
        assert!(first_partition_error(api, &[code("a", 0, 0)]).is_ok());
        assert!(first_partition_error(api, &[]).is_ok());
        let err =
            first_partition_error(api, &[code("a", 0, 55), code("a", 1, 3), code("b", 0, 55)])
                .unwrap_err();
        assert_eq!(err.broker_code(), Some(3));
        assert!(err.to_string().contains("a/1"), "{err}");
        let err = first_partition_error(api, &[code("a", 0, 0), code("a", 1, 55)]).unwrap_err();
        assert_eq!(err.broker_code(), Some(55));
    }

    #[test]
    fn pairs_group_by_topic_in_order() {
        let grouped = by_topic(&[("b", 1), ("a", 0), ("b", 0)]);
        assert_eq!(
            grouped,
            vec![("b".to_owned(), vec![1, 0]), ("a".to_owned(), vec![0])]
        );
    }

    #[test]
    fn batches_are_transactional_with_per_partition_sequences() {
        let mut p = TransactionalProducer::new("tx", 60_000, 77, 3);
        let a = p
            .batch("t", 0, &[NewRecord::new("a"), NewRecord::new("b")])
            .unwrap();
        let b = p.batch("t", 1, &[NewRecord::new("c")]).unwrap();
        let c = p.batch("t", 0, &[NewRecord::new("d")]).unwrap();
        assert_eq!(
            (a.base_sequence, b.base_sequence, c.base_sequence),
            (0, 0, 2)
        );
        assert_eq!(p.next_sequence("t", 0), 3);
        assert_eq!(p.next_sequence("u", 0), 0);
        for batch in [&a, &b, &c] {
            let h = decode_batches(&batch.bytes).unwrap()[0].header;
            assert!(h.is_transactional() && !h.is_control());
            assert_eq!((h.producer_id, h.producer_epoch), (77, 3));
        }
        // Sequences survive the end of a transaction, not a new epoch.
        p.forget_transaction();
        assert_eq!(p.next_sequence("t", 0), 3);
        p.reset(77, 4);
        assert_eq!(p.next_sequence("t", 0), 0);
        let d = p.batch("t", 0, &[NewRecord::new("e")]).unwrap();
        let h = decode_batches(&d.bytes).unwrap()[0].header;
        assert_eq!((h.producer_epoch, h.base_sequence), (4, 0));
    }

    #[test]
    fn membership_needs_v3_only_when_present() {
        assert!(GroupMembership::standalone().is_standalone());
        let member = GroupMembership {
            member_id: "m".into(),
            generation: 2,
            group_instance_id: None,
        };
        assert!(!member.is_standalone());
    }
}
