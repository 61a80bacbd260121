"""The data- and group-side admin APIs through confluent-kafka's AdminClient.

Steps (each named in --steps, comma-separated), with what each prints in the summary:
- timestamps: creates --topic (1 partition), produces two batches whose records' timestamps
  are out of order (the second gzip-compressed), and asks ListOffsets by timestamp
  (OffsetSpec.for_timestamp) and for the max timestamp (OffsetSpec.max_timestamp):
  "by_timestamp" {asked ms: [offset, timestamp]}, "max_timestamp" [offset, timestamp],
  "earliest", "latest"; "listed_epochs" {spec: [offset, leader epoch]} and the epochs of
  the records a consumer reads ("record_epochs" {offset: epoch}).
- groups: commits an offset with a leader epoch for --group as a standalone consumer,
  reads it back (list_consumer_group_offsets: "committed" [offset, leader_epoch]), deletes
  the group ("deleted": error name or null), deletes it again ("deleted_again"), reads
  the offsets once more ("committed_after" offset); then a member of --group-2 subscribes
  to the topic and is assigned, is described with its authorized operations
  ("described_group": state, member count, operations), and the group is deleted while it
  is a member ("non_empty": error name) and after it closed ("deleted_after_close").
- delete-records: deletes the records before --delete-before ("low_watermark"), then
  lists the earliest offset ("earliest_after").
- earliest: lists the earliest offset ("earliest_now"), e.g. after a restart.

Prints one JSON summary; exits 1 on any unexpected failure.
"""

import argparse
import sys
import time

from e2e_common import emit, fail, missing_module

try:
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec
    from confluent_kafka import ConsumerGroupTopicPartitions
except ImportError as err:
    missing_module("confluent_kafka", err)

# (timestamp of each record) per batch: out of order inside each batch.
BATCHES = [([1000, 5000, 3000, 2000, 4000], "none"), ([6000, 9000, 7000], "gzip")]
ASKED = [0, 2500, 4500, 5500, 6500, 9000, 9001]


def result(future, timeout):
    return future.result(timeout=timeout)


def error_name(err):
    if isinstance(err, KafkaException):
        return err.args[0].name()
    return str(err)


def produce_batches(bootstrap, topic, timeout):
    for timestamps, compression in BATCHES:
        # One flush per batch, and a long linger: the records travel in one batch.
        producer = Producer({
            "bootstrap.servers": bootstrap,
            "linger.ms": 1000,
            "compression.type": compression,
            "acks": "all",
        })
        delivered = []
        for index, timestamp in enumerate(timestamps):
            producer.produce(topic, value=b"v%d" % index, partition=0, timestamp=timestamp,
                             on_delivery=lambda err, msg: delivered.append((err, msg)))
        producer.flush(timeout)
        errors = [str(err) for err, _ in delivered if err is not None]
        if len(delivered) != len(timestamps) or errors:
            fail("produce failed: %s" % errors)


def list_offset(admin, topic, spec, timeout, with_epoch=False):
    """Asked again while the partition has no leader this admin client knows of: just after
    the topic was created (its leader is elected then, and a node learns of it within about
    a second), or during an election after a node died or came back. librdkafka's admin
    fails such a ListOffsets at once ("No leaders found") rather than waiting for one."""
    tp = TopicPartition(topic, 0)
    deadline = time.monotonic() + timeout
    while True:
        try:
            info = result(admin.list_offsets({tp: spec}, request_timeout=timeout)[tp], timeout)
            if with_epoch:
                return [info.offset, info.leader_epoch]
            return [info.offset, info.timestamp]
        except KafkaException as err:
            if time.monotonic() > deadline:
                raise
            sys.stderr.write("list offsets: %s; asking again\n" % err)
            time.sleep(0.5)


def step_timestamps(admin, args, summary):
    futures = admin.create_topics([NewTopic(args.topic, num_partitions=1,
                                            replication_factor=args.replication_factor)],
                                  operation_timeout=args.timeout)
    result(futures[args.topic], args.timeout)
    produce_batches(args.bootstrap, args.topic, args.timeout)
    summary["by_timestamp"] = {
        str(asked): list_offset(admin, args.topic, OffsetSpec.for_timestamp(asked), args.timeout)
        for asked in ASKED
    }
    summary["max_timestamp"] = list_offset(admin, args.topic, OffsetSpec.max_timestamp(),
                                           args.timeout)
    summary["earliest"] = list_offset(admin, args.topic, OffsetSpec.earliest(), args.timeout)[0]
    summary["latest"] = list_offset(admin, args.topic, OffsetSpec.latest(), args.timeout)[0]
    # The leader epoch of each answer, next to that of the records a consumer reads.
    specs = {"earliest": OffsetSpec.earliest(), "latest": OffsetSpec.latest(),
             "max_timestamp": OffsetSpec.max_timestamp(),
             "5500": OffsetSpec.for_timestamp(5500), "9001": OffsetSpec.for_timestamp(9001)}
    summary["listed_epochs"] = {
        name: list_offset(admin, args.topic, spec, args.timeout, with_epoch=True)
        for name, spec in specs.items()
    }
    summary["record_epochs"] = record_epochs(args.bootstrap, args.topic, 8, args.timeout)


def record_epochs(bootstrap, topic, count, timeout):
    """The leader epoch of each of the first `count` records, by offset."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "admin-data-epochs",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    epochs = {}
    deadline = time.monotonic() + timeout
    try:
        while len(epochs) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                epochs[str(msg.offset())] = msg.leader_epoch()
    finally:
        consumer.close()
    return epochs


def committed(admin, group, topic, timeout):
    request = [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0)])]
    answer = result(admin.list_consumer_group_offsets(request, request_timeout=timeout)[group],
                    timeout)
    partition = answer.topic_partitions[0]
    return [partition.offset, partition.leader_epoch]


def delete_group(admin, group, timeout):
    """None once deleted, else the error's name."""
    try:
        result(admin.delete_consumer_groups([group], request_timeout=timeout)[group], timeout)
        return None
    except KafkaException as err:
        return error_name(err)


def step_groups(admin, args, summary):
    consumer = Consumer({"bootstrap.servers": args.bootstrap, "group.id": args.group,
                         "enable.auto.commit": False})
    consumer.commit(offsets=[TopicPartition(args.topic, 0, 4, leader_epoch=0)],
                    asynchronous=False)
    consumer.close()
    summary["committed"] = committed(admin, args.group, args.topic, args.timeout)
    summary["deleted"] = delete_group(admin, args.group, args.timeout)
    summary["deleted_again"] = delete_group(admin, args.group, args.timeout)
    summary["committed_after"] = committed(admin, args.group, args.topic, args.timeout)[0]

    member = Consumer({"bootstrap.servers": args.bootstrap, "group.id": args.group_2,
                       "auto.offset.reset": "earliest", "session.timeout.ms": 10000})
    member.subscribe([args.topic])
    deadline = time.monotonic() + args.timeout
    while not member.assignment():
        if time.monotonic() > deadline:
            fail("the member of %s was never assigned" % args.group_2)
        member.poll(0.2)
    described = result(admin.describe_consumer_groups(
        [args.group_2], include_authorized_operations=True,
        request_timeout=args.timeout)[args.group_2], args.timeout)
    summary["described_group"] = {
        "state": described.state.name,
        "members": len(described.members),
        "authorized_operations": sorted(op.name for op in described.authorized_operations or []),
    }
    summary["non_empty"] = delete_group(admin, args.group_2, args.timeout)
    member.close()
    summary["deleted_after_close"] = delete_group(admin, args.group_2, args.timeout)


def step_delete_records(admin, args, summary):
    tp = TopicPartition(args.topic, 0, args.delete_before)
    # A retriable error (NOT_LEADER_FOR_PARTITION while an election moves the leader on a
    # loaded machine) is retried, as an application would; any other error fails the step.
    deadline = time.monotonic() + args.timeout
    while True:
        try:
            deleted = result(admin.delete_records([tp], request_timeout=args.timeout)[tp],
                             args.timeout)
            break
        except KafkaException as err:
            if not err.args[0].retriable() or time.monotonic() > deadline:
                raise
            sys.stderr.write("delete-records: %s; asking again\n" % err)
            time.sleep(0.5)
    summary["low_watermark"] = deleted.low_watermark
    summary["earliest_after"] = list_offset(admin, args.topic, OffsetSpec.earliest(),
                                            args.timeout)[0]


def step_earliest(admin, args, summary):
    # Asked while the partition may have no leader (see list_offset).
    summary["earliest_now"] = list_offset(admin, args.topic, OffsetSpec.earliest(),
                                          args.timeout)[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", default="admin-data-group")
    parser.add_argument("--group-2", default="admin-data-group-2")
    parser.add_argument("--replication-factor", type=int, default=1)
    parser.add_argument("--delete-before", type=int, default=3)
    parser.add_argument("--steps", default="timestamps,groups")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    summary = {"client": "confluent-kafka"}
    steps = {"timestamps": step_timestamps, "groups": step_groups,
             "delete-records": step_delete_records, "earliest": step_earliest}
    for name in args.steps.split(","):
        try:
            steps[name](admin, args, summary)
        except Exception as err:  # noqa: BLE001 - any failure is reported in the JSON
            fail("step %s failed: %s" % (name, err), summary=summary)
    emit(summary)


if __name__ == "__main__":
    main()
