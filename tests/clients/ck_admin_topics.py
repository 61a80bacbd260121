"""Drive the topic admin APIs with confluent-kafka's AdminClient and report what they did.

Steps, each recorded in the JSON summary (the Rust test, tests/tests/admin_topics.rs,
checks them; this script checks nothing itself beyond "the call returned"):
- create TOPIC (2 partitions, replication factor --replication-factor);
- create_partitions: validate_only to 4 (nothing changes), then to 4, then to 3 (refused);
- produce one record to the new partition 3 and read it back;
- incremental_alter_configs SET max.message.bytes=2000 and retention.ms=3600000, then
  describe_configs; a 5000-byte record is then refused; APPEND to a non-list key, a
  BROKER resource and an unknown key are refused;
- alter_configs (whole replacement) with retention.ms only, then describe_configs;
- create TOPIC-placed with an explicit replica assignment (--assignment), and one naming
  an unknown node;
- a topic named twice in one CreateTopics, CreatePartitions or DeleteTopics: answered
  once, INVALID_REQUEST, and nothing changes;
- describe_cluster, describe_configs of a node (BROKER), and describe_topics with
  authorized operations.
Error outcomes are reported by Kafka error name. Prints one JSON document; exits 1 on an
unexpected failure.
"""

import argparse
import json
import time

from e2e_common import emit, fail, missing_module

try:
    from confluent_kafka import (OFFSET_BEGINNING, Consumer, KafkaException, Producer,
                                 TopicCollection, TopicPartition)
    from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry,
                                       ConfigResource, ConfigSource, NewPartitions, NewTopic,
                                       ResourceType)
except ImportError as err:
    missing_module("confluent_kafka", err)


def outcome(future, timeout):
    """'OK' or the Kafka error name the future failed with."""
    try:
        future.result(timeout=timeout)
        return "OK"
    except KafkaException as err:
        return err.args[0].name()


def one(futures):
    [future] = list(futures.values())
    return future


def describe(admin, topic, timeout):
    entries = one(admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)])).result(
        timeout=timeout)
    return {
        name: {"value": entry.value, "is_default": entry.is_default,
               "source": ConfigSource(entry.source).name,
               "synonyms": [[synonym.name, synonym.value, ConfigSource(synonym.source).name]
                            for synonym in entry.synonyms.values()]}
        for name, entry in entries.items()
    }


def describe_once_applied(admin, topic, key, value, timeout):
    """describe_configs, asked again until `key` reads `value`: each broker applies a config
    change once it learns that the metadata log committed it, a little after the controller
    answered (as in Kafka)."""
    deadline = time.monotonic() + timeout
    while True:
        configs = describe(admin, topic, timeout)
        if configs.get(key, {}).get("value") == value or time.monotonic() > deadline:
            return configs
        time.sleep(0.2)


def partitions_of(admin, topic, timeout):
    metadata = admin.list_topics(topic, timeout=timeout)
    described = metadata.topics[topic]
    return {str(p.id): {"replicas": list(p.replicas), "leader": p.leader}
            for p in described.partitions.values()}


def produce_one(bootstrap, topic, partition, value, timeout):
    """Produce `value` to `partition` with acks=all; 'OK' or the delivery error's name."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                         "message.timeout.ms": int(timeout * 1000)})
    result = {}

    def delivered(err, msg):
        result["outcome"] = "OK" if err is None else err.name()
        result["offset"] = None if err is not None else msg.offset()

    producer.produce(topic, value=value, partition=partition, on_delivery=delivered)
    producer.flush(timeout)
    return result


def read_partition(bootstrap, topic, partition, timeout):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "myelin-e2e-admin",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
    deadline = time.monotonic() + timeout
    values = []
    try:
        while time.monotonic() < deadline and not values:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                values.append(msg.value().decode())
    finally:
        consumer.close()
    return values


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True, help="HOST:PORT[,HOST:PORT...]")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--replication-factor", type=int, default=1)
    parser.add_argument("--assignment", required=True,
                        help="JSON list of replica lists, one per partition")
    parser.add_argument("--unknown-node", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    timeout = args.timeout
    topic = args.topic
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    summary = {"client": "confluent-kafka", "topic": topic}

    try:
        summary["create"] = outcome(one(admin.create_topics(
            [NewTopic(topic, num_partitions=2, replication_factor=args.replication_factor)],
            operation_timeout=timeout)), timeout)

        summary["grow_validate_only"] = outcome(one(admin.create_partitions(
            [NewPartitions(topic, 4)], validate_only=True, operation_timeout=timeout)), timeout)
        summary["partitions_after_validate_only"] = len(partitions_of(admin, topic, timeout))
        summary["grow"] = outcome(one(admin.create_partitions(
            [NewPartitions(topic, 4)], operation_timeout=timeout)), timeout)
        summary["shrink"] = outcome(one(admin.create_partitions(
            [NewPartitions(topic, 3)], operation_timeout=timeout)), timeout)
        deadline = time.monotonic() + timeout
        while True:
            partitions = partitions_of(admin, topic, timeout)
            if all(p["leader"] >= 0 for p in partitions.values()) and len(partitions) == 4:
                break
            if time.monotonic() > deadline:
                fail("the new partitions got no leader", partitions=partitions)
            time.sleep(0.2)
        summary["partitions"] = partitions
        summary["produce_new_partition"] = produce_one(
            args.bootstrap, topic, 3, b"into-partition-3", timeout)
        summary["read_new_partition"] = read_partition(args.bootstrap, topic, 3, timeout)

        def incremental(*changes, resource_type=ResourceType.TOPIC, name=topic):
            entries = [ConfigEntry(key, value, incremental_operation=op)
                       for key, value, op in changes]
            return outcome(one(admin.incremental_alter_configs(
                [ConfigResource(resource_type, name, incremental_configs=entries)])), timeout)

        summary["incremental_set"] = incremental(
            ("max.message.bytes", "2000", AlterConfigOpType.SET),
            ("retention.ms", "3600000", AlterConfigOpType.SET))
        summary["configs_after_incremental"] = describe_once_applied(
            admin, topic, "max.message.bytes", "2000", timeout)
        # The partition's leader applies the change once it learns of its commit.
        deadline = time.monotonic() + timeout
        while True:
            summary["produce_too_large"] = produce_one(
                args.bootstrap, topic, 0, b"x" * 5000, timeout)
            if summary["produce_too_large"]["outcome"] != "OK" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        summary["append_to_non_list"] = incremental(
            ("retention.ms", "5", AlterConfigOpType.APPEND))
        summary["unknown_key"] = incremental(("no.such.key", "1", AlterConfigOpType.SET))
        summary["broker_resource"] = incremental(
            ("log.retention.ms", "1", AlterConfigOpType.SET),
            resource_type=ResourceType.BROKER, name="1")

        summary["alter_whole"] = outcome(one(admin.alter_configs(
            [ConfigResource(ResourceType.TOPIC, topic, set_config={"retention.ms": "7200000"})])),
            timeout)
        summary["configs_after_alter"] = describe_once_applied(
            admin, topic, "retention.ms", "7200000", timeout)

        assignment = json.loads(args.assignment)
        placed = topic + "-placed"
        summary["create_placed"] = outcome(one(admin.create_topics(
            [NewTopic(placed, num_partitions=len(assignment), replica_assignment=assignment)],
            operation_timeout=timeout)),
            timeout)
        summary["placed_partitions"] = partitions_of(admin, placed, timeout)
        summary["create_unknown_node"] = outcome(one(admin.create_topics(
            [NewTopic(topic + "-bad", num_partitions=1,
                      replica_assignment=[[args.unknown_node]])],
            operation_timeout=timeout)), timeout)

        # The same topic twice in one request: Kafka answers it once, INVALID_REQUEST, and
        # leaves it alone (librdkafka refuses an answer that names a topic twice).
        duplicate = topic + "-twice"
        summary["create_twice"] = outcome(one(admin.create_topics(
            [NewTopic(duplicate, num_partitions=1, replication_factor=args.replication_factor)] * 2,
            operation_timeout=timeout)), timeout)
        summary["grow_twice"] = outcome(one(admin.create_partitions(
            [NewPartitions(topic, 6)] * 2, operation_timeout=timeout)), timeout)
        summary["delete_twice"] = outcome(one(admin.delete_topics(
            [placed] * 2, operation_timeout=timeout)), timeout)
        listed = admin.list_topics(timeout=timeout).topics
        summary["after_twice"] = {
            "created": duplicate in listed,
            "partitions": len(listed[topic].partitions),
            "deleted": placed not in listed,
        }

        cluster = admin.describe_cluster(include_authorized_operations=True,
                                         request_timeout=timeout).result(timeout=timeout)
        summary["cluster"] = {
            "cluster_id": cluster.cluster_id,
            "controller": cluster.controller.id if cluster.controller else None,
            "nodes": sorted(node.id for node in cluster.nodes),
            "authorized_operations": sorted(op.name for op in cluster.authorized_operations
                                            or []),
        }
        # A node's own broker settings: those the topic keys fall back to.
        broker = ConfigResource(ResourceType.BROKER, str(summary["cluster"]["nodes"][0]))
        summary["broker_configs"] = {
            name: {"value": entry.value, "source": ConfigSource(entry.source).name,
                   "read_only": entry.is_read_only}
            for name, entry in one(admin.describe_configs([broker])).result(
                timeout=timeout).items()
        }
        described = admin.describe_topics(TopicCollection([topic]),
                                          include_authorized_operations=True,
                                          request_timeout=timeout)
        description = described[topic].result(timeout=timeout)
        summary["topic_authorized_operations"] = sorted(
            op.name for op in description.authorized_operations or [])
        summary["described_partitions"] = len(description.partitions)
    except KafkaException as err:
        fail("admin call failed: %s" % err, **summary)
    emit(summary)


if __name__ == "__main__":
    main()
