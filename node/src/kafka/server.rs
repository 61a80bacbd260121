//! The Kafka listener: the accept loop and the loop of each client connection.
//!
//! Each connection runs two halves in one task. The reader reads frames, decodes them and
//! queues one pending reply per request; the writer drives those replies concurrently but
//! sends them strictly in request order, as Kafka clients require (librdkafka keeps up to
//! five requests in flight). Replies are first polled in request order, and a reply's first
//! poll is what hands its request to the core, so the core sees a connection's requests in
//! the order they were sent (idempotent producers pipeline batches whose sequence numbers
//! must arrive in order), while a long-polling Fetch does not hold back the requests behind
//! it from reaching the core.
//!
//! Limits: `connections_max` connections, `IN_FLIGHT_REQUESTS_MAX` unanswered requests per
//! connection (the reader stops reading beyond that), `frame_bytes_max` per frame,
//! `request_bytes_budget` bytes of requests read and not yet answered across every
//! connection (readers wait while it is spent: [`RequestBudget`]), and
//! `request_timeout_ms` for a started frame to arrive and for a response to be written.
//! Bad input closes only its connection, with a logged reason; earlier requests still get
//! their responses first.

use crate::frame::{write_frame, SplicedFrame};
use crate::kafka::codec::{
    decode_frame, encode_unsupported_api_versions, read_frame, DecodedFrame, FrameError,
    RequestBudget,
};
use crate::kafka::dispatch::{respond, ConnectionContext, HandlerError};
use crate::kafka::topic_ids::TopicIdCache;
use crate::metrics::Limit;
use crate::runtime::NodeHandle;
use kafka_protocol::messages::ApiKey;
use myelin_core::metadata::TopicConfig;
use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};

/// Kafka's default `socket.request.max.bytes`.
pub const FRAME_BYTES_MAX_DEFAULT: usize = 100 * 1024 * 1024;
/// Kafka's default `request.timeout.ms` on the client side.
pub const REQUEST_TIMEOUT_MS_DEFAULT: u64 = 30_000;
pub const CONNECTIONS_MAX_DEFAULT: usize = 4096;
/// Bytes of requests read and not yet answered, across every connection, by default.
pub const REQUEST_BYTES_BUDGET_DEFAULT: usize = 256 * 1024 * 1024;
/// Requests read from one connection and not yet answered, at most.
const IN_FLIGHT_REQUESTS_MAX: usize = 64;
/// Pause after a failed accept (for example out of file descriptors) before the next one.
const ACCEPT_RETRY_DELAY_MS: u64 = 100;
/// Read buffer of each connection.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Settings of the Kafka listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaListenerConfig {
    /// Largest request frame accepted; a longer one closes the connection unread.
    pub frame_bytes_max: usize,
    /// Time for a started request frame to arrive whole, and for a response to be written.
    pub request_timeout_ms: u64,
    /// Connections served at once; further ones are closed on accept.
    pub connections_max: usize,
    /// Bytes of requests read and not yet answered, across every connection; reading
    /// pauses while they are spent (one request larger than it is read alone).
    pub request_bytes_budget: usize,
    /// The node's topic defaults, which DescribeConfigs names as the broker settings a
    /// topic key falls back to (its synonyms).
    pub topic_defaults: TopicConfig,
    /// This node's id: the broker a DescribeConfigs BROKER resource must name.
    pub node_id: i32,
}

impl Default for KafkaListenerConfig {
    fn default() -> Self {
        Self {
            frame_bytes_max: FRAME_BYTES_MAX_DEFAULT,
            request_timeout_ms: REQUEST_TIMEOUT_MS_DEFAULT,
            connections_max: CONNECTIONS_MAX_DEFAULT,
            request_bytes_budget: REQUEST_BYTES_BUDGET_DEFAULT,
            topic_defaults: TopicConfig::default(),
            node_id: 1,
        }
    }
}

/// Accepts Kafka clients forever, one task per connection. Accept errors are logged and
/// retried; nothing a client sends can end this loop.
pub async fn serve(
    listener: TcpListener,
    handle: NodeHandle,
    config: KafkaListenerConfig,
) -> std::io::Result<()> {
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, ?config, "Kafka listener accepting connections");
    }
    let config = Arc::new(config);
    let connection_slots = Arc::new(Semaphore::new(config.connections_max));
    let budget = RequestBudget::new(config.request_bytes_budget)
        .counting_waits_in(handle.metrics().request_budget_waits());
    // Connections are numbered in the order they are accepted: the transaction coordinator
    // tells a request delayed on a connection its client gave up on from the retry on a
    // newer one (see myelin_core::transactions).
    let mut connections_accepted: u64 = 0;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accepting a Kafka connection failed; retrying");
                tokio::time::sleep(Duration::from_millis(ACCEPT_RETRY_DELAY_MS)).await;
                continue;
            }
        };
        let Ok(slot) = connection_slots.clone().try_acquire_owned() else {
            handle.metrics().refused(Limit::ConnectionsMax);
            tracing::warn!(
                %peer,
                reason = "connection limit reached",
                connections_max = config.connections_max,
                "closing Kafka connection"
            );
            drop(stream);
            continue;
        };
        let handle = handle.clone();
        let config = config.clone();
        let budget = budget.clone();
        connections_accepted += 1;
        let connection_id = connections_accepted;
        tokio::spawn(async move {
            let metrics_handle = handle.clone();
            let open = metrics_handle.metrics().connection_opened();
            serve_connection(stream, peer, connection_id, handle, &config, &budget).await;
            drop(open);
            drop(slot);
        });
    }
}

/// A reply being computed: the encoded response frame, or `None` when none is due.
type PendingReply =
    Pin<Box<dyn Future<Output = Result<Option<SplicedFrame>, HandlerError>> + Send>>;

/// Why the writer half ended the connection.
#[derive(Debug, Error)]
enum WriterError {
    #[error(transparent)]
    Handler(#[from] HandlerError),
    #[error("writing a response failed: {0}")]
    Write(std::io::Error),
    #[error("writing a response took longer than {timeout_ms} ms")]
    WriteTimeout { timeout_ms: u64 },
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    connection_id: u64,
    handle: NodeHandle,
    config: &KafkaListenerConfig,
    budget: &RequestBudget,
) {
    tracing::debug!(%peer, "Kafka connection accepted");
    // Small responses must not wait for Nagle's algorithm.
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%peer, %error, "could not disable Nagle's algorithm");
    }
    let (read_half, write_half) = tokio::io::split(stream);
    let context = Arc::new(ConnectionContext {
        handle,
        peer,
        connection_id,
        topic_ids: TopicIdCache::default(),
        topic_defaults: config.topic_defaults.clone(),
        node_id: config.node_id,
    });
    // Capacity 1: the writer's in-flight set is the real bound; this only hands over.
    let (replies_sender, replies) = mpsc::channel(1);
    let reader = read_requests(
        BufReader::with_capacity(READ_BUFFER_BYTES, read_half),
        replies_sender,
        context,
        config,
        budget,
    );
    let writer = write_responses(write_half, replies, config.request_timeout_ms);
    tokio::pin!(writer);
    let reader_finished = tokio::select! {
        () = reader => true,
        outcome = &mut writer => {
            log_writer_outcome(peer, outcome);
            false
        }
    };
    if reader_finished {
        // The reader has stopped (end of stream or a bad request): answer what was read
        // before it, then close.
        log_writer_outcome(peer, writer.await);
    }
    tracing::debug!(%peer, "Kafka connection closed");
}

fn log_writer_outcome(peer: SocketAddr, outcome: Result<(), WriterError>) {
    match outcome {
        Ok(()) => {}
        Err(WriterError::Handler(HandlerError::NodeStopped)) => {
            tracing::info!(%peer, reason = "node shutting down", "closing Kafka connection");
        }
        Err(error) => tracing::warn!(%peer, reason = %error, "closing Kafka connection"),
    }
}

/// Reads and decodes requests until the stream ends or a bad frame or request arrives.
async fn read_requests<R: AsyncRead + Unpin>(
    mut reader: R,
    replies: mpsc::Sender<PendingReply>,
    context: Arc<ConnectionContext>,
    config: &KafkaListenerConfig,
    budget: &RequestBudget,
) {
    let peer = context.peer;
    let request_timeout = Duration::from_millis(config.request_timeout_ms);
    loop {
        let read = read_frame(&mut reader, config.frame_bytes_max, request_timeout, budget);
        let (frame, permit) = match read.await {
            Ok(Some(read)) => read,
            Ok(None) => return,
            Err(error) => {
                if matches!(error, FrameError::TooLong { .. }) {
                    context.handle.metrics().refused(Limit::FrameBytesMax);
                }
                tracing::warn!(%peer, reason = %error, "closing Kafka connection");
                return;
            }
        };
        let pending: PendingReply = match decode_frame(frame) {
            Ok(DecodedFrame::Request(request)) => {
                let context = context.clone();
                Box::pin(async move {
                    let api_key = request.api_key;
                    let started = tokio::time::Instant::now();
                    let reply = respond(&context, *request).await;
                    context
                        .handle
                        .metrics()
                        .record_request(api_key, started.elapsed());
                    // The request's bytes are released once it is answered.
                    drop(permit);
                    reply
                })
            }
            Ok(DecodedFrame::UnsupportedApiVersions {
                correlation_id,
                version,
            }) => {
                tracing::debug!(%peer, version, "ApiVersions of an unknown version; answering UNSUPPORTED_VERSION");
                context.handle.metrics().record_unsupported_api_versions();
                let reply = encode_unsupported_api_versions(correlation_id)
                    .map(Some)
                    .map_err(|error| HandlerError::Encode {
                        api_key: ApiKey::ApiVersions,
                        version: 0,
                        reason: error.to_string(),
                    });
                Box::pin(std::future::ready(reply))
            }
            Err(error) => {
                tracing::warn!(%peer, reason = %error, "closing Kafka connection");
                return;
            }
        };
        if replies.send(pending).await.is_err() {
            return; // The writer has ended the connection.
        }
    }
}

/// Drives pending replies and writes their frames in request order, until the reader is
/// done and every reply is out, or a reply or a write fails.
async fn write_responses<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut replies: mpsc::Receiver<PendingReply>,
    write_timeout_ms: u64,
) -> Result<(), WriterError> {
    let write_timeout = Duration::from_millis(write_timeout_ms);
    let mut in_flight = InFlightReplies::default();
    let mut reader_done = false;
    loop {
        if reader_done && in_flight.is_empty() {
            return Ok(());
        }
        tokio::select! {
            received = replies.recv(), if !reader_done && in_flight.len() < IN_FLIGHT_REQUESTS_MAX => {
                match received {
                    Some(reply) => in_flight.push(reply),
                    None => reader_done = true,
                }
            }
            reply = in_flight.next_in_order(), if !in_flight.is_empty() => {
                let Some(frame) = reply? else {
                    continue; // acks=0: nothing to send.
                };
                let write = async {
                    write_frame(&mut writer, &frame).await?;
                    // Simulated TCP holds bytes until a flush; real TCP ignores it.
                    writer.flush().await
                };
                match tokio::time::timeout(write_timeout, write).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => return Err(WriterError::Write(error)),
                    Err(_elapsed) => return Err(WriterError::WriteTimeout { timeout_ms: write_timeout_ms }),
                }
            }
        }
    }
}

/// Replies of one connection in request order; all are driven at once, the oldest leaves
/// first. Each poll pass goes front to back, so every reply is first polled after all the
/// replies before it (see the module documentation for why that matters).
#[derive(Default)]
struct InFlightReplies {
    slots: VecDeque<Slot>,
}

enum Slot {
    Pending(PendingReply),
    Done(Result<Option<SplicedFrame>, HandlerError>),
}

impl InFlightReplies {
    fn push(&mut self, reply: PendingReply) {
        self.slots.push_back(Slot::Pending(reply));
    }

    fn len(&self) -> usize {
        self.slots.len()
    }

    fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Waits for the oldest reply. Pending forever when empty (callers guard on that).
    fn next_in_order(
        &mut self,
    ) -> impl Future<Output = Result<Option<SplicedFrame>, HandlerError>> + '_ {
        std::future::poll_fn(move |context| self.poll_next_in_order(context))
    }

    fn poll_next_in_order(
        &mut self,
        context: &mut Context<'_>,
    ) -> Poll<Result<Option<SplicedFrame>, HandlerError>> {
        for slot in self.slots.iter_mut() {
            if let Slot::Pending(reply) = slot {
                if let Poll::Ready(output) = reply.as_mut().poll(context) {
                    *slot = Slot::Done(output);
                }
            }
        }
        match self.slots.front() {
            Some(Slot::Done(_)) => match self.slots.pop_front() {
                Some(Slot::Done(output)) => Poll::Ready(output),
                _ => Poll::Pending,
            },
            _ => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::sync::Mutex;
    use tokio::sync::oneshot;

    fn frame_of(text: &'static [u8]) -> SplicedFrame {
        SplicedFrame::from(Bytes::from_static(text))
    }

    /// A reply that records when it was first polled and finishes when told to.
    fn controlled_reply(
        name: &'static str,
        first_polls: Arc<Mutex<Vec<&'static str>>>,
        finish: oneshot::Receiver<()>,
    ) -> PendingReply {
        let mut recorded = false;
        let mut finish = finish;
        Box::pin(std::future::poll_fn(move |context| {
            if !recorded {
                recorded = true;
                first_polls.lock().unwrap().push(name);
            }
            match Pin::new(&mut finish).poll(context) {
                Poll::Ready(_) => Poll::Ready(Ok(Some(frame_of(name.as_bytes())))),
                Poll::Pending => Poll::Pending,
            }
        }))
    }

    #[tokio::test]
    async fn replies_leave_in_request_order_and_start_in_request_order() {
        let first_polls = Arc::new(Mutex::new(Vec::new()));
        let (finish_slow, slow) = oneshot::channel();
        let (finish_fast, fast) = oneshot::channel();
        let mut in_flight = InFlightReplies::default();
        in_flight.push(controlled_reply("slow", first_polls.clone(), slow));
        in_flight.push(controlled_reply("fast", first_polls.clone(), fast));
        in_flight.push(Box::pin(std::future::ready(Ok(None))));

        // The second reply finishes first, but nothing leaves before the first.
        finish_fast.send(()).unwrap();
        let waited =
            tokio::time::timeout(Duration::from_millis(20), in_flight.next_in_order()).await;
        assert!(waited.is_err(), "the oldest reply is still pending");
        assert_eq!(*first_polls.lock().unwrap(), vec!["slow", "fast"]);

        finish_slow.send(()).unwrap();
        assert_eq!(
            in_flight.next_in_order().await.unwrap(),
            Some(frame_of(b"slow"))
        );
        assert_eq!(
            in_flight.next_in_order().await.unwrap(),
            Some(frame_of(b"fast"))
        );
        assert_eq!(in_flight.next_in_order().await.unwrap(), None);
        assert!(in_flight.is_empty());
    }

    #[tokio::test]
    async fn the_writer_answers_everything_read_before_the_reader_stopped() {
        let (client, server) = tokio::io::duplex(1024);
        let (sender, receiver) = mpsc::channel(1);
        let writer = tokio::spawn(write_responses(server, receiver, 1000));
        // The middle reply stands for an acks=0 produce: nothing is written for it.
        for frame in [Some(&b"one"[..]), None, Some(b"two")] {
            let reply: PendingReply = Box::pin(std::future::ready(Ok(frame.map(frame_of))));
            sender.send(reply).await.unwrap();
        }
        drop(sender);
        writer.await.unwrap().unwrap();
        let mut received = Vec::new();
        let mut client = client;
        tokio::io::AsyncReadExt::read_to_end(&mut client, &mut received)
            .await
            .unwrap();
        assert_eq!(received, b"onetwo");
    }
}
