"""Produce messages with confluent-kafka (librdkafka) and report every delivery.

Optionally creates the topic first with the AdminClient (CreateTopics). Prints
{"client", "topic", "produced", "deliveries": [record...]} where each delivery has
partition, offset, key, value (short text), sha256 and len. Exits 1 if any message
was not acknowledged.
"""

import argparse
import time

from e2e_common import describe_record, emit, fail, keyed_message, missing_module, mixed_payload

try:
    from confluent_kafka import Producer
except ImportError as err:
    missing_module("confluent_kafka", err)

from ck_create_topic import create_topic


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True, help="HOST:PORT of the broker")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--keys", type=int, default=20)
    parser.add_argument("--start", type=int, default=0, help="index of the first message")
    parser.add_argument("--create-partitions", type=int, default=0,
                        help="create the topic with this many partitions first (0: don't)")
    parser.add_argument("--compression", default="none",
                        help="compression.type: none, gzip, snappy, lz4 or zstd")
    parser.add_argument("--payload", choices=["keyed", "mixed"], default="keyed",
                        help="keyed: short text values; mixed: small, large and random bytes")
    parser.add_argument("--one-per-batch", action="store_true",
                        help="flush after every message so each one is its own batch")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()

    if args.create_partitions > 0:
        try:
            create_topic(args.bootstrap, args.topic, args.create_partitions, args.timeout)
        except Exception as err:  # noqa: BLE001 - any failure is reported in the JSON
            fail("create_topics failed: %s" % err)

    producer = Producer({
        "bootstrap.servers": args.bootstrap,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": args.compression,
        "message.timeout.ms": int(args.timeout * 1000),
    })

    deliveries = []
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append("%s (key %r)" % (err, msg.key()))
        else:
            deliveries.append(describe_record(msg.partition(), msg.offset(), msg.key(), msg.value()))

    deadline = time.monotonic() + args.timeout
    for index in range(args.start, args.start + args.messages):
        key, text = keyed_message(index, args.keys)
        value = text.encode() if args.payload == "keyed" else mixed_payload(index)
        while True:
            try:
                producer.produce(args.topic, key=key.encode(), value=value, on_delivery=on_delivery)
                break
            except BufferError:
                if time.monotonic() > deadline:
                    fail("local queue stayed full until the timeout")
                producer.poll(0.05)
        producer.poll(0)
        if args.one_per_batch:
            producer.flush(args.timeout)

    remaining = producer.flush(max(0.0, deadline - time.monotonic()) + 5.0)
    summary = {
        "client": "confluent-kafka",
        "topic": args.topic,
        "produced": len(deliveries),
        "deliveries": deliveries,
    }
    if remaining or errors or len(deliveries) != args.messages:
        fail("not every message was acknowledged", unflushed=remaining,
             delivery_errors=errors[:20], **summary)
    emit(summary)


if __name__ == "__main__":
    main()
