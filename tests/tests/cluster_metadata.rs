//! A node restarted in a running cluster answers its first Metadata with the whole cluster.
//!
//! Three `myelin node` processes form one cluster; topic `spread` has one partition on
//! each node alone (replication factor 1: the others learn its leader only from that
//! node's announcements). Node 3 is killed and restarted,
//! and the client crate asks it for Metadata the moment it accepts connections. Until it
//! has heard from its peers, a restarted node knows no other live broker nor the leaders it
//! does not host; it holds Metadata until it knows the cluster (see "Knowing the cluster
//! before serving its view" in core/src/controller.rs), so its first answer lists every
//! broker and names every partition's leader among them. Without the hold, that answer
//! lists node 3 alone with no leader for partitions 0 and 1: librdkafka bootstrapped on it
//! drops the other brokers (see tests/tests/admin_data.rs).

use std::time::{Duration, Instant};

use myelin_client::{ClientConfig, Connection};
use myelin_tests::block_on;
use myelin_tests::node::{cluster_diagnostics, start_cluster};

const TOPIC: &str = "spread";

/// The brokers `addr` lists and each partition's leader of `TOPIC` (-1: none), from one
/// Metadata request on a fresh connection.
fn brokers_and_leaders(addr: std::net::SocketAddr) -> (Vec<i32>, Vec<i32>) {
    block_on(async {
        let mut connection = Connection::connect(addr, ClientConfig::default())
            .await
            .expect("connect");
        let metadata = connection.metadata(Some(&[TOPIC])).await.expect("metadata");
        let brokers = metadata
            .brokers
            .iter()
            .map(|broker| broker.node_id)
            .collect();
        let mut partitions: Vec<(i32, i32)> = metadata
            .topic(TOPIC)
            .map(|topic| {
                topic
                    .partitions
                    .iter()
                    .map(|partition| (partition.partition, partition.leader_id))
                    .collect()
            })
            .unwrap_or_default();
        partitions.sort_unstable();
        (
            brokers,
            partitions.into_iter().map(|(_, leader)| leader).collect(),
        )
    })
}

/// Whether an answer lists every node and names a listed leader for every partition.
fn whole(brokers: &[i32], leaders: &[i32]) -> bool {
    brokers == [1, 2, 3] && leaders.len() == 3 && leaders.iter().all(|l| brokers.contains(l))
}

#[test]
fn a_restarted_node_first_answers_metadata_with_every_broker_and_every_leader() {
    let mut nodes = start_cluster("cluster_metadata", 3);
    block_on(async {
        let mut connection = Connection::connect(nodes[0].addr(), ClientConfig::default())
            .await
            .expect("connect");
        connection
            .create_topic_with_assignment(TOPIC, &[vec![1], vec![2], vec![3]], &[])
            .await
            .expect("create the topic");
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while !nodes.iter().all(|node| {
        let (brokers, leaders) = brokers_and_leaders(node.addr());
        whole(&brokers, &leaders)
    }) {
        assert!(
            Instant::now() < deadline,
            "the nodes did not all name every leader in 30 s\n{}",
            cluster_diagnostics(&nodes)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    nodes[2].kill();
    // `restart` returns as soon as the node accepts connections.
    nodes[2].restart();
    let (brokers, leaders) = brokers_and_leaders(nodes[2].addr());
    assert!(
        whole(&brokers, &leaders),
        "the restarted node's first answer: brokers {brokers:?}, leaders {leaders:?}\n{}",
        cluster_diagnostics(&nodes)
    );
}
