//! Tests of the peer transport on real loopback TCP: delivery and order, late and restarted
//! peers, dropping on a full queue, dead links, and bad input from raw clients.

use super::wire::{self, Frame};
use super::*;
use serde::Deserialize;
use std::future::Future;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Limit of every single wait in these tests.
const WAIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Limit of a whole test.
const TEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct TestMessage {
    sequence: u64,
    text: String,
    /// Shared with the wire (spliced into the write, not copied) when long enough.
    payload: Bytes,
}

impl PeerPayload for TestMessage {
    fn shared_bytes(&self) -> Vec<Bytes> {
        vec![self.payload.clone()]
    }
}

/// Odd sequences carry a payload long enough to be spliced, of bytes that tell them apart.
fn payload(sequence: u64) -> Bytes {
    if sequence % 2 == 1 {
        let length = crate::frame::SPLICE_BYTES_MIN + (sequence % 7) as usize * 1000;
        Bytes::from(vec![sequence as u8; length])
    } else {
        Bytes::new()
    }
}

fn message(sequence: u64) -> TestMessage {
    TestMessage {
        sequence,
        text: format!("message {sequence}"),
        payload: payload(sequence),
    }
}

type Receiver = PeerReceiver<TestMessage>;

struct TestNode {
    transport: PeerTransport<TestMessage>,
    received: Receiver,
}

/// Runs a test body, failing it if it takes longer than `TEST_TIMEOUT`.
async fn bounded(body: impl Future<Output = ()>) {
    tokio::time::timeout(TEST_TIMEOUT, body)
        .await
        .expect("the test finished within its time limit");
}

/// Short timeouts, so that failures and dead links show within a test.
fn fast_config(node_id: NodeId, peers: &BTreeMap<NodeId, SocketAddr>) -> PeerConfig {
    PeerConfig {
        connect_timeout_ms: 300,
        reconnect_backoff_ms: (10, 100),
        idle_ping_interval_ms: 50,
        ..PeerConfig::new(node_id, "127.0.0.1:0".parse().unwrap(), peers.clone())
    }
}

async fn bind_local() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// An address nothing listens on (bound, then let go).
async fn free_address() -> SocketAddr {
    bind_local().await.local_addr().unwrap()
}

/// Binds `address` again once its previous owner has let it go.
async fn rebind(address: SocketAddr) -> TcpListener {
    tokio::time::timeout(WAIT_TIMEOUT, async {
        loop {
            match TcpListener::bind(address).await {
                Ok(listener) => return listener,
                Err(_in_use) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    })
    .await
    .expect("the address was let go")
}

/// Starts transports with ids 1..=`count` on loopback; `absent` ids are configured peers
/// with an address nobody listens on. `adjust` changes every node's configuration.
async fn start_cluster(
    count: usize,
    absent: &[NodeId],
    adjust: impl Fn(&mut PeerConfig),
) -> (Vec<TestNode>, BTreeMap<NodeId, SocketAddr>) {
    let mut listeners = Vec::new();
    let mut addresses = BTreeMap::new();
    for node_id in 1..=count as NodeId {
        let listener = bind_local().await;
        addresses.insert(node_id, listener.local_addr().unwrap());
        listeners.push((node_id, listener));
    }
    for &node_id in absent {
        addresses.insert(node_id, free_address().await);
    }
    let mut nodes = Vec::new();
    for (node_id, listener) in listeners {
        let mut config = fast_config(node_id, &addresses);
        adjust(&mut config);
        let (transport, received) = PeerTransport::start_with_listener(config, listener).unwrap();
        nodes.push(TestNode {
            transport,
            received,
        });
    }
    (nodes, addresses)
}

async fn receive(received: &mut Receiver) -> (NodeId, TestMessage) {
    tokio::time::timeout(WAIT_TIMEOUT, received.recv())
        .await
        .expect("a message within the wait limit")
        .expect("the transport is running")
}

/// Waits until `condition` holds.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let waited = tokio::time::timeout(WAIT_TIMEOUT, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting until {what}");
}

/// Reads from a raw client until the transport closes it (pings are skipped).
async fn assert_closed_by_transport(stream: &mut TcpStream, case: &str) {
    let mut buffer = [0u8; 1024];
    let closed = tokio::time::timeout(WAIT_TIMEOUT, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "{case}: the transport closed the connection"
    );
}

async fn raw_client(address: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut stream = tokio::time::timeout(WAIT_TIMEOUT, TcpStream::connect(address))
        .await
        .unwrap()
        .unwrap();
    stream.write_all(bytes).await.unwrap();
    stream.flush().await.unwrap();
    stream
}

fn frame_bytes(frame: &Frame<TestMessage>) -> Bytes {
    let mut bytes = wire::frame_buffer();
    wire::encode_frame(&mut bytes, frame, Vec::new(), FRAME_BYTES_MAX_DEFAULT).unwrap();
    bytes.finish().into_contiguous()
}

#[tokio::test]
async fn two_transports_exchange_messages_in_order() {
    bounded(async {
        let (mut nodes, _) = start_cluster(2, &[], |config| config.send_queue_depth = 10_000).await;
        let TestNode {
            transport: b,
            received: mut b_received,
        } = nodes.pop().unwrap();
        let TestNode {
            transport: a,
            received: mut a_received,
        } = nodes.pop().unwrap();
        const COUNT: u64 = 2000;
        for sequence in 0..COUNT {
            assert!(a.send(2, message(sequence)));
            assert!(b.send(1, message(COUNT + sequence)));
        }
        for sequence in 0..COUNT {
            assert_eq!(receive(&mut b_received).await, (1, message(sequence)));
            assert_eq!(
                receive(&mut a_received).await,
                (2, message(COUNT + sequence))
            );
        }
        eventually("every message is counted as sent", || {
            a.stats().sent == COUNT && b.stats().sent == COUNT
        })
        .await;
        for stats in [a.stats(), b.stats()] {
            assert_eq!(stats.received, COUNT);
            assert_eq!(stats.dropped, 0);
            assert_eq!(stats.connects, 1);
            assert_eq!(stats.disconnects, 0);
            assert_eq!(stats.inbound_accepted, 1);
            assert_eq!(stats.inbound_rejected, 0);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_transports_keep_order_per_pair() {
    bounded(async {
        let (mut nodes, _) = start_cluster(3, &[], |config| config.send_queue_depth = 10_000).await;
        const COUNT: u64 = 500;
        for sequence in 0..COUNT {
            for node in &nodes {
                let from = node.transport.node_id();
                for to in 1..=3 {
                    if to != from {
                        let text = format!("{from}->{to}");
                        let payload = payload(sequence);
                        let message = TestMessage {
                            sequence,
                            text,
                            payload,
                        };
                        assert!(node.transport.send(to, message));
                    }
                }
            }
        }
        for node in &mut nodes {
            let to = node.transport.node_id();
            let mut next_sequence: BTreeMap<NodeId, u64> = BTreeMap::new();
            for _ in 0..2 * COUNT {
                let (from, received) = receive(&mut node.received).await;
                assert_ne!(from, to);
                assert_eq!(received.text, format!("{from}->{to}"));
                let expected = next_sequence.entry(from).or_insert(0);
                assert_eq!(received.sequence, *expected, "from {from} to {to}");
                *expected += 1;
            }
            assert_eq!(next_sequence.values().collect::<Vec<_>>(), [&COUNT, &COUNT]);
        }
    })
    .await;
}

#[tokio::test]
async fn a_peer_that_starts_later_is_reached() {
    bounded(async {
        let a_listener = bind_local().await;
        let b_address = free_address().await;
        let addresses = BTreeMap::from([(1, a_listener.local_addr().unwrap()), (2, b_address)]);
        let (a, _a_received) = PeerTransport::<TestMessage>::start_with_listener(
            fast_config(1, &addresses),
            a_listener,
        )
        .unwrap();
        for sequence in 0..10 {
            assert!(a.send(2, message(sequence)));
        }
        // Several dials fail meanwhile; the messages wait in the queue.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(a.stats().connects, 0);

        let b_listener = rebind(b_address).await;
        let (_b, mut b_received) = PeerTransport::<TestMessage>::start_with_listener(
            fast_config(2, &addresses),
            b_listener,
        )
        .unwrap();
        for sequence in 0..10 {
            assert_eq!(receive(&mut b_received).await, (1, message(sequence)));
        }
        assert_eq!(a.stats().connects, 1);
        assert_eq!(a.stats().dropped, 0);
    })
    .await;
}

#[tokio::test]
async fn a_restarted_peer_gets_messages_again() {
    bounded(async {
        let (mut nodes, addresses) = start_cluster(2, &[], |_| {}).await;
        let TestNode {
            transport: b,
            received: mut b_received,
        } = nodes.pop().unwrap();
        let TestNode {
            transport: a,
            received: mut a_received,
        } = nodes.pop().unwrap();
        assert!(a.send(2, message(0)));
        assert_eq!(receive(&mut b_received).await, (1, message(0)));
        assert!(b.send(1, message(100)));
        assert_eq!(receive(&mut a_received).await, (2, message(100)));

        drop(b);
        drop(b_received);
        let listener = rebind(addresses[&2]).await;
        let (b, mut b_received) =
            PeerTransport::<TestMessage>::start_with_listener(fast_config(2, &addresses), listener)
                .unwrap();

        // Messages sent around the restart may be lost; A keeps sending until one arrives,
        // and from then on they arrive in order.
        let mut sequence = 1;
        let first = loop {
            assert!(a.send(2, message(sequence)));
            sequence += 1;
            match tokio::time::timeout(Duration::from_millis(20), b_received.recv()).await {
                Ok(Some((from, received))) => {
                    assert_eq!(from, 1);
                    break received.sequence;
                }
                Ok(None) => panic!("the restarted transport stopped"),
                Err(_nothing_yet) => continue,
            }
        };
        let last = sequence + 10;
        while sequence < last {
            assert!(a.send(2, message(sequence)));
            sequence += 1;
        }
        let mut previous = first;
        while previous < last - 1 {
            let (from, received) = receive(&mut b_received).await;
            assert_eq!(from, 1);
            assert!(received.sequence > previous, "in order after the restart");
            previous = received.sequence;
        }

        // The restarted node reaches A too: A takes its new connection over the old one.
        assert!(b.send(1, message(200)));
        assert_eq!(receive(&mut a_received).await, (2, message(200)));
        let stats = a.stats();
        assert!(stats.connects >= 2, "{stats:?}");
        assert!(stats.disconnects >= 1, "{stats:?}");
        assert_eq!(stats.inbound_accepted, 2, "{stats:?}");
    })
    .await;
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_instead_of_blocking() {
    bounded(async {
        let (nodes, _) = start_cluster(1, &[2], |config| config.send_queue_depth = 4).await;
        let a = &nodes[0].transport;
        // Node 2 is down: its queue fills and further messages are dropped at once.
        let queued: Vec<bool> = (0..10)
            .map(|sequence| a.send(2, message(sequence)))
            .collect();
        assert_eq!(queued, [[true; 4].as_slice(), &[false; 6]].concat());
        assert_eq!(a.stats().dropped, 6);
        // Unknown peers and the node itself are dropped and counted too.
        assert!(!a.send(9, message(0)));
        assert!(!a.send(1, message(0)));
        assert_eq!(a.stats().dropped, 8);
    })
    .await;
}

#[tokio::test]
async fn a_message_too_long_for_a_frame_is_dropped_alone() {
    bounded(async {
        let (mut nodes, _) = start_cluster(2, &[], |config| config.frame_bytes_max = 1024).await;
        let mut b = nodes.pop().unwrap();
        let a = nodes.pop().unwrap();
        let oversized = TestMessage {
            sequence: 1,
            text: "x".repeat(2000),
            payload: Bytes::new(),
        };
        assert!(a.transport.send(2, message(0)));
        assert!(a.transport.send(2, oversized));
        assert!(a.transport.send(2, message(2)));
        assert_eq!(receive(&mut b.received).await, (1, message(0)));
        assert_eq!(receive(&mut b.received).await, (1, message(2)));
        let stats = a.transport.stats();
        assert_eq!((stats.sent, stats.dropped, stats.disconnects), (2, 1, 0));
    })
    .await;
}

#[tokio::test]
async fn a_slow_consumer_holds_the_reader_back_without_loss() {
    bounded(async {
        let (mut nodes, _) = start_cluster(2, &[], |config| config.send_queue_depth = 10_000).await;
        let mut b = nodes.pop().unwrap();
        let a = nodes.pop().unwrap();
        let count = 3 * RECEIVE_QUEUE_DEPTH as u64;
        // Without payloads: what waits must fit the socket buffers (more would make the
        // writer's write time out, as the module doc says).
        let small = |sequence| TestMessage {
            payload: Bytes::new(),
            ..message(sequence)
        };
        for sequence in 0..count {
            assert!(a.transport.send(2, small(sequence)));
        }
        // Nobody reads for longer than a dead link takes to detect: the reader waits, pings
        // keep the connection alive.
        tokio::time::sleep(Duration::from_millis(600)).await;
        for sequence in 0..count {
            assert_eq!(receive(&mut b.received).await, (1, small(sequence)));
        }
        let stats = a.transport.stats();
        assert_eq!((stats.dropped, stats.disconnects), (0, 0), "{stats:?}");
    })
    .await;
}

#[tokio::test]
async fn a_peer_that_goes_silent_is_redialled() {
    bounded(async {
        // "Node 2" accepts and reads the handshake but never answers, like a link that
        // holds bytes during a partition.
        let silent = bind_local().await;
        let a_listener = bind_local().await;
        let addresses = BTreeMap::from([
            (1, a_listener.local_addr().unwrap()),
            (2, silent.local_addr().unwrap()),
        ]);
        let (a, _a_received) = PeerTransport::<TestMessage>::start_with_listener(
            fast_config(1, &addresses),
            a_listener,
        )
        .unwrap();
        let mut connections = Vec::new();
        for _ in 0..2 {
            let (mut stream, _) = tokio::time::timeout(WAIT_TIMEOUT, silent.accept())
                .await
                .expect("A dials")
                .unwrap();
            let mut handshake = [0u8; wire::HANDSHAKE_BYTES];
            tokio::time::timeout(WAIT_TIMEOUT, stream.read_exact(&mut handshake))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(handshake, wire::encode_handshake(1));
            connections.push(stream);
        }
        let stats = a.stats();
        assert!(stats.connects >= 2 && stats.disconnects >= 1, "{stats:?}");
    })
    .await;
}

#[tokio::test]
async fn a_raw_client_speaking_the_protocol_is_served_and_tagged() {
    bounded(async {
        let (mut nodes, addresses) = start_cluster(1, &[3], |_| {}).await;
        let mut a = nodes.pop().unwrap();
        let mut bytes = wire::encode_handshake(3).to_vec();
        bytes.extend(frame_bytes(&Frame::Message(message(7))));
        bytes.extend(frame_bytes(&Frame::Ping));
        bytes.extend(frame_bytes(&Frame::Message(message(8))));
        let mut client = raw_client(addresses[&1], &bytes).await;
        assert_eq!(receive(&mut a.received).await, (3, message(7)));
        assert_eq!(receive(&mut a.received).await, (3, message(8)));

        // The acceptor acknowledged the handshake with a ping.
        let frame = wire::read_frame(&mut client, 1024, 5000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(wire::decode_frame::<()>(&frame).unwrap(), Frame::Ping);
        // Then the client stays silent: the transport closes the dead link.
        assert_closed_by_transport(&mut client, "silent client").await;
        let stats = a.transport.stats();
        assert_eq!((stats.inbound_accepted, stats.inbound_rejected), (1, 0));
    })
    .await;
}

#[tokio::test]
async fn bad_input_closes_only_its_connection() {
    bounded(async {
        let (mut nodes, addresses) = start_cluster(2, &[3], |_| {}).await;
        let mut b = nodes.pop().unwrap();
        let mut a = nodes.pop().unwrap();
        let a_address = addresses[&1];
        let as_node_3 = |rest: &[u8]| [wire::encode_handshake(3).as_slice(), rest].concat();
        let mut bad_version = wire::encode_handshake(2);
        bad_version[4..6].copy_from_slice(&(PROTOCOL_VERSION + 1).to_be_bytes());
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("garbage", b"GET / HTTP/1.1\r\nHost: peer\r\n\r\n".to_vec()),
            ("bad version", bad_version.to_vec()),
            ("unknown node id", wire::encode_handshake(42).to_vec()),
            ("the node's own id", wire::encode_handshake(1).to_vec()),
            ("silent client", Vec::new()),
            ("huge frame length", as_node_3(&[0xff, 0xff, 0xff, 0xff])),
            (
                "frame one byte over the limit",
                as_node_3(&(FRAME_BYTES_MAX_DEFAULT as u32 + 1).to_be_bytes()),
            ),
            (
                "undecodable frame",
                as_node_3(&[0, 0, 0, 3, 0xff, 0xff, 0xff]),
            ),
            ("empty frame", as_node_3(&[0, 0, 0, 0])),
        ];
        for (case, bytes) in &cases {
            let mut client = raw_client(a_address, bytes).await;
            assert_closed_by_transport(&mut client, case).await;
        }
        let mut truncated = raw_client(a_address, b"MYL").await;
        truncated.shutdown().await.unwrap();
        assert_closed_by_transport(&mut truncated, "truncated handshake").await;
        eventually("every bad connection is counted", || {
            a.transport.stats().inbound_rejected == cases.len() as u64 + 1
        })
        .await;

        // The transport keeps working both ways.
        assert!(a.transport.send(2, message(1)));
        assert!(b.transport.send(1, message(2)));
        assert_eq!(receive(&mut b.received).await, (1, message(1)));
        assert_eq!(receive(&mut a.received).await, (2, message(2)));
    })
    .await;
}

#[test]
fn invalid_configurations_are_refused() {
    let peers = BTreeMap::new();
    let valid = PeerConfig::new(1, "127.0.0.1:0".parse().unwrap(), peers);
    assert!(valid.validate().is_ok());
    let invalid = [
        PeerConfig {
            send_queue_depth: 0,
            ..valid.clone()
        },
        PeerConfig {
            frame_bytes_max: 0,
            ..valid.clone()
        },
        PeerConfig {
            reconnect_backoff_ms: (100, 10),
            ..valid.clone()
        },
        PeerConfig {
            idle_ping_interval_ms: 0,
            ..valid.clone()
        },
        PeerConfig {
            connect_timeout_ms: 0,
            ..valid.clone()
        },
    ];
    for config in invalid {
        assert!(config.validate().is_err(), "{config:?}");
    }
}
