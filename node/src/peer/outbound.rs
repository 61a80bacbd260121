//! The outbound side: one task per peer that dials it, keeps the connection alive and writes
//! the peer's queued messages.
//!
//! The task loops: connect (bounded by `connect_timeout_ms`), write the handshake, then run
//! the connection until it fails; wait the backoff and dial again. While connected, the
//! writer drains up to `BATCH_MESSAGES_MAX` queued messages (or about `BATCH_BYTES_TARGET`
//! bytes) into one buffer (splicing the messages' shared byte buffers in, not copying them:
//! [`PeerPayload`]), writes and flushes it, and sends a `Ping` after an idle interval;
//! the reader expects only the acceptor's `Ping`s and closes the connection when they stop.
//! The backoff doubles after each failed attempt and returns to its minimum once the
//! acceptor has acknowledged a handshake (its first `Ping`), so a peer that refuses our
//! handshake is not hammered. Messages wait in the queue while the peer is unreachable.

use super::wire::{self, Frame, WireError};
use super::{Counters, NodeId, PeerConfig, PeerPayload};
use crate::frame::SplicedFrame;
use bytes::Bytes;
use kafka_protocol::protocol::buf::ByteBufMut;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

/// Messages written in one batch at most.
const BATCH_MESSAGES_MAX: usize = 256;
/// A batch stops taking messages once its buffer holds this much.
const BATCH_BYTES_TARGET: usize = 1024 * 1024;
/// Read buffer of an outbound connection (it only receives pings).
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// Everything the outbound task of one peer owns.
pub(super) struct OutboundLink<M> {
    pub(super) peer: NodeId,
    pub(super) address: SocketAddr,
    pub(super) config: Arc<PeerConfig>,
    pub(super) queue: mpsc::Receiver<M>,
    pub(super) counters: Arc<Counters>,
    pub(super) shutdown: watch::Receiver<()>,
}

/// Why a connection that was established ended.
enum LinkEnd {
    /// The transport is being dropped.
    Stopped,
    Failed(WireError),
}

impl<M: PeerPayload + Send + 'static> OutboundLink<M> {
    /// Dials, serves and redials the peer until the transport is dropped.
    pub(super) async fn run(self) {
        let OutboundLink {
            peer,
            address,
            config,
            mut queue,
            counters,
            mut shutdown,
        } = self;
        let mut backoff = Backoff::new(config.reconnect_backoff_ms);
        let mut failures_in_a_row: u64 = 0;
        loop {
            let attempt = tokio::select! {
                biased;
                _ = shutdown.changed() => return,
                attempt = connect(address, &config) => attempt,
            };
            match attempt {
                Ok(stream) => {
                    Counters::add(&counters.connects, 1);
                    tracing::debug!(peer, %address, "connected to peer");
                    let served = tokio::select! {
                        biased;
                        _ = shutdown.changed() => LinkEnd::Stopped,
                        served = serve(peer, stream, &config, &mut queue, &counters, &mut backoff) => served,
                    };
                    Counters::add(&counters.disconnects, 1);
                    match served {
                        LinkEnd::Stopped => return,
                        LinkEnd::Failed(error) => {
                            failures_in_a_row = 0;
                            if error.is_bad_input() {
                                tracing::warn!(peer, %address, reason = %error, "closing peer connection; redialling");
                            } else {
                                tracing::info!(peer, %address, reason = %error, "peer connection lost; redialling");
                            }
                        }
                    }
                }
                Err(error) => {
                    failures_in_a_row += 1;
                    if failures_in_a_row == 1 {
                        tracing::info!(peer, %address, reason = %error, "cannot reach peer; retrying with backoff");
                    } else {
                        tracing::debug!(peer, %address, reason = %error, failures_in_a_row, "cannot reach peer");
                    }
                }
            }
            let delay = backoff.next_delay();
            tokio::select! {
                biased;
                _ = shutdown.changed() => return,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }
}

/// Opens the TCP connection, within `connect_timeout_ms`.
async fn connect(address: SocketAddr, config: &PeerConfig) -> Result<TcpStream, WireError> {
    let stream =
        match tokio::time::timeout(config.connect_timeout(), TcpStream::connect(address)).await {
            Ok(connected) => connected?,
            Err(_elapsed) => {
                return Err(WireError::ConnectTimeout {
                    timeout_ms: config.connect_timeout_ms,
                })
            }
        };
    // Small batches must not wait for Nagle's algorithm.
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%address, %error, "could not disable Nagle's algorithm");
    }
    Ok(stream)
}

/// Runs one established connection: handshake, then messages out and pings in, until
/// something fails or the transport is dropped.
async fn serve<M: PeerPayload>(
    peer: NodeId,
    stream: TcpStream,
    config: &PeerConfig,
    queue: &mut mpsc::Receiver<M>,
    counters: &Counters,
    backoff: &mut Backoff,
) -> LinkEnd {
    let (read_half, mut write_half) = tokio::io::split(stream);
    let handshake = SplicedFrame::from(Bytes::copy_from_slice(&wire::encode_handshake(
        config.node_id,
    )));
    if let Err(error) =
        wire::write_flush(&mut write_half, &handshake, config.connect_timeout_ms).await
    {
        return LinkEnd::Failed(error);
    }
    let reader = BufReader::with_capacity(READ_BUFFER_BYTES, read_half);
    tokio::select! {
        ended = write_messages(peer, write_half, config, queue, counters) => ended,
        error = read_pings(reader, config, backoff) => LinkEnd::Failed(error),
    }
}

/// Writes queued messages in batches, and a ping whenever the queue stays empty for an idle
/// interval. Ends when a write fails or the queue closes (the transport is dropped).
async fn write_messages<M: PeerPayload, W: AsyncWrite + Unpin>(
    peer: NodeId,
    mut writer: W,
    config: &PeerConfig,
    queue: &mut mpsc::Receiver<M>,
    counters: &Counters,
) -> LinkEnd {
    let write_timeout_ms = config.silence_timeout_ms();
    loop {
        let mut buffer = wire::frame_buffer();
        let first = match tokio::time::timeout(config.idle_ping_interval(), queue.recv()).await {
            Ok(Some(message)) => Some(message),
            Ok(None) => return LinkEnd::Stopped,
            Err(_idle) => None,
        };
        let mut batch_messages: u64 = 0;
        match first {
            None => {
                if let Err(error) = wire::encode_frame::<M>(
                    &mut buffer,
                    &Frame::Ping,
                    Vec::new(),
                    config.frame_bytes_max,
                ) {
                    return LinkEnd::Failed(error);
                }
            }
            Some(message) => {
                let mut next = Some(message);
                let mut taken = 0;
                while let Some(message) = next {
                    taken += 1;
                    let shared = message.shared_bytes();
                    match wire::encode_frame(
                        &mut buffer,
                        &Frame::Message(message),
                        shared,
                        config.frame_bytes_max,
                    ) {
                        Ok(()) => batch_messages += 1,
                        Err(error) => {
                            Counters::add(&counters.dropped, 1);
                            tracing::warn!(peer, reason = %error, "message dropped");
                        }
                    }
                    next = if taken < BATCH_MESSAGES_MAX && buffer.offset() < BATCH_BYTES_TARGET {
                        queue.try_recv().ok()
                    } else {
                        None
                    };
                }
                if buffer.offset() == 0 {
                    continue;
                }
            }
        }
        match wire::write_flush(&mut writer, &buffer.finish(), write_timeout_ms).await {
            Ok(()) => Counters::add(&counters.sent, batch_messages),
            Err(error) => {
                Counters::add(&counters.dropped, batch_messages);
                return LinkEnd::Failed(error);
            }
        }
    }
}

/// Reads the acceptor's pings; returns why the connection must close. The first ping
/// acknowledges the handshake and resets the backoff.
async fn read_pings<R: AsyncRead + Unpin>(
    mut reader: R,
    config: &PeerConfig,
    backoff: &mut Backoff,
) -> WireError {
    loop {
        let frame = match wire::read_frame(
            &mut reader,
            config.frame_bytes_max,
            config.silence_timeout_ms(),
        )
        .await
        {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                return WireError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the peer closed the connection",
                ))
            }
            Err(error) => return error,
        };
        // Acceptors send nothing but pings; `()` decodes a ping and refuses a message.
        match wire::decode_frame::<()>(&frame) {
            Ok(Frame::Ping) => backoff.reset(),
            Ok(Frame::Message(())) => return WireError::Unexpected { what: "message" },
            Err(error) => return error,
        }
    }
}

/// Exponential backoff with jitter: each delay is drawn from the upper half of the current
/// step, and the step doubles up to the maximum.
#[derive(Debug)]
struct Backoff {
    minimum_ms: u64,
    maximum_ms: u64,
    step_ms: u64,
}

impl Backoff {
    fn new((minimum_ms, maximum_ms): (u64, u64)) -> Self {
        Self {
            minimum_ms,
            maximum_ms,
            step_ms: minimum_ms,
        }
    }

    fn next_delay(&mut self) -> Duration {
        let step_ms = self.step_ms;
        self.step_ms = step_ms.saturating_mul(2).min(self.maximum_ms);
        let delay_ms = rand::random_range(step_ms / 2..=step_ms).max(1);
        Duration::from_millis(delay_ms)
    }

    fn reset(&mut self) {
        self.step_ms = self.minimum_ms;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum_and_resets() {
        let mut backoff = Backoff::new((50, 300));
        let delays: Vec<u64> = (0..5)
            .map(|_| backoff.next_delay().as_millis() as u64)
            .collect();
        for (delay, step) in delays.iter().zip([50, 100, 200, 300, 300]) {
            assert!(
                (step / 2..=step).contains(delay),
                "{delay} ms within step {step}"
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(50));
    }
}
