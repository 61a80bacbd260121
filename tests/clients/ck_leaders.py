"""Print each partition's leader as the cluster's metadata names it, with confluent-kafka.

Prints {"client", "topic", "leaders": {"<partition>": leader node id}} (-1 while a
partition has no leader) and exits 1 if the topic is unknown.
"""

import argparse

from e2e_common import emit, fail, missing_module

try:
    from confluent_kafka.admin import AdminClient
except ImportError as err:
    missing_module("confluent_kafka", err)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True, help="HOST:PORT[,HOST:PORT...]")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    metadata = AdminClient({"bootstrap.servers": args.bootstrap}).list_topics(
        args.topic, timeout=args.timeout)
    topic = metadata.topics.get(args.topic)
    if topic is None or topic.error is not None:
        fail("topic metadata error: %s" % (None if topic is None else topic.error))
    leaders = {str(p): topic.partitions[p].leader for p in sorted(topic.partitions)}
    emit({"client": "confluent-kafka", "topic": args.topic, "leaders": leaders})


if __name__ == "__main__":
    main()
