//! Prometheus metrics of a node: a registry of counters and histograms recorded where
//! events happen, a snapshot of the core's state taken at each scrape, and the HTTP
//! endpoint that serves both (`--metrics-listen`, see [`http`]).
//!
//! Recording is cheap: requests, latencies, connections, refusals, fsyncs and group-commit
//! sizes are atomics (no lock, no allocation). Bytes per topic sit in a map behind a mutex,
//! taken once per topic of a Produce or Fetch response; it holds at most [`TOPIC_SERIES_MAX`] topics
//! (bytes of others are not counted) and each scrape drops the topics that no longer
//! exist. Error counts per API and code sit in a map behind a mutex taken only for a
//! response that carries an error (at most API keys × error codes entries).
//!
//! What the core knows (partitions led, follower progress, groups, elections, the core's
//! own limits) is read at scrape time through [`NodeHandle::stats`]
//! (`myelin_core::broker::BrokerStats`), which never steps the broker: scraping changes
//! nothing the core decides. The simulator runs no metrics listener.
//!
//! The text format is written by hand ([`text`]): it is a few lines of rules, and a crate
//! would bring a global registry and more dependencies than the whole endpoint.

pub mod http;
mod response_errors;
pub mod text;

use crate::runtime::NodeHandle;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, ResponseKind};
use myelin_core::broker::BrokerStats;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use text::{HistogramValues, Kind, TextWriter};

/// Topics whose bytes in and out are counted at most (each one two series).
pub const TOPIC_SERIES_MAX: usize = 10_000;
/// Slots for API keys 0..=92 (Kafka's highest key in kafka-protocol 0.18).
const API_KEY_SLOTS: usize = 93;

/// Upper bounds of the request and fsync latency buckets, in seconds.
const LATENCY_BOUNDS_SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Upper bounds of the appends-per-sync buckets.
const APPENDS_BOUNDS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
];
/// Upper bounds of the bytes-per-sync buckets.
const BYTES_BOUNDS: &[f64] = &[
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
    268_435_456.0,
];

/// A histogram of fixed bounds; values are recorded in integer units (nanoseconds, bytes,
/// appends) and rendered divided by `units_per_value` (1e9 for seconds).
pub struct Histogram {
    bounds: &'static [f64],
    units_per_value: f64,
    buckets: Box<[AtomicU64]>,
    overflow: AtomicU64,
    sum_units: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64], units_per_value: f64) -> Self {
        Self {
            bounds,
            units_per_value,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            overflow: AtomicU64::new(0),
            sum_units: AtomicU64::new(0),
        }
    }

    fn seconds() -> Self {
        Self::new(LATENCY_BOUNDS_SECONDS, 1e9)
    }

    /// Records one value, in the histogram's integer unit.
    pub fn observe_units(&self, units: u64) {
        let value = units as f64 / self.units_per_value;
        match self.bounds.iter().position(|bound| value <= *bound) {
            Some(index) => self.buckets[index].fetch_add(1, Ordering::Relaxed),
            None => self.overflow.fetch_add(1, Ordering::Relaxed),
        };
        self.sum_units.fetch_add(units, Ordering::Relaxed);
    }

    pub fn observe_duration(&self, elapsed: Duration) {
        self.observe_units(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
    }

    fn count(&self) -> u64 {
        self.buckets
            .iter()
            .map(|bucket| bucket.load(Ordering::Relaxed))
            .sum::<u64>()
            + self.overflow.load(Ordering::Relaxed)
    }

    fn values(&self) -> HistogramValues<'static> {
        HistogramValues {
            bounds: self.bounds,
            bucket_counts: self
                .buckets
                .iter()
                .map(|bucket| bucket.load(Ordering::Relaxed))
                .collect(),
            overflow: self.overflow.load(Ordering::Relaxed),
            sum: self.sum_units.load(Ordering::Relaxed) as f64 / self.units_per_value,
        }
    }
}

/// A limit that refuses work, counted in `myelin_requests_refused_total{limit}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// A connection closed on accept: `connections_max` connections are open.
    ConnectionsMax,
    /// A connection closed: its frame was longer than `--frame-bytes-max`.
    FrameBytesMax,
}

struct ApiMetrics {
    requests: AtomicU64,
    latency: Histogram,
}

#[derive(Default, Clone, Copy)]
struct TopicBytes {
    produced: u64,
    fetched: u64,
}

/// The node's counters and histograms (see the module doc). One per node, shared.
pub struct Metrics {
    apis: Box<[ApiMetrics]>,
    /// (api key, error code) -> responses' error occurrences.
    errors: Mutex<BTreeMap<(i16, i16), u64>>,
    topics: Mutex<BTreeMap<String, TopicBytes>>,
    connections_open: AtomicI64,
    connections_accepted: AtomicU64,
    refused_connections_max: AtomicU64,
    refused_frame_bytes_max: AtomicU64,
    /// Frames that waited for `--request-bytes-budget` (counted by the budget itself).
    request_budget_waits: Arc<AtomicU64>,
    fsync: Histogram,
    group_commit_appends: Histogram,
    group_commit_bytes: Histogram,
    /// Bytes of every append written so far (the effect worker adds them).
    appended_bytes: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            apis: (0..API_KEY_SLOTS)
                .map(|_| ApiMetrics {
                    requests: AtomicU64::new(0),
                    latency: Histogram::seconds(),
                })
                .collect(),
            errors: Mutex::default(),
            topics: Mutex::default(),
            connections_open: AtomicI64::new(0),
            connections_accepted: AtomicU64::new(0),
            refused_connections_max: AtomicU64::new(0),
            refused_frame_bytes_max: AtomicU64::new(0),
            request_budget_waits: Arc::default(),
            fsync: Histogram::seconds(),
            group_commit_appends: Histogram::new(APPENDS_BOUNDS, 1.0),
            group_commit_bytes: Histogram::new(BYTES_BOUNDS, 1.0),
            appended_bytes: AtomicU64::new(0),
        }
    }
}

/// Decrements the open-connections gauge when the connection ends.
pub struct OpenConnection<'a>(&'a Metrics);

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// A request of `api_key` was answered (or ended its connection) after `elapsed`.
    pub fn record_request(&self, api_key: ApiKey, elapsed: Duration) {
        if let Some(api) = self.apis.get(api_key as i16 as usize) {
            api.requests.fetch_add(1, Ordering::Relaxed);
            api.latency.observe_duration(elapsed);
        }
    }

    /// An ApiVersions request of a version this node does not know was answered
    /// UNSUPPORTED_VERSION (the one request answered before it is decoded): counted as a
    /// request of ApiVersions and an error, as Kafka does.
    pub fn record_unsupported_api_versions(&self) {
        self.record_request(ApiKey::ApiVersions, Duration::ZERO);
        if let Ok(mut errors) = self.errors.lock() {
            let code = ResponseError::UnsupportedVersion.code();
            *errors
                .entry((ApiKey::ApiVersions as i16, code))
                .or_default() += 1;
        }
    }

    /// Counts the error codes a response carries (each occurrence: a Produce to three
    /// partitions that all fail counts three).
    pub fn record_response(&self, api_key: ApiKey, body: &ResponseKind) {
        let mut found: Option<BTreeMap<i16, u64>> = None;
        response_errors::for_each_error_code(body, |code| {
            if code != 0 {
                *found
                    .get_or_insert_with(BTreeMap::new)
                    .entry(code)
                    .or_default() += 1;
            }
        });
        let Some(found) = found else {
            return;
        };
        if let Ok(mut errors) = self.errors.lock() {
            for (code, count) in found {
                *errors.entry((api_key as i16, code)).or_default() += count;
            }
        }
    }

    /// Counts the record bytes of a Produce request per topic: of the partitions its
    /// `response` (built in request order) answers without error, or of all with acks=0
    /// (no response).
    pub fn record_produced(&self, request: &ProduceRequest, response: Option<&ProduceResponse>) {
        for (topic_index, topic) in request.topic_data.iter().enumerate() {
            let answers = response.map(|response| {
                response
                    .responses
                    .get(topic_index)
                    .map_or(&[][..], |answer| &answer.partition_responses[..])
            });
            let bytes: usize = topic
                .partition_data
                .iter()
                .enumerate()
                .filter(|(index, _)| {
                    answers.is_none_or(|answers| {
                        answers
                            .get(*index)
                            .is_some_and(|answer| answer.error_code == 0)
                    })
                })
                .map(|(_, partition)| {
                    partition
                        .records
                        .as_ref()
                        .map_or(0, |records| records.len())
                })
                .sum();
            if bytes > 0 {
                self.add_topic_bytes(topic.name.as_str(), |counts| {
                    counts.produced += bytes as u64;
                });
            }
        }
    }

    /// Counts record bytes a Fetch response carries for `topic`.
    pub fn record_fetched(&self, topic: &str, bytes: usize) {
        if bytes > 0 {
            self.add_topic_bytes(topic, |counts| counts.fetched += bytes as u64);
        }
    }

    fn add_topic_bytes(&self, topic: &str, add: impl FnOnce(&mut TopicBytes)) {
        let Ok(mut topics) = self.topics.lock() else {
            return;
        };
        if let Some(counts) = topics.get_mut(topic) {
            add(counts);
        } else if topics.len() < TOPIC_SERIES_MAX {
            add(topics.entry(topic.to_string()).or_default());
        }
    }

    /// A connection was accepted; the gauge goes down when the guard is dropped.
    pub fn connection_opened(&self) -> OpenConnection<'_> {
        self.connections_accepted.fetch_add(1, Ordering::Relaxed);
        self.connections_open.fetch_add(1, Ordering::Relaxed);
        OpenConnection(self)
    }

    pub fn refused(&self, limit: Limit) {
        let counter = match limit {
            Limit::ConnectionsMax => &self.refused_connections_max,
            Limit::FrameBytesMax => &self.refused_frame_bytes_max,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counter the Kafka listener's request budget counts its waits in.
    pub fn request_budget_waits(&self) -> Arc<AtomicU64> {
        self.request_budget_waits.clone()
    }

    /// The effect worker wrote an append of `bytes`.
    pub fn appended(&self, bytes: usize) {
        self.appended_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Bytes of every append written so far (a sync covers those written before it).
    pub fn appended_bytes(&self) -> u64 {
        self.appended_bytes.load(Ordering::Relaxed)
    }

    /// One group-commit sync took `elapsed` and made `appends` appends of `bytes` durable.
    pub fn synced(&self, elapsed: Duration, appends: u64, bytes: u64) {
        self.fsync.observe_duration(elapsed);
        self.group_commit_appends.observe_units(appends);
        self.group_commit_bytes.observe_units(bytes);
    }

    /// Syncs recorded so far.
    pub fn syncs(&self) -> u64 {
        self.fsync.count()
    }

    /// The exposition text: this registry and the core's `stats`. Topics absent from
    /// `stats.topics` lose their byte series here.
    pub fn render(&self, stats: &BrokerStats) -> String {
        let mut out = TextWriter::default();
        self.render_requests(&mut out);
        self.render_topics(&mut out, stats);
        render_core(&mut out, stats);
        self.render_connections(&mut out, stats);
        self.render_storage(&mut out);
        out.finish()
    }

    fn render_requests(&self, out: &mut TextWriter) {
        let served = || {
            self.apis.iter().enumerate().filter_map(|(key, api)| {
                let requests = api.requests.load(Ordering::Relaxed);
                (requests > 0).then(|| (api_name(key as i16), requests, api))
            })
        };
        out.family(
            "myelin_requests_total",
            "Kafka requests handled, by API.",
            Kind::Counter,
        );
        for (name, requests, _) in served() {
            out.sample("myelin_requests_total", &[("api", &name)], requests);
        }
        out.family(
            "myelin_request_errors_total",
            "Error codes in Kafka responses (each occurrence, e.g. per partition), by API and code.",
            Kind::Counter,
        );
        let errors = self
            .errors
            .lock()
            .map(|errors| errors.clone())
            .unwrap_or_default();
        for ((key, code), count) in errors {
            let error = ResponseError::try_from_code(code)
                .map_or_else(|| "None".to_string(), |error| format!("{error:?}"));
            let api = api_name(key);
            let code = code.to_string();
            let labels = [("api", api.as_str()), ("code", &code), ("error", &error)];
            out.sample("myelin_request_errors_total", &labels, count);
        }
        out.family(
            "myelin_request_duration_seconds",
            "Time from a request's decoding to its response being ready, by API.",
            Kind::Histogram,
        );
        for (name, _, api) in served() {
            out.histogram(
                "myelin_request_duration_seconds",
                &[("api", &name)],
                &api.latency.values(),
            );
        }
    }

    fn render_topics(&self, out: &mut TextWriter, stats: &BrokerStats) {
        let existing: BTreeSet<&str> = stats.topics.iter().map(String::as_str).collect();
        let topics = match self.topics.lock() {
            Ok(mut topics) => {
                topics.retain(|topic, _| existing.contains(topic.as_str()));
                topics.clone()
            }
            Err(_) => BTreeMap::new(),
        };
        out.family(
            "myelin_produced_bytes_total",
            "Record bytes received in Produce requests and appended without error (bytes in), by topic.",
            Kind::Counter,
        );
        for (topic, counts) in &topics {
            out.sample(
                "myelin_produced_bytes_total",
                &[("topic", topic)],
                counts.produced,
            );
        }
        out.family(
            "myelin_fetched_bytes_total",
            "Record bytes sent in Fetch responses (bytes out), by topic.",
            Kind::Counter,
        );
        for (topic, counts) in &topics {
            out.sample(
                "myelin_fetched_bytes_total",
                &[("topic", topic)],
                counts.fetched,
            );
        }
    }

    fn render_connections(&self, out: &mut TextWriter, stats: &BrokerStats) {
        out.family(
            "myelin_connections_open",
            "Kafka client connections open now.",
            Kind::Gauge,
        );
        out.sample(
            "myelin_connections_open",
            &[],
            self.connections_open.load(Ordering::Relaxed),
        );
        out.family(
            "myelin_connections_accepted_total",
            "Kafka client connections accepted.",
            Kind::Counter,
        );
        out.sample(
            "myelin_connections_accepted_total",
            &[],
            self.connections_accepted.load(Ordering::Relaxed),
        );
        out.family(
            "myelin_requests_refused_total",
            "Connections and requests refused or held back by a limit, by limit \
             (request_bytes_budget: requests read only after waiting for the budget).",
            Kind::Counter,
        );
        let counters = stats.counters;
        for (limit, count) in [
            (
                "connections_max",
                self.refused_connections_max.load(Ordering::Relaxed),
            ),
            (
                "frame_bytes_max",
                self.refused_frame_bytes_max.load(Ordering::Relaxed),
            ),
            (
                "request_bytes_budget",
                self.request_budget_waits.load(Ordering::Relaxed),
            ),
            ("waiting_produces_max", counters.waiting_produces_refused),
            ("parked_fetches_max", counters.parked_fetches_refused),
            ("waiting_deletes_max", counters.waiting_deletes_refused),
        ] {
            out.sample("myelin_requests_refused_total", &[("limit", limit)], count);
        }
    }

    fn render_storage(&self, out: &mut TextWriter) {
        out.family(
            "myelin_fsync_duration_seconds",
            "Duration of each group-commit sync (fsync of every dirty segment).",
            Kind::Histogram,
        );
        out.histogram("myelin_fsync_duration_seconds", &[], &self.fsync.values());
        out.family(
            "myelin_group_commit_appends",
            "Appends one group-commit sync made durable.",
            Kind::Histogram,
        );
        out.histogram(
            "myelin_group_commit_appends",
            &[],
            &self.group_commit_appends.values(),
        );
        out.family(
            "myelin_group_commit_bytes",
            "Bytes of the appends one group-commit sync made durable.",
            Kind::Histogram,
        );
        out.histogram(
            "myelin_group_commit_bytes",
            &[],
            &self.group_commit_bytes.values(),
        );
    }
}

/// What the core reported: leadership, replication and groups.
fn render_core(out: &mut TextWriter, stats: &BrokerStats) {
    render_count_and_sum(
        out,
        "topic",
        stats.topics.iter().map(String::as_str),
        stats.led.iter().map(|partition| {
            let under = u64::from(partition.under_replicated());
            (partition.partition.topic.as_str(), under)
        }),
        (
            "myelin_partitions_led",
            "Partitions this node leads, by topic (internal topics included).",
        ),
        (
            "myelin_under_replicated_partitions",
            "Partitions led here with a follower not heard from within the election timeout, by topic.",
        ),
    );
    out.family(
        "myelin_follower_lag_offsets",
        "Leader's high watermark minus the log end offset a follower has acknowledged (0 once it \
         reaches the high watermark), as the leader sees it.",
        Kind::Gauge,
    );
    for partition in &stats.led {
        let index = partition.partition.partition.to_string();
        for follower in &partition.followers {
            let follower_id = follower.node_id.to_string();
            // Kafka's replica lag: the high watermark less the follower's log end.
            let lag = (partition.high_watermark - follower.acknowledged_end_offset).max(0);
            out.sample(
                "myelin_follower_lag_offsets",
                &[
                    ("topic", &partition.partition.topic),
                    ("partition", &index),
                    ("follower", &follower_id),
                ],
                lag,
            );
        }
    }
    out.family(
        "myelin_leaderships_won_total",
        "Times a replica on this node won an election and became its partition's leader.",
        Kind::Counter,
    );
    out.sample(
        "myelin_leaderships_won_total",
        &[],
        stats.counters.leaderships_won,
    );
    render_count_and_sum(
        out,
        "state",
        myelin_core::groups::GroupState::ALL
            .iter()
            .map(|state| state.name()),
        stats
            .groups
            .iter()
            .map(|(state, members)| (state.name(), *members as u64)),
        (
            "myelin_consumer_groups",
            "Consumer groups this node coordinates, by state.",
        ),
        (
            "myelin_consumer_group_members",
            "Members of the consumer groups this node coordinates, by group state.",
        ),
    );
}

/// Two gauge families by one label from the same `(label value, amount)` items: how many
/// items have each value (`count`), and the sum of their amounts (`sum`); each a (name,
/// help) pair. Every value of `known` has a sample, 0 where no item has it, so that a
/// node that leads nothing or coordinates no group still reports its gauges, as Kafka's.
fn render_count_and_sum<'a>(
    out: &mut TextWriter,
    label: &str,
    known: impl Iterator<Item = &'a str>,
    items: impl Iterator<Item = (&'a str, u64)>,
    count: (&str, &str),
    sum: (&str, &str),
) {
    let mut tally: BTreeMap<&str, (u64, u64)> = known.map(|value| (value, (0, 0))).collect();
    for (value, amount) in items {
        let entry = tally.entry(value).or_default();
        entry.0 += 1;
        entry.1 += amount;
    }
    let first: fn(&(u64, u64)) -> u64 = |tallied| tallied.0;
    let second: fn(&(u64, u64)) -> u64 = |tallied| tallied.1;
    for ((name, help), pick) in [(count, first), (sum, second)] {
        out.family(name, help, Kind::Gauge);
        for (value, tallied) in &tally {
            out.sample(name, &[(label, value)], pick(tallied));
        }
    }
}

/// Kafka's name of an API key ("Produce", "Fetch", ...).
fn api_name(key: i16) -> String {
    match ApiKey::try_from(key) {
        Ok(api_key) => format!("{api_key:?}"),
        Err(()) => format!("Unknown{key}"),
    }
}

/// Renders a scrape: the core's snapshot, asked for through `handle` within `timeout`.
pub async fn scrape(handle: &NodeHandle, timeout: Duration) -> Option<String> {
    let stats = tokio::time::timeout(timeout, handle.stats())
        .await
        .ok()?
        .ok()?;
    Some(handle.metrics().render(&stats))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };
    use kafka_protocol::messages::ProduceResponse;
    use myelin_core::broker::LedPartition;
    use myelin_core::groups::GroupState;
    use myelin_core::metadata::TopicPartition;
    use myelin_core::replication::FollowerProgressView;

    fn stats(topics: &[&str]) -> BrokerStats {
        BrokerStats {
            led: vec![LedPartition {
                partition: TopicPartition::new("a", 0),
                high_watermark: 5,
                log_end_offset: 7,
                followers: vec![
                    FollowerProgressView {
                        node_id: 2,
                        acknowledged_end_offset: 7,
                        in_sync: true,
                    },
                    FollowerProgressView {
                        node_id: 3,
                        acknowledged_end_offset: 3,
                        in_sync: false,
                    },
                ],
            }],
            groups: vec![(GroupState::Stable, 2), (GroupState::Stable, 1)],
            topics: topics.iter().map(|topic| topic.to_string()).collect(),
            counters: myelin_core::broker::BrokerCounters {
                waiting_deletes_refused: 4,
                ..Default::default()
            },
        }
    }

    #[test]
    fn produced_bytes_count_the_partitions_answered_without_error() {
        use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
        use kafka_protocol::messages::TopicName;
        let records = |length: usize| {
            PartitionProduceData::default().with_records(Some(bytes::Bytes::from(vec![0; length])))
        };
        let request = ProduceRequest::default().with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName::from(
                kafka_protocol::protocol::StrBytes::from_static_str("a"),
            ))
            .with_partition_data(vec![records(10), records(100)])]);
        let answer = |code| PartitionProduceResponse::default().with_error_code(code);
        let response = ProduceResponse::default()
            .with_responses(vec![TopicProduceResponse::default()
                .with_partition_responses(vec![answer(0), answer(6)])]);
        let metrics = Metrics::default();
        metrics.record_produced(&request, Some(&response));
        let text = metrics.render(&stats(&["a"]));
        assert!(
            text.contains("myelin_produced_bytes_total{topic=\"a\"} 10\n"),
            "{text}"
        );
        metrics.record_produced(&request, None);
        let text = metrics.render(&stats(&["a"]));
        assert!(
            text.contains("myelin_produced_bytes_total{topic=\"a\"} 120\n"),
            "{text}"
        );
    }

    #[test]
    fn a_node_that_leads_nothing_and_coordinates_no_group_reports_zeros() {
        let idle = BrokerStats {
            topics: vec!["a".to_owned()],
            ..BrokerStats::default()
        };
        let text = Metrics::default().render(&idle);
        for line in [
            "myelin_partitions_led{topic=\"a\"} 0\n",
            "myelin_under_replicated_partitions{topic=\"a\"} 0\n",
            "myelin_consumer_groups{state=\"Empty\"} 0\n",
            "myelin_consumer_groups{state=\"Stable\"} 0\n",
            "myelin_consumer_group_members{state=\"PreparingRebalance\"} 0\n",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
    }

    #[test]
    fn render_reports_recorded_events_and_the_cores_state() {
        let metrics = Metrics::default();
        metrics.record_request(ApiKey::Produce, Duration::from_millis(2));
        metrics.record_request(ApiKey::Produce, Duration::from_secs(60));
        let failing = |code| PartitionProduceResponse::default().with_error_code(code);
        let response =
            ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
                .with_partition_responses(vec![failing(3), failing(3), failing(0)])]);
        metrics.record_response(ApiKey::Produce, &response.into());
        metrics.record_fetched("a", 10);
        metrics.record_fetched("gone", 10);
        metrics.synced(Duration::from_millis(1), 3, 300);
        let open = metrics.connection_opened();
        metrics.refused(Limit::FrameBytesMax);
        let text = metrics.render(&stats(&["a"]));
        for line in [
            "myelin_requests_total{api=\"Produce\"} 2\n",
            "myelin_request_duration_seconds_bucket{api=\"Produce\",le=\"0.0025\"} 1\n",
            "myelin_request_duration_seconds_bucket{api=\"Produce\",le=\"30\"} 1\n",
            "myelin_request_duration_seconds_bucket{api=\"Produce\",le=\"+Inf\"} 2\n",
            "myelin_request_duration_seconds_sum{api=\"Produce\"} 60.002\n",
            "myelin_request_duration_seconds_count{api=\"Produce\"} 2\n",
            "myelin_request_errors_total{api=\"Produce\",code=\"3\",error=\"UnknownTopicOrPartition\"} 2\n",
            "myelin_fetched_bytes_total{topic=\"a\"} 10\n",
            "myelin_partitions_led{topic=\"a\"} 1\n",
            "myelin_under_replicated_partitions{topic=\"a\"} 1\n",
            "myelin_follower_lag_offsets{topic=\"a\",partition=\"0\",follower=\"2\"} 0\n",
            // High watermark 5, acknowledged 3 (the log end, 7, is not what it lags).
            "myelin_follower_lag_offsets{topic=\"a\",partition=\"0\",follower=\"3\"} 2\n",
            "myelin_consumer_groups{state=\"Stable\"} 2\n",
            "myelin_consumer_group_members{state=\"Stable\"} 3\n",
            "myelin_connections_open 1\n",
            "myelin_requests_refused_total{limit=\"frame_bytes_max\"} 1\n",
            "myelin_requests_refused_total{limit=\"waiting_deletes_max\"} 4\n",
            "myelin_fsync_duration_seconds_count 1\n",
            "myelin_group_commit_appends_sum 3\n",
            "myelin_group_commit_bytes_sum 300\n",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
        // A topic that no longer exists loses its series.
        assert!(!text.contains("gone"), "{text}");
        drop(open);
        assert!(metrics
            .render(&stats(&["a"]))
            .contains("myelin_connections_open 0\n"));
    }
}
