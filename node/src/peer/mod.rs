//! The peer transport: how the nodes of a cluster send each other replication messages.
//!
//! The transport is generic over the message type `M` (anything serde can encode) and
//! knows nothing of replication. Every ordered pair of nodes has its own TCP connection:
//! node A dials node B to carry A's messages to B, and B dials A for B's messages to A, so
//! each connection has one writer of messages (the dialer) and one reader (the acceptor).
//!
//! Sending: [`PeerTransport::send`] never waits. Each peer has a bounded queue and one
//! outbound task that dials the peer, redials with exponential backoff (jittered) when the
//! connection fails, and writes the queued messages in batches. A message that finds its
//! queue full is dropped and counted: replication tolerates loss and retries, and a slow or
//! unreachable peer must not stall the node. Messages queued while the peer is unreachable
//! wait in the queue until it is back.
//!
//! Receiving: one accept loop, one task per accepted connection. Messages from every peer
//! arrive on one bounded channel as `(from, message)`. When the consumer falls behind, the
//! connection readers wait for room and backpressure reaches the dialers through TCP. A
//! consumer that stalls until the socket buffers fill makes a dialer's write time out (the
//! same limit as silence, below): the dialer redials, and what was in flight is lost.
//!
//! Wire format (see [`wire`]): the dialer first sends a 10-byte handshake: the magic
//! [`HANDSHAKE_MAGIC`], the [`PROTOCOL_VERSION`] (u16, big-endian) and its node id (i32,
//! big-endian). The acceptor checks all three (the node id must be a configured peer) and
//! answers with a `Ping` frame. Then each side sends frames: a u32 big-endian length and
//! that many bytes of a bincode-encoded `Frame<M>` (`Message(M)` or `Ping`). Only the
//! dialer sends `Message` frames; the acceptor sends `Ping`s back.
//!
//! Dead links: madsim holds bytes on a partitioned connection instead of failing it, and a
//! real network can lose a peer silently, so both ends send a `Ping` whenever they have sent
//! nothing for `idle_ping_interval_ms`, and close a connection on which nothing has arrived
//! for [`SILENT_PING_INTERVALS_MAX`] intervals (the dialer then redials). Writes are bounded
//! by the same limit, handshakes by `connect_timeout_ms`: every await on the network has a
//! timeout.
//!
//! Order: the messages of one pair arrive in the order they were sent, with gaps where a
//! connection failed. A reconnection never lets an older message overtake a newer one: a
//! new connection from a node replaces the previous one, which delivers nothing more.
//!
//! Bad input (a wrong handshake, an oversized frame, bytes that do not decode) closes that
//! connection with a logged reason and never affects the node or the other connections.
//! There is no authentication: the peer port belongs on a trusted network.
//!
//! Lifetime: the tasks run until every clone of the [`PeerTransport`] is dropped; then they
//! close their connections and the listener.

mod inbound;
mod outbound;
#[cfg(all(test, madsim))]
mod simulation_tests;
#[cfg(test)]
mod tests;
pub mod wire;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

pub use wire::{HANDSHAKE_MAGIC, PROTOCOL_VERSION};

/// A node's id in the cluster (Kafka's broker id).
pub type NodeId = i32;

/// Where a transport delivers what its peers send: `(from, message)`.
pub type PeerReceiver<M> = mpsc::Receiver<(NodeId, M)>;

/// Largest frame read or written by default.
pub const FRAME_BYTES_MAX_DEFAULT: usize = 64 * 1024 * 1024;
// A leader sends at least one whole batch per replication message: the node's peer frames
// carry the largest batch a topic may allow, with room to spare.
const _: () =
    assert!(FRAME_BYTES_MAX_DEFAULT >= 2 * myelin_core::metadata::MESSAGE_BYTES_MAX as usize);
/// Messages queued for one peer at most, by default; further ones are dropped.
pub const SEND_QUEUE_DEPTH_DEFAULT: usize = 1024;
pub const CONNECT_TIMEOUT_MS_DEFAULT: u64 = 1000;
/// Shortest and longest wait before redialling a peer, by default.
pub const RECONNECT_BACKOFF_MS_DEFAULT: (u64, u64) = (50, 1000);
pub const IDLE_PING_INTERVAL_MS_DEFAULT: u64 = 200;
/// A connection on which nothing arrives for this many ping intervals is closed as dead.
pub const SILENT_PING_INTERVALS_MAX: u64 = 5;
/// Received messages waiting for the consumer at most; connection readers wait beyond.
pub const RECEIVE_QUEUE_DEPTH: usize = 1024;

/// Settings of the peer transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// This node's id; it is sent in the handshake of every connection this node dials.
    pub node_id: NodeId,
    /// Where this node accepts peer connections (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Every node of the cluster and where it accepts peer connections. This node's own
    /// entry, if present, is skipped. Only these node ids may connect.
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// Largest frame read or written; a longer one announced by a peer closes the connection
    /// before anything is allocated, and a message that would encode longer is dropped.
    pub frame_bytes_max: usize,
    /// Messages queued for one peer at most; when full, new messages are dropped and
    /// counted.
    pub send_queue_depth: usize,
    /// Limit of a TCP connect, and of the handshake an accepted connection must send.
    pub connect_timeout_ms: u64,
    /// Shortest and longest wait before redialling (doubling after each failure, jittered,
    /// back to the shortest once a connection has been accepted).
    pub reconnect_backoff_ms: (u64, u64),
    /// A connection on which nothing was sent for this long gets a `Ping`; one on which
    /// nothing arrived for [`SILENT_PING_INTERVALS_MAX`] times this long is closed.
    pub idle_ping_interval_ms: u64,
}

impl PeerConfig {
    /// A configuration with the default limits and timeouts.
    pub fn new(node_id: NodeId, listen: SocketAddr, peers: BTreeMap<NodeId, SocketAddr>) -> Self {
        Self {
            node_id,
            listen,
            peers,
            frame_bytes_max: FRAME_BYTES_MAX_DEFAULT,
            send_queue_depth: SEND_QUEUE_DEPTH_DEFAULT,
            connect_timeout_ms: CONNECT_TIMEOUT_MS_DEFAULT,
            reconnect_backoff_ms: RECONNECT_BACKOFF_MS_DEFAULT,
            idle_ping_interval_ms: IDLE_PING_INTERVAL_MS_DEFAULT,
        }
    }

    /// Checks that the limits make sense (the transport would panic or spin otherwise).
    pub fn validate(&self) -> std::io::Result<()> {
        let invalid = |reason: String| {
            Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("invalid peer configuration: {reason}"),
            ))
        };
        let (backoff_min_ms, backoff_max_ms) = self.reconnect_backoff_ms;
        if self.frame_bytes_max == 0 || u32::try_from(self.frame_bytes_max).is_err() {
            return invalid(format!(
                "frame_bytes_max {} must be between 1 and {}",
                self.frame_bytes_max,
                u32::MAX
            ));
        }
        if self.send_queue_depth == 0 {
            return invalid("send_queue_depth must be at least 1".to_string());
        }
        if self.connect_timeout_ms == 0 {
            return invalid("connect_timeout_ms must be at least 1".to_string());
        }
        if backoff_min_ms == 0 || backoff_min_ms > backoff_max_ms {
            return invalid(format!(
                "reconnect_backoff_ms ({backoff_min_ms}, {backoff_max_ms}) needs 0 < min <= max"
            ));
        }
        if self.idle_ping_interval_ms == 0 {
            return invalid("idle_ping_interval_ms must be at least 1".to_string());
        }
        Ok(())
    }

    fn idle_ping_interval(&self) -> Duration {
        Duration::from_millis(self.idle_ping_interval_ms)
    }

    /// How long a connection may stay silent before it is closed; also the limit of a write.
    fn silence_timeout_ms(&self) -> u64 {
        self.idle_ping_interval_ms
            .saturating_mul(SILENT_PING_INTERVALS_MAX)
    }

    fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

/// Counters of a transport since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// Messages written and flushed to a peer's connection (a connection that fails after
    /// the flush may still lose them).
    pub sent: u64,
    /// Messages delivered to the receiver.
    pub received: u64,
    /// Messages given up on: refused by `send` (queue full, unknown peer, transport
    /// stopping), encoding longer than `frame_bytes_max`, or in a batch whose write failed.
    pub dropped: u64,
    /// Outbound connections established (TCP connected and handshake written).
    pub connects: u64,
    /// Outbound connections that ended (each is redialled).
    pub disconnects: u64,
    /// Inbound connections whose handshake was accepted.
    pub inbound_accepted: u64,
    /// Inbound connections closed for bad input: handshake, frame length or frame bytes.
    pub inbound_rejected: u64,
}

/// The live counters behind [`PeerStats`], shared by the transport's tasks.
#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
    dropped: AtomicU64,
    connects: AtomicU64,
    disconnects: AtomicU64,
    inbound_accepted: AtomicU64,
    inbound_rejected: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }

    fn snapshot(&self) -> PeerStats {
        PeerStats {
            sent: self.sent.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            connects: self.connects.load(Ordering::Relaxed),
            disconnects: self.disconnects.load(Ordering::Relaxed),
            inbound_accepted: self.inbound_accepted.load(Ordering::Relaxed),
            inbound_rejected: self.inbound_rejected.load(Ordering::Relaxed),
        }
    }
}

/// What the transport carries: a message serde encodes, which may name byte buffers inside
/// it that the encoder takes by reference instead of copying (`wire::encode_frame`).
pub trait PeerPayload: Serialize {
    /// Buffers in the message that bincode writes whole (a `Bytes` field): a replication
    /// append's batches. They are sent from where they are, shared, not copied.
    fn shared_bytes(&self) -> Vec<Bytes> {
        Vec::new()
    }
}

/// The node-to-node transport. Cloning is cheap; the tasks stop when the last clone drops.
pub struct PeerTransport<M> {
    shared: Arc<Shared<M>>,
}

struct Shared<M> {
    node_id: NodeId,
    local_addr: SocketAddr,
    /// The send queue of each peer, read by that peer's outbound task.
    queues: BTreeMap<NodeId, mpsc::Sender<M>>,
    counters: Arc<Counters>,
    /// Never sent on: dropping it (with the last transport) tells every task to stop.
    _shutdown: watch::Sender<()>,
}

impl<M> Clone for PeerTransport<M> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<M> std::fmt::Debug for PeerTransport<M> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PeerTransport")
            .field("node_id", &self.shared.node_id)
            .field("local_addr", &self.shared.local_addr)
            .field("peers", &self.shared.queues.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl<M> PeerTransport<M>
where
    M: PeerPayload + DeserializeOwned + Send + 'static,
{
    /// Binds the listener to `config.listen`, spawns the accept loop and one outbound task
    /// per peer (which dials, redials with backoff, and writes queued messages). Messages
    /// from any peer are delivered as `(from, message)` on the returned receiver.
    pub async fn start(config: PeerConfig) -> std::io::Result<(PeerTransport<M>, PeerReceiver<M>)> {
        config.validate()?;
        let listener = TcpListener::bind(config.listen).await?;
        Self::start_with_listener(config, listener)
    }

    /// [`start`](Self::start) on a listener bound by the caller (`config.listen` is then
    /// ignored), for example to learn every node's address before building the configs.
    /// Must be called inside the runtime.
    pub fn start_with_listener(
        config: PeerConfig,
        listener: TcpListener,
    ) -> std::io::Result<(PeerTransport<M>, PeerReceiver<M>)> {
        config.validate()?;
        let local_addr = listener.local_addr()?;
        let config = Arc::new(config);
        let counters = Arc::new(Counters::default());
        let (shutdown_sender, shutdown) = watch::channel(());
        let (deliveries, received) = mpsc::channel(RECEIVE_QUEUE_DEPTH);

        let mut queues = BTreeMap::new();
        for (&peer, &address) in &config.peers {
            if peer == config.node_id {
                continue;
            }
            let (queue_sender, queue) = mpsc::channel(config.send_queue_depth);
            queues.insert(peer, queue_sender);
            let link = outbound::OutboundLink {
                peer,
                address,
                config: config.clone(),
                queue,
                counters: counters.clone(),
                shutdown: shutdown.clone(),
            };
            tokio::spawn(link.run());
        }

        tracing::info!(
            node_id = config.node_id,
            address = %local_addr,
            peers = ?queues.keys().collect::<Vec<_>>(),
            "peer transport accepting connections"
        );
        let acceptor = inbound::Acceptor {
            config: config.clone(),
            deliveries,
            counters: counters.clone(),
            registry: Default::default(),
        };
        tokio::spawn(inbound::accept_loop(listener, Arc::new(acceptor), shutdown));

        let transport = PeerTransport {
            shared: Arc::new(Shared {
                node_id: config.node_id,
                local_addr,
                queues,
                counters,
                _shutdown: shutdown_sender,
            }),
        };
        Ok((transport, received))
    }
}

impl<M> PeerTransport<M> {
    /// Queues a message for a peer. Never waits; returns false if the message was dropped
    /// (the peer's queue is full, the peer is unknown or this node itself).
    pub fn send(&self, to: NodeId, message: M) -> bool {
        let queued = match self.shared.queues.get(&to) {
            Some(queue) => queue.try_send(message).is_ok(),
            None => {
                tracing::debug!(peer = to, "message for an unknown peer dropped");
                false
            }
        };
        if !queued {
            Counters::add(&self.shared.counters.dropped, 1);
        }
        queued
    }

    /// Where this node accepts peer connections.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.shared.node_id
    }

    /// The counters so far.
    pub fn stats(&self) -> PeerStats {
        self.shared.counters.snapshot()
    }
}
