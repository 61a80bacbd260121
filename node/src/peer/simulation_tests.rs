//! Tests of the peer transport inside the madsim simulation (`--cfg madsim`): simulated
//! nodes with their own addresses, a partition that holds bytes instead of failing them
//! (only the transport's own keepalive can notice it), and a killed and restarted node.
//!
//! Run with `cargo test -p myelin-node --lib peer::simulation_tests --config
//! "build.rustflags=['--cfg','madsim']" --config "build.target-dir='target/madsim'"`
//! (`MADSIM_TEST_NUM=N` runs N seeds).

use super::*;
use madsim::net::NetSim;
use madsim::runtime::Handle;
use std::net::{IpAddr, Ipv4Addr};
use tokio::sync::oneshot;

const PEER_PORT: u16 = 7100;
/// Node 1 sends one message per this interval.
const SEND_INTERVAL_MS: u64 = 10;

/// Plain numbers: nothing to share with the wire.
impl PeerPayload for u64 {}

fn address(node_id: NodeId) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, node_id as u8)),
        PEER_PORT,
    )
}

fn cluster() -> BTreeMap<NodeId, SocketAddr> {
    BTreeMap::from([(1, address(1)), (2, address(2))])
}

/// Node 2's main: forwards what it receives to the test.
async fn receiving_node(delivered: mpsc::UnboundedSender<(NodeId, u64)>) {
    let config = PeerConfig::new(2, address(2), cluster());
    let (_transport, mut received) = PeerTransport::<u64>::start(config).await.unwrap();
    while let Some(message) = received.recv().await {
        if delivered.send(message).is_err() {
            return;
        }
    }
}

/// Node 1's main: sends `count` numbered messages to node 2, then reports its counters.
async fn sending_node(count: u64, stats: oneshot::Sender<PeerStats>) {
    let config = PeerConfig::new(1, address(1), cluster());
    let (transport, _received) = PeerTransport::<u64>::start(config).await.unwrap();
    for sequence in 0..count {
        transport.send(2, sequence);
        tokio::time::sleep(Duration::from_millis(SEND_INTERVAL_MS)).await;
    }
    // Time for the last ones to be written.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = stats.send(transport.stats());
}

/// Takes what node 2 delivered until `last` arrives; checks it all came from node 1 in
/// increasing order and returns the sequences.
async fn collect_through(
    delivered: &mut mpsc::UnboundedReceiver<(NodeId, u64)>,
    last: u64,
) -> Vec<u64> {
    let mut sequences: Vec<u64> = Vec::new();
    while sequences.last() != Some(&last) {
        let (from, sequence) = tokio::time::timeout(Duration::from_secs(30), delivered.recv())
            .await
            .expect("node 2 keeps receiving")
            .expect("node 2 is running");
        assert_eq!(from, 1);
        if let Some(&previous) = sequences.last() {
            assert!(sequence > previous, "{sequence} after {previous}");
        }
        sequences.push(sequence);
    }
    sequences
}

#[tokio::test]
async fn a_partition_is_detected_and_traffic_resumes_in_order_after_it_heals() {
    let handle = Handle::current();
    let node_1 = handle
        .create_node()
        .name("node-1")
        .ip(address(1).ip())
        .build();
    let node_2 = handle
        .create_node()
        .name("node-2")
        .ip(address(2).ip())
        .build();
    let (delivered_sender, mut delivered) = mpsc::unbounded_channel();
    node_2.spawn(receiving_node(delivered_sender));
    let (stats_sender, stats) = oneshot::channel();
    let count = 800; // 8 simulated seconds
    node_1.spawn(sending_node(count, stats_sender));

    // One second of traffic, a three-second partition both ways, then healed.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let network = NetSim::current();
    network.clog_link(node_1.id(), node_2.id());
    network.clog_link(node_2.id(), node_1.id());
    tokio::time::sleep(Duration::from_secs(3)).await;
    network.unclog_link(node_1.id(), node_2.id());
    network.unclog_link(node_2.id(), node_1.id());

    let sequences = collect_through(&mut delivered, count - 1).await;
    assert!(sequences[0] < 50, "traffic flowed before the partition");
    let healed_from = 450; // sent half a second after the heal
    let after_heal = sequences.iter().filter(|&&s| s >= healed_from).count() as u64;
    assert_eq!(after_heal, count - healed_from, "nothing lost once healed");
    let stats = stats.await.unwrap();
    assert!(
        stats.disconnects >= 1,
        "the dead link was noticed: {stats:?}"
    );
    assert!(stats.connects >= 2, "and redialled: {stats:?}");
}

#[tokio::test]
async fn a_killed_and_restarted_peer_is_redialled() {
    let handle = Handle::current();
    let node_1 = handle
        .create_node()
        .name("node-1")
        .ip(address(1).ip())
        .build();
    let (delivered_sender, mut delivered) = mpsc::unbounded_channel();
    let node_2 = handle
        .create_node()
        .name("node-2")
        .ip(address(2).ip())
        .init(move || receiving_node(delivered_sender.clone()))
        .build();
    let (stats_sender, stats) = oneshot::channel();
    let count = 500;
    node_1.spawn(sending_node(count, stats_sender));

    tokio::time::sleep(Duration::from_secs(1)).await;
    handle.kill(node_2.id());
    tokio::time::sleep(Duration::from_secs(1)).await;
    handle.restart(node_2.id());

    let sequences = collect_through(&mut delivered, count - 1).await;
    assert!(sequences[0] < 50, "traffic flowed before the kill");
    let restarted_from = 250; // sent half a second after the restart
    let after_restart = sequences.iter().filter(|&&s| s >= restarted_from).count() as u64;
    assert_eq!(
        after_restart,
        count - restarted_from,
        "nothing lost once back"
    );
    let stats = stats.await.unwrap();
    assert!(stats.connects >= 2, "redialled: {stats:?}");
}
