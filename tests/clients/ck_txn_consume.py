"""Read a topic from the beginning with confluent-kafka under an isolation level, without a
consumer group (assign only, no commits).

Reads every partition from its start until no message arrived for --idle seconds, or
--max-messages were read, or --timeout passed (an error). Every line on stdout is one JSON
object:
  {"event": "message", "partition": p, "offset": o, "key": k, "value": v}   in arrival order
  {"event": "done", "client": "confluent-kafka", "topic": t, "isolation": level,
   "messages": n, "stopped": "idle"|"max-messages", "positions": {"p": last offset read + 1},
   "end_offsets": {"p": o}}   last line; end offsets as ListOffsets answers them under the
   isolation level: the last stable offset under read_committed, else the high watermark
Keys and values are text (null for a null key). Under read_committed the consumer sees
nothing of an open transaction nor anything after its first message until it ends, and
never an aborted message; control records are never delivered. Errors print
{"error": ...} last and exit 1.
"""

import argparse
import time

from e2e_common import emit, fail, missing_module, watchdog

try:
    from confluent_kafka import (OFFSET_BEGINNING, Consumer, KafkaError, KafkaException,
                                 TopicPartition)
except ImportError as err:
    missing_module("confluent_kafka", err)


def text(data):
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.hex()


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", required=True, help="HOST:PORT[,HOST:PORT...]")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--isolation", choices=["read_committed", "read_uncommitted"],
                        default="read_committed")
    parser.add_argument("--idle", type=float, default=3.0,
                        help="stop once no message arrived for this many seconds")
    parser.add_argument("--max-messages", type=int, default=0, help="stop after N (0: no limit)")
    parser.add_argument("--timeout", type=float, default=60.0, help="bound of the whole run")
    args = parser.parse_args()
    watchdog(args.timeout + 30, "ck_txn_consume")
    deadline = time.monotonic() + args.timeout

    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": "myelin-e2e-assign-only",
        "isolation.level": args.isolation,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
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
    consumer.assign([TopicPartition(args.topic, p, OFFSET_BEGINNING) for p in partitions])

    count = 0
    positions = {}
    last_message = time.monotonic()
    stopped = "idle"
    while True:
        now = time.monotonic()
        if args.max_messages and count >= args.max_messages:
            stopped = "max-messages"
            break
        if now - last_message >= args.idle:
            break
        if now > deadline:
            consumer.close()
            fail("timed out after %d messages (messages kept arriving)" % count)
        msg = consumer.poll(0.1)
        if msg is None:
            continue
        if msg.error() is not None:
            if msg.error().code() != KafkaError._PARTITION_EOF:
                consumer.close()
                fail("consume error: %s" % msg.error())
            continue
        last_message = time.monotonic()
        count += 1
        positions[str(msg.partition())] = msg.offset() + 1
        emit({"event": "message", "partition": msg.partition(), "offset": msg.offset(),
              "key": text(msg.key()), "value": text(msg.value())})

    end = {}
    for partition in partitions:
        try:
            _, hi = consumer.get_watermark_offsets(TopicPartition(args.topic, partition),
                                                   timeout=args.timeout, cached=False)
        except KafkaException:
            hi = -1
        end[str(partition)] = hi
    consumer.close()
    emit({"event": "done", "client": "confluent-kafka", "topic": args.topic,
          "isolation": args.isolation, "messages": count, "stopped": stopped,
          "positions": positions, "end_offsets": end})


if __name__ == "__main__":
    main()
