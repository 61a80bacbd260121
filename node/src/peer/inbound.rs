//! The inbound side: the accept loop and the task of each accepted peer connection.
//!
//! An accepted connection must send a valid handshake within `connect_timeout_ms` from a
//! configured peer; the acceptor answers with a `Ping` and from then on reads `Message`
//! frames, delivers them tagged with the handshake's node id, and sends a `Ping` every idle
//! interval so that the dialer can tell the link is alive.
//!
//! One connection per dialer is current: a newer connection from the same node id replaces
//! the older, which is closed and delivers nothing more. The check and the delivery happen
//! under one lock, so that no message of a replaced connection lands after a message of
//! the connection that replaced it.

use super::wire::{self, Frame, WireError};
use super::{Counters, NodeId, PeerConfig};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

/// Pause after a failed accept (for example out of file descriptors) before the next one.
const ACCEPT_RETRY_DELAY_MS: u64 = 100;
/// Read buffer of each inbound connection.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// What every inbound connection task shares.
pub(super) struct Acceptor<M> {
    pub(super) config: Arc<PeerConfig>,
    pub(super) deliveries: mpsc::Sender<(NodeId, M)>,
    pub(super) counters: Arc<Counters>,
    pub(super) registry: Mutex<Registry>,
}

/// The current inbound connection of each peer.
#[derive(Debug, Default)]
pub(super) struct Registry {
    next_generation: u64,
    /// Generation of the current connection, and the sender whose drop closes it.
    current: BTreeMap<NodeId, (u64, oneshot::Sender<()>)>,
}

impl Registry {
    /// Makes a new connection from `peer` the current one; returns its generation and what
    /// tells it that it was replaced in turn. The previous one is told now.
    fn register(&mut self, peer: NodeId) -> (u64, oneshot::Receiver<()>) {
        self.next_generation += 1;
        let (replaced_sender, replaced) = oneshot::channel();
        self.current
            .insert(peer, (self.next_generation, replaced_sender));
        (self.next_generation, replaced)
    }

    fn is_current(&self, peer: NodeId, generation: u64) -> bool {
        self.current
            .get(&peer)
            .is_some_and(|(current, _)| *current == generation)
    }

    fn unregister(&mut self, peer: NodeId, generation: u64) {
        if self.is_current(peer, generation) {
            self.current.remove(&peer);
        }
    }
}

/// Why an accepted connection ended, when nothing was wrong with it.
enum InboundEnd {
    ClosedByPeer,
    Replaced,
    ReceiverDropped,
    Stopped,
}

/// Accepts peer connections until the transport is dropped, one task per connection.
pub(super) async fn accept_loop<M: DeserializeOwned + Send + 'static>(
    listener: TcpListener,
    acceptor: Arc<Acceptor<M>>,
    mut shutdown: watch::Receiver<()>,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, remote)) => {
                tokio::spawn(serve_connection(
                    stream,
                    remote,
                    acceptor.clone(),
                    shutdown.clone(),
                ));
            }
            Err(error) => {
                tracing::warn!(%error, "accepting a peer connection failed; retrying");
                tokio::select! {
                    biased;
                    _ = shutdown.changed() => return,
                    () = tokio::time::sleep(Duration::from_millis(ACCEPT_RETRY_DELAY_MS)) => {}
                }
            }
        }
    }
}

async fn serve_connection<M: DeserializeOwned + Send + 'static>(
    stream: TcpStream,
    remote: SocketAddr,
    acceptor: Arc<Acceptor<M>>,
    mut shutdown: watch::Receiver<()>,
) {
    let config = &acceptor.config;
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%remote, %error, "could not disable Nagle's algorithm");
    }
    let (read_half, write_half) = tokio::io::split(stream);
    let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, read_half);
    let handshake = tokio::select! {
        biased;
        _ = shutdown.changed() => return,
        handshake = wire::read_handshake(&mut reader, config.connect_timeout_ms) => handshake,
    };
    let peer = match handshake.and_then(|peer| check_peer(config, peer)) {
        Ok(peer) => peer,
        Err(error) => {
            Counters::add(&acceptor.counters.inbound_rejected, 1);
            tracing::warn!(%remote, reason = %error, "refusing peer connection");
            return;
        }
    };
    let (generation, mut replaced) = lock(&acceptor.registry).register(peer);
    Counters::add(&acceptor.counters.inbound_accepted, 1);
    tracing::debug!(peer, %remote, "peer connection accepted");

    let ended = tokio::select! {
        biased;
        _ = shutdown.changed() => Ok(InboundEnd::Stopped),
        _ = &mut replaced => Ok(InboundEnd::Replaced),
        ended = read_messages(&mut reader, peer, generation, &acceptor) => ended,
        error = send_pings(write_half, config) => Err(error),
    };
    lock(&acceptor.registry).unregister(peer, generation);
    match ended {
        Ok(InboundEnd::ClosedByPeer) => {
            tracing::debug!(peer, %remote, "peer closed its connection")
        }
        Ok(InboundEnd::Replaced) => {
            tracing::debug!(peer, %remote, "peer connection replaced by a newer one")
        }
        Ok(InboundEnd::ReceiverDropped) => {
            tracing::debug!(peer, %remote, "no receiver for peer messages; closing")
        }
        Ok(InboundEnd::Stopped) => {}
        Err(error) if error.is_bad_input() => {
            Counters::add(&acceptor.counters.inbound_rejected, 1);
            tracing::warn!(peer, %remote, reason = %error, "closing peer connection");
        }
        Err(error) => {
            tracing::info!(peer, %remote, reason = %error, "peer connection lost")
        }
    }
}

/// The handshake's node id must be a configured peer other than this node.
fn check_peer(config: &PeerConfig, peer: NodeId) -> Result<NodeId, WireError> {
    if peer == config.node_id || !config.peers.contains_key(&peer) {
        return Err(WireError::UnknownNode { node_id: peer });
    }
    Ok(peer)
}

fn lock(registry: &Mutex<Registry>) -> std::sync::MutexGuard<'_, Registry> {
    // The registry holds no invariant a panic could break halfway.
    registry.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Reads frames and delivers the messages, waiting for room in the receiver's channel.
async fn read_messages<M: DeserializeOwned, R: AsyncRead + Unpin>(
    reader: &mut R,
    peer: NodeId,
    generation: u64,
    acceptor: &Acceptor<M>,
) -> Result<InboundEnd, WireError> {
    let config = &acceptor.config;
    loop {
        let Some(frame) =
            wire::read_frame(reader, config.frame_bytes_max, config.silence_timeout_ms()).await?
        else {
            return Ok(InboundEnd::ClosedByPeer);
        };
        let message = match wire::decode_frame::<M>(&frame)? {
            Frame::Ping => continue,
            Frame::Message(message) => message,
        };
        let Ok(permit) = acceptor.deliveries.reserve().await else {
            return Ok(InboundEnd::ReceiverDropped);
        };
        {
            let registry = lock(&acceptor.registry);
            if !registry.is_current(peer, generation) {
                return Ok(InboundEnd::Replaced);
            }
            permit.send((peer, message));
        }
        Counters::add(&acceptor.counters.received, 1);
    }
}

/// Sends a ping at once (the handshake's acknowledgement), then every idle interval.
/// Returns only when a write fails.
async fn send_pings<W: AsyncWrite + Unpin>(mut writer: W, config: &PeerConfig) -> WireError {
    let mut ping = wire::frame_buffer();
    if let Err(error) =
        wire::encode_frame::<()>(&mut ping, &Frame::Ping, Vec::new(), config.frame_bytes_max)
    {
        return error;
    }
    let ping = ping.finish();
    loop {
        if let Err(error) = wire::write_flush(&mut writer, &ping, config.silence_timeout_ms()).await
        {
            return error;
        }
        tokio::time::sleep(config.idle_ping_interval()).await;
    }
}
