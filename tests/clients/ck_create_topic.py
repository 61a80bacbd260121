"""Create a topic with confluent-kafka's AdminClient (CreateTopics; replication factor 1
unless --replication-factor says otherwise; topic configs from --config KEY=VALUE).

Used directly by tests whose client has no admin API (kcat), and imported by
ck_produce.py. Prints {"client", "topic", "partitions"} and exits 1 on failure.
"""

import argparse

from e2e_common import emit, fail, missing_module

try:
    from confluent_kafka.admin import AdminClient, NewTopic
except ImportError as err:
    missing_module("confluent_kafka", err)


def create_topic(bootstrap, topic, partitions, timeout, replication_factor=1, config=None):
    """Create `topic` and wait for the broker's answer; raises on any error."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=replication_factor,
                  config=config or {})],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    futures[topic].result(timeout=timeout)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True, help="HOST:PORT of the broker")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--partitions", type=int, required=True)
    parser.add_argument("--replication-factor", type=int, default=1)
    parser.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                        help="a topic config, e.g. retention.ms=2000 (repeatable)")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    config = {}
    for item in args.config:
        key, separator, value = item.partition("=")
        if not separator:
            fail("--config %r is not KEY=VALUE" % item)
        config[key] = value
    try:
        create_topic(args.bootstrap, args.topic, args.partitions, args.timeout,
                     args.replication_factor, config)
    except Exception as err:  # noqa: BLE001 - any failure is reported in the JSON
        fail("create_topics failed: %s" % err)
    emit({"client": "confluent-kafka", "topic": args.topic, "partitions": args.partitions})


if __name__ == "__main__":
    main()
