//! Produce, InitProducerId, and [`IdempotentProducer`] for idempotent (or, with a
//! transactional id, transactional) produce to one partition.

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, ProduceRequest, ProducerId, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE};
use std::time::Duration;

use crate::admin::topic_name;
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::records::{encode_batch, BatchOptions, Compression, NewRecord};

/// Default transaction timeout sent with InitProducerId.
pub const DEFAULT_TRANSACTION_TIMEOUT_MS: i32 = 60_000;

/// How to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceOptions {
    /// 0 (no response at all), 1 (leader) or -1 (all in-sync replicas). Default -1.
    pub acks: i16,
    /// How long the broker may wait for acknowledgements. Default 30 000 ms. Also added to
    /// the client's request timeout.
    pub timeout_ms: i32,
    /// Batch codec. Default none.
    pub compression: Compression,
    /// Producer id from InitProducerId, or -1 (default) for a non-idempotent batch.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence of the first record, or -1.
    pub base_sequence: i32,
    /// Transactional id; when set, the batch is marked transactional.
    pub transactional_id: Option<String>,
}

impl Default for ProduceOptions {
    fn default() -> Self {
        ProduceOptions {
            acks: -1,
            timeout_ms: 30_000,
            compression: Compression::None,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            base_sequence: NO_SEQUENCE,
            transactional_id: None,
        }
    }
}

impl ProduceOptions {
    /// The batch-level fields these options ask for.
    pub fn batch_options(&self) -> BatchOptions {
        BatchOptions {
            compression: self.compression,
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            base_sequence: self.base_sequence,
            transactional: self.transactional_id.is_some(),
        }
    }
}

impl Connection {
    /// Produces `records` as one batch to `topic`/`partition` and returns the base offset
    /// the broker assigned (-1 with acks = 0, which gets no response). A partition error is
    /// `Error::Broker` with its Kafka code.
    pub async fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        records: &[NewRecord],
        options: &ProduceOptions,
    ) -> Result<i64> {
        let batch = encode_batch(records, &options.batch_options())?;
        self.produce_batch(topic, partition, batch, options).await
    }

    /// Produces an already encoded record batch (or any bytes: the broker's validation can
    /// be tested this way). Of `options` only `acks`, `timeout_ms` and `transactional_id`
    /// are used; the batch carries the rest.
    pub async fn produce_batch(
        &mut self,
        topic: &str,
        partition: i32,
        batch: Bytes,
        options: &ProduceOptions,
    ) -> Result<i64> {
        let version = self.version(ApiKey::Produce)?;
        let request = ProduceRequest::default()
            .with_transactional_id(
                options
                    .transactional_id
                    .as_ref()
                    .map(|id| TransactionalId(StrBytes::from_string(id.clone()))),
            )
            .with_acks(options.acks)
            .with_timeout_ms(options.timeout_ms)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(batch))])]);
        if options.acks == 0 {
            self.send_without_response(&request, version).await?;
            return Ok(-1);
        }
        let wait = Duration::from_millis(u64::try_from(options.timeout_ms).unwrap_or(0));
        let response = self.send_with_extra_wait(&request, version, wait).await?;
        let result = response
            .responses
            .iter()
            .filter(|t| t.name.0.as_str() == topic)
            .flat_map(|t| t.partition_responses.iter())
            .find(|p| p.index == partition)
            .ok_or_else(|| {
                Error::UnexpectedResponse(format!("Produce response lacks {topic}/{partition}"))
            })?;
        Error::check(
            ApiKey::Produce,
            result.error_code,
            result.error_message.as_deref(),
        )?;
        Ok(result.base_offset)
    }

    /// InitProducerId: a producer id and epoch, idempotent-only (`None`) or for a
    /// transactional id. Uses [`DEFAULT_TRANSACTION_TIMEOUT_MS`].
    pub async fn init_producer_id(&mut self, transactional_id: Option<&str>) -> Result<(i64, i16)> {
        self.init_producer_id_with_timeout(transactional_id, DEFAULT_TRANSACTION_TIMEOUT_MS)
            .await
    }

    /// InitProducerId with an explicit transaction timeout.
    pub async fn init_producer_id_with_timeout(
        &mut self,
        transactional_id: Option<&str>,
        transaction_timeout_ms: i32,
    ) -> Result<(i64, i16)> {
        let version = self.version(ApiKey::InitProducerId)?;
        let request = InitProducerIdRequest::default()
            .with_transactional_id(
                transactional_id.map(|id| TransactionalId(StrBytes::from_string(id.to_owned()))),
            )
            .with_transaction_timeout_ms(transaction_timeout_ms)
            .with_producer_id(ProducerId(NO_PRODUCER_ID))
            .with_producer_epoch(NO_PRODUCER_EPOCH);
        let response = self.send(&request, version).await?;
        Error::check(ApiKey::InitProducerId, response.error_code, None)?;
        Ok((response.producer_id.0, response.producer_epoch))
    }
}

/// Sequence numbers wrap from `i32::MAX` to 0 (as in Kafka).
pub fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    if sequence > i32::MAX - increment {
        increment - (i32::MAX - sequence) - 1
    } else {
        sequence + increment
    }
}

/// A batch prepared by [`IdempotentProducer::batch`]: its sequence numbers are fixed, so
/// sending it again is a retry the broker must deduplicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerBatch {
    /// Sequence of the first record.
    pub base_sequence: i32,
    /// Number of records.
    pub record_count: i32,
    /// The encoded record batch.
    pub bytes: Bytes,
}

/// Idempotent producer state for one partition: producer id, epoch and the next sequence.
///
/// It does not own a connection, so it survives reconnects:
/// ```no_run
/// # async fn demo(conn: &mut myelin_client::Connection) -> myelin_client::Result<()> {
/// use myelin_client::{IdempotentProducer, NewRecord};
/// let mut producer = IdempotentProducer::init(conn, "events", 0).await?;
/// let batch = producer.batch(&[NewRecord::new("a"), NewRecord::new("b")])?; // seq 0..=1
/// let first = producer.send(conn, &batch).await?;
/// let again = producer.send(conn, &batch).await?; // retry: deduplicated
/// assert_eq!(first, again);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotentProducer {
    topic: String,
    partition: i32,
    producer_id: i64,
    producer_epoch: i16,
    next_sequence: i32,
    /// `acks`, `timeout_ms` and `compression` used for every batch (acks must stay -1 for
    /// idempotence). The producer id, epoch and sequence fields are ignored (this struct
    /// manages them). With `transactional_id` set, batches carry the transactional bit and
    /// Produce the transactional id (what [`crate::TransactionalProducer`] does for each
    /// partition of a transaction).
    pub options: ProduceOptions,
}

impl IdempotentProducer {
    /// Obtains a producer id with InitProducerId (no transactional id).
    pub async fn init(conn: &mut Connection, topic: &str, partition: i32) -> Result<Self> {
        let (producer_id, producer_epoch) = conn.init_producer_id(None).await?;
        Ok(Self::new(topic, partition, producer_id, producer_epoch))
    }

    /// Producer state for an id and epoch obtained elsewhere; the next sequence is 0.
    pub fn new(topic: &str, partition: i32, producer_id: i64, producer_epoch: i16) -> Self {
        IdempotentProducer {
            topic: topic.to_owned(),
            partition,
            producer_id,
            producer_epoch,
            next_sequence: 0,
            options: ProduceOptions::default(),
        }
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The partition.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The producer id.
    pub fn producer_id(&self) -> i64 {
        self.producer_id
    }

    /// The producer epoch.
    pub fn producer_epoch(&self) -> i16 {
        self.producer_epoch
    }

    /// The sequence the next batch will start at.
    pub fn next_sequence(&self) -> i32 {
        self.next_sequence
    }

    /// Overrides the next sequence (e.g. to provoke OUT_OF_ORDER_SEQUENCE_NUMBER).
    pub fn set_next_sequence(&mut self, sequence: i32) {
        self.next_sequence = sequence;
    }

    /// Switches to a new producer id / epoch and restarts sequences at 0.
    pub fn reset(&mut self, producer_id: i64, producer_epoch: i16) {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.next_sequence = 0;
    }

    /// Encodes `records` with the next sequence numbers and advances the sequence.
    pub fn batch(&mut self, records: &[NewRecord]) -> Result<ProducerBatch> {
        let record_count = i32::try_from(records.len())
            .map_err(|_| Error::InvalidArgument("too many records for one batch".into()))?;
        let options = BatchOptions {
            compression: self.options.compression,
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            base_sequence: self.next_sequence,
            transactional: self.options.transactional_id.is_some(),
        };
        let bytes = encode_batch(records, &options)?;
        let batch = ProducerBatch {
            base_sequence: self.next_sequence,
            record_count,
            bytes,
        };
        self.next_sequence = increment_sequence(self.next_sequence, record_count);
        Ok(batch)
    }

    /// Sends (or re-sends) a prepared batch; returns its base offset.
    pub async fn send(&self, conn: &mut Connection, batch: &ProducerBatch) -> Result<i64> {
        conn.produce_batch(
            &self.topic,
            self.partition,
            batch.bytes.clone(),
            &self.options,
        )
        .await
    }

    /// [`IdempotentProducer::batch`] then one [`IdempotentProducer::send`].
    pub async fn produce(&mut self, conn: &mut Connection, records: &[NewRecord]) -> Result<i64> {
        let batch = self.batch(records)?;
        self.send(conn, &batch).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::decode_batches;

    #[test]
    fn sequences_wrap_to_zero() {
        assert_eq!(increment_sequence(0, 5), 5);
        assert_eq!(increment_sequence(i32::MAX - 1, 1), i32::MAX);
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
    }

    #[test]
    fn producer_assigns_consecutive_sequences() {
        let mut p = IdempotentProducer::new("t", 0, 1000, 2);
        let a = p
            .batch(&[NewRecord::new("a"), NewRecord::new("b")])
            .unwrap();
        let b = p.batch(&[NewRecord::new("c")]).unwrap();
        assert_eq!((a.base_sequence, a.record_count), (0, 2));
        assert_eq!((b.base_sequence, b.record_count), (2, 1));
        assert_eq!(p.next_sequence(), 3);
        let h = decode_batches(&b.bytes).unwrap()[0].header;
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (1000, 2, 2)
        );
        p.reset(1001, 0);
        assert_eq!(p.next_sequence(), 0);
        assert!(p.batch(&[]).is_err());
        assert_eq!(
            p.next_sequence(),
            0,
            "a failed batch does not use sequences"
        );
    }

    #[test]
    fn produce_options_map_to_batch_options() {
        let o = ProduceOptions {
            transactional_id: Some("tx".into()),
            producer_id: 5,
            producer_epoch: 1,
            base_sequence: 9,
            compression: Compression::Lz4,
            ..Default::default()
        };
        let b = o.batch_options();
        assert!(b.transactional);
        assert_eq!(
            (b.producer_id, b.producer_epoch, b.base_sequence),
            (5, 1, 9)
        );
        assert_eq!(b.compression, Compression::Lz4);
    }
}
