"""Produce keyed messages with kafka-python (acks=all) and report every delivery.

Optionally creates the topic first with KafkaAdminClient (CreateTopics). Uses
kafka-python's defaults otherwise (3.x: idempotence on, so InitProducerId is
needed). Prints {"client", "topic", "produced", "deliveries": [record...]} and
exits 1 if any message was not acknowledged.
"""

import argparse

from e2e_common import describe_record, emit, fail, keyed_message, missing_module

try:
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient
except ImportError as err:
    missing_module("kafka (kafka-python)", err)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True, help="HOST:PORT of the broker")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--keys", type=int, default=20)
    parser.add_argument("--create-partitions", type=int, default=0,
                        help="create the topic with this many partitions first (0: don't)")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    timeout_ms = int(args.timeout * 1000)

    if args.create_partitions > 0:
        try:
            admin = KafkaAdminClient(bootstrap_servers=args.bootstrap, request_timeout_ms=timeout_ms)
            admin.create_topics(
                {args.topic: {"num_partitions": args.create_partitions, "replication_factor": 1}},
                timeout_ms=timeout_ms,
                wait_for_metadata=True,
            )
            admin.close()
        except Exception as err:  # noqa: BLE001 - any failure is reported in the JSON
            fail("create_topics failed: %r" % err)

    producer = KafkaProducer(
        bootstrap_servers=args.bootstrap,
        acks="all",
        linger_ms=5,
        max_block_ms=timeout_ms,
        request_timeout_ms=timeout_ms,
    )
    futures = []
    for index in range(args.messages):
        key, value = keyed_message(index, args.keys)
        futures.append((key, value, producer.send(args.topic, key=key.encode(), value=value.encode())))
    producer.flush(timeout=args.timeout)

    deliveries, errors = [], []
    for key, value, future in futures:
        try:
            meta = future.get(timeout=args.timeout)
            deliveries.append(describe_record(meta.partition, meta.offset, key, value.encode()))
        except Exception as err:  # noqa: BLE001 - collected and reported below
            errors.append("%s: %r" % (key, err))
    producer.close(timeout=args.timeout)

    summary = {
        "client": "kafka-python",
        "topic": args.topic,
        "produced": len(deliveries),
        "deliveries": deliveries,
    }
    if errors:
        fail("not every message was acknowledged", delivery_errors=errors[:20], **summary)
    emit(summary)


if __name__ == "__main__":
    main()
