//! The trace of a run: every core input and output of every node, plus the faults the
//! harness injected and the clients' operations, one JSON object a line:
//!
//! ```json
//! {"t_us":1234567,"node":2,"now_ms":1700000001234,"kind":"in","event":"Request { id: 7, ... }"}
//! ```
//! - `t_us`: simulated time since the start of the run, in microseconds;
//! - `node`: the node (1-based) for core events and node faults, else absent; `client`: the
//!   client for its operations;
//! - `now_ms`: the wall clock the core was given (it differs from `t_us` under clock skew;
//!   the core's monotonic clock is the node's time since it started);
//! - `kind`: from a node's core: `start` (the node recovered and builds its broker), `in`
//!   (an input to `Broker::step`), `out` (one of its outputs, in order), `persisted` (replica
//!   states made durable, one write for many partitions), `fail-stop`; from
//!   the harness: `scenario` (the first line: the scenario as JSON), `fault`,
//!   `fault-skipped`, `heal`, `crash`, `restart`, `node-exit`, `stuck`; `client` (an
//!   operation of a simulated client); `check` (a violation, when it is seen);
//! - `event`: the event's `Debug` text, except that record bytes are summarised as their
//!   length and CRC-32C.
//!
//! The digest is FNV-1a (64-bit) over every line, written or not: two runs with the same
//! digest took the same steps. `--trace FILE` writes the lines.

use myelin_core::api::{Input, Output, Request, StorageCommand};
use myelin_node::runtime::TraceEvent;
use serde::Serialize;
use std::fmt::Write as _;
use std::io::Write;

/// FNV-1a, 64-bit: a stable hash that needs no dependency and no seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fnv1a64(u64);

impl Default for Fnv1a64 {
    fn default() -> Self {
        Fnv1a64(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv1a64 {
    pub fn update(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    pub fn value(&self) -> u64 {
        self.0
    }
}

/// One trace line. See the module doc.
#[derive(Serialize)]
struct Line<'a> {
    t_us: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    now_ms: Option<i64>,
    kind: &'a str,
    event: &'a str,
}

/// Where a trace line comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Node(u8),
    Client(u8),
    Harness,
}

/// A run's trace: the digest, the count, and the optional file.
pub struct Trace {
    digest: Fnv1a64,
    events: u64,
    writer: Option<Box<dyn Write + Send>>,
    write_error: Option<String>,
    /// The last line, with its newline (for the timeline's click-through).
    last_line: String,
}

impl Trace {
    /// A trace that writes its lines to `writer`, if given.
    pub fn new(writer: Option<Box<dyn Write + Send>>) -> Self {
        Trace {
            digest: Fnv1a64::default(),
            events: 0,
            writer,
            write_error: None,
            last_line: String::new(),
        }
    }

    /// Adds one line.
    pub fn line(
        &mut self,
        t_us: u64,
        source: Source,
        now_ms: Option<i64>,
        kind: &str,
        event: &str,
    ) {
        let (node, client) = match source {
            Source::Node(node) => (Some(node), None),
            Source::Client(client) => (None, Some(client)),
            Source::Harness => (None, None),
        };
        let line = Line {
            t_us,
            node,
            client,
            now_ms,
            kind,
            event,
        };
        let mut text = serde_json::to_string(&line).expect("a trace line always serializes");
        text.push('\n');
        self.digest.update(text.as_bytes());
        self.events += 1;
        if let Some(writer) = &mut self.writer {
            if let Err(error) = writer.write_all(text.as_bytes()) {
                self.write_error.get_or_insert(error.to_string());
                self.writer = None;
            }
        }
        self.last_line = text;
    }

    /// The last line added, with its newline (empty before the first).
    pub fn last_line(&self) -> &str {
        &self.last_line
    }

    /// Adds a core event of `node`.
    pub fn core_event(&mut self, t_us: u64, node: u8, now_ms: i64, event: &TraceEvent<'_>) {
        let (kind, text) = describe_core_event(event);
        self.line(t_us, Source::Node(node), Some(now_ms), kind, &text);
    }

    pub fn digest(&self) -> u64 {
        self.digest.value()
    }

    pub fn events(&self) -> u64 {
        self.events
    }

    /// Flushes the file; returns the first write error, if any.
    pub fn finish(&mut self) -> Result<(), String> {
        if let Some(writer) = &mut self.writer {
            if let Err(error) = writer.flush() {
                self.write_error.get_or_insert(error.to_string());
            }
        }
        self.writer = None;
        match &self.write_error {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }
}

/// Record bytes as the trace shows them.
fn bytes_summary(bytes: &[u8]) -> String {
    format!("{} bytes crc32c {:08x}", bytes.len(), crc32c::crc32c(bytes))
}

/// The kind and text of a core event. See the module doc.
pub fn describe_core_event(event: &TraceEvent<'_>) -> (&'static str, String) {
    match event {
        TraceEvent::Started { node_id, recovered } => {
            let mut text = format!("Started {{ node_id: {node_id}, recovered: [");
            for (index, partition) in recovered.iter().enumerate() {
                let batches: usize = partition.segments.iter().map(|s| s.batches.len()).sum();
                let end = partition
                    .segments
                    .iter()
                    .rev()
                    .find_map(|s| s.batches.last())
                    .map_or(0, |batch| {
                        batch.header.base_offset + batch.header.offset_count()
                    });
                let bases: Vec<i64> = partition.segments.iter().map(|s| s.base_offset).collect();
                if index > 0 {
                    text.push_str(", ");
                }
                let _ = write!(
                    text,
                    "{} {{ segments: {bases:?}, batches: {batches}, end_offset: {end} }}",
                    partition.partition
                );
            }
            text.push_str("] }");
            ("start", text)
        }
        TraceEvent::Input(input) => ("in", describe_input(input)),
        TraceEvent::Output(output) => ("out", describe_output(output)),
        TraceEvent::FailStop(error) => ("fail-stop", error.to_string()),
        TraceEvent::ReplicaStatesPersisted(states) => {
            let states: Vec<String> = states
                .iter()
                .map(|(partition, state)| format!("{partition} {state:?}"))
                .collect();
            ("persisted", states.join(", "))
        }
    }
}

fn describe_input(input: &Input) -> String {
    match input {
        Input::Request {
            id,
            request:
                Request::Produce {
                    acks,
                    transactional_id,
                    partitions,
                    ..
                },
        } => {
            let partitions: Vec<String> = partitions
                .iter()
                .map(|p| format!("{}: {}", p.partition, bytes_summary(&p.records)))
                .collect();
            format!(
                "Request {{ id: {id}, request: Produce {{ acks: {acks:?}, transactional_id: {transactional_id:?}, partitions: [{}] }} }}",
                partitions.join(", ")
            )
        }
        other => format!("{other:?}"),
    }
}

fn describe_output(output: &Output) -> String {
    match output {
        Output::Storage(StorageCommand::Append {
            partition,
            batch,
            bytes,
            sequence,
        }) => format!(
            "Storage(Append {{ partition: {partition}, batch: {batch:?}, bytes: {}, sequence: {sequence} }})",
            bytes_summary(bytes)
        ),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_its_reference_values() {
        let mut hash = Fnv1a64::default();
        assert_eq!(hash.value(), 0xcbf2_9ce4_8422_2325);
        hash.update(b"a");
        assert_eq!(hash.value(), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn lines_are_json_and_feed_the_digest() {
        let mut trace = Trace::new(Some(Box::new(Vec::new())));
        trace.line(5, Source::Node(2), Some(9), "in", "Tick \"quoted\"");
        let first = trace.digest();
        trace.line(6, Source::Harness, None, "fault", "crash node 2");
        assert_ne!(first, trace.digest());
        assert_eq!(trace.events(), 2);
        let mut other = Trace::new(None);
        other.line(5, Source::Node(2), Some(9), "in", "Tick \"quoted\"");
        assert_eq!(
            other.digest(),
            first,
            "writing or not does not change the digest"
        );
        assert!(trace.finish().is_ok());
    }
}
