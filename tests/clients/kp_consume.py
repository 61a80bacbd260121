"""Read a whole topic with kafka-python using assign() and no consumer group.

Takes the end offsets (ListOffsets latest) before reading, seeks every partition
to the beginning and polls until each position reaches its end offset. Prints
{"client", "topic", "partitions", "high_watermarks", "records": [record...]}.
"""

import argparse
import time

from e2e_common import describe_record, emit, fail, missing_module

try:
    from kafka import KafkaConsumer, TopicPartition
except ImportError as err:
    missing_module("kafka (kafka-python)", err)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True, help="HOST:PORT of the broker")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    deadline = time.monotonic() + args.timeout
    timeout_ms = int(args.timeout * 1000)

    consumer = KafkaConsumer(
        bootstrap_servers=args.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=timeout_ms,
    )

    partitions = set()
    while not partitions:
        partitions = consumer.partitions_for_topic(args.topic)
        if not partitions:
            if time.monotonic() > deadline:
                fail("topic not found in metadata")
            time.sleep(0.2)
    tps = [TopicPartition(args.topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    end = consumer.end_offsets(tps, timeout_ms=timeout_ms)

    records = []
    while not all(consumer.position(tp, timeout_ms=timeout_ms) >= end[tp] for tp in tps):
        if time.monotonic() > deadline:
            fail("timed out before reaching the end offsets", records=records,
                 high_watermarks={str(tp.partition): end[tp] for tp in tps})
        batches = consumer.poll(timeout_ms=200)
        for tp, messages in batches.items():
            for msg in messages:
                records.append(describe_record(tp.partition, msg.offset, msg.key, msg.value))
    consumer.close()

    emit({
        "client": "kafka-python",
        "topic": args.topic,
        "partitions": len(tps),
        "high_watermarks": {str(tp.partition): end[tp] for tp in tps},
        "records": records,
    })


if __name__ == "__main__":
    main()
