"""Fetch a consumer group's committed offsets with confluent-kafka (OffsetFetch; no join).

Under read_committed (the default here) librdkafka asks with require_stable, so offsets of
a transaction still open are reported only once it ends (the broker answers
UNSTABLE_OFFSET_COMMIT meanwhile and librdkafka retries within --timeout).

Prints {"client", "group", "topic", "offsets": {"p": offset (-1001: none)}} and exits 1 on
failure ({"error": ...}).
"""

import argparse

from e2e_common import emit, fail, missing_module

try:
    from confluent_kafka import Consumer, KafkaException, TopicPartition
except ImportError as err:
    missing_module("confluent_kafka", err)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True, help="HOST:PORT[,HOST:PORT...]")
    parser.add_argument("--group", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--partitions", default="0", help="comma-separated partitions")
    parser.add_argument("--isolation", choices=["read_committed", "read_uncommitted"],
                        default="read_committed")
    parser.add_argument("--timeout", type=float, default=20.0)
    args = parser.parse_args()
    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "isolation.level": args.isolation,
        "enable.auto.commit": False,
    })
    partitions = [int(p) for p in args.partitions.split(",") if p.strip()]
    try:
        found = consumer.committed([TopicPartition(args.topic, p) for p in partitions],
                                   timeout=args.timeout)
    except KafkaException as err:
        fail("committed() failed: %s" % err)
    finally:
        consumer.close()
    errors = [str(tp.error) for tp in found if tp.error is not None]
    if errors:
        fail("committed() reported partition errors: %s" % errors)
    emit({"client": "confluent-kafka", "group": args.group, "topic": args.topic,
          "offsets": {str(tp.partition): tp.offset for tp in found}})


if __name__ == "__main__":
    main()
