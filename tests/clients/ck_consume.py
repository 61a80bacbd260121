"""Read a whole topic with confluent-kafka (librdkafka), without a consumer group.

The consumer has a group.id (librdkafka requires one) but only uses assign() from
the beginning with auto-commit off, so no group coordinator API is needed. It reads
until every partition has reported end-of-partition and reached the high watermark
measured before reading. Prints {"client", "topic", "partitions", "low_watermarks",
"high_watermarks", "records": [record...]} with records in the order received.
"""

import argparse
import time

from e2e_common import describe_record, emit, fail, missing_module

try:
    from confluent_kafka import (OFFSET_BEGINNING, Consumer, KafkaError, KafkaException,
                                 TopicPartition)
except ImportError as err:
    missing_module("confluent_kafka", err)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True, help="HOST:PORT of the broker")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    deadline = time.monotonic() + args.timeout

    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": "myelin-e2e-assign-only",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
    })

    try:
        metadata = consumer.list_topics(args.topic, timeout=args.timeout)
    except KafkaException as err:
        fail("metadata request failed: %s" % err)
    topic = metadata.topics.get(args.topic)
    if topic is None or topic.error is not None:
        fail("topic metadata error: %s" % (None if topic is None else topic.error))
    partitions = sorted(topic.partitions)
    if not partitions:
        fail("topic has no partitions")

    low, high = {}, {}
    for partition in partitions:
        try:
            lo, hi = consumer.get_watermark_offsets(
                TopicPartition(args.topic, partition), timeout=args.timeout)
        except KafkaException as err:
            fail("ListOffsets for partition %d failed: %s" % (partition, err))
        low[partition], high[partition] = lo, hi

    consumer.assign([TopicPartition(args.topic, p, OFFSET_BEGINNING) for p in partitions])

    records = []
    errors = []
    at_eof = set()
    next_offset = {p: low[p] for p in partitions}

    def finished():
        return all(p in at_eof and next_offset[p] >= high[p] for p in partitions)

    while not finished():
        if time.monotonic() > deadline:
            consumer.close()
            fail("timed out before reaching the end of every partition",
                 records=records, high_watermarks=high, next_offsets=next_offset,
                 partitions_at_eof=sorted(at_eof), consume_errors=errors[:20])
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        if msg.error() is not None:
            if msg.error().code() == KafkaError._PARTITION_EOF:
                at_eof.add(msg.partition())
                # The end's offset: past control batches (a new leader's epoch marker, a
                # transaction marker) that are never delivered as records.
                next_offset[msg.partition()] = max(next_offset[msg.partition()], msg.offset())
            else:
                errors.append(str(msg.error()))
            continue
        at_eof.discard(msg.partition())
        next_offset[msg.partition()] = msg.offset() + 1
        records.append(describe_record(msg.partition(), msg.offset(), msg.key(), msg.value()))

    consumer.close()
    summary = {
        "client": "confluent-kafka",
        "topic": args.topic,
        "partitions": len(partitions),
        "low_watermarks": {str(p): low[p] for p in partitions},
        "high_watermarks": {str(p): high[p] for p in partitions},
        "records": records,
    }
    if errors:
        fail("consumer reported errors: %s" % errors[:5], **summary)
    emit(summary)


if __name__ == "__main__":
    main()
