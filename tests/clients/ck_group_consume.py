"""A confluent-kafka (librdkafka) consumer in a consumer group, printing what it does.

Used by tests/tests/consumer_groups.rs. Every line on stdout is one JSON event, flushed at
once, with "ts" (wall-clock seconds) so the test can order events across processes:
  {"event": "assigned", "partitions": [...]}   the whole assignment (eager protocol)
  {"event": "revoked", "partitions": [...]}
  {"event": "message", "partition": p, "offset": o, "value": v}
  {"event": "committed", "partition": p, "offset": next}   only once the broker acknowledged
  {"event": "closed"}                                        after SIGTERM: committed, left
Offsets are committed synchronously every --commit-every messages, on revocation and at
the end; auto-commit is off, so a commit is exactly what was processed.
"""

import argparse
import json
import signal
import sys
import time

from e2e_common import missing_module

try:
    from confluent_kafka import Consumer, KafkaException
except ImportError as err:
    missing_module("confluent_kafka", err)


def event(kind, **fields):
    fields.update({"event": kind, "ts": time.time()})
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--session-timeout-ms", type=int, default=6000)
    parser.add_argument("--commit-every", type=int, default=25)
    args = parser.parse_args()

    stopping = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stopping.update(now=True))
    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "client.id": args.name,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": args.session_timeout_ms,
        "heartbeat.interval.ms": 1000,
        "partition.assignment.strategy": "range",
    })

    def commit():
        try:
            committed = consumer.commit(asynchronous=False)
        except KafkaException as error:
            print("commit failed: %s" % error, file=sys.stderr)
            return
        for tp in committed or []:
            if tp.error is None and tp.offset >= 0:
                event("committed", partition=tp.partition, offset=tp.offset)

    def on_assign(_consumer, partitions):
        event("assigned", partitions=sorted(tp.partition for tp in partitions))

    def on_revoke(_consumer, partitions):
        commit()
        event("revoked", partitions=sorted(tp.partition for tp in partitions))

    consumer.subscribe([args.topic], on_assign=on_assign, on_revoke=on_revoke)
    since_commit = 0
    while not stopping["now"]:
        message = consumer.poll(0.1)
        if message is None:
            continue
        if message.error():
            print("consume error: %s" % message.error(), file=sys.stderr)
            continue
        event("message", partition=message.partition(), offset=message.offset(),
              value=message.value().decode())
        since_commit += 1
        if since_commit >= args.commit_every:
            commit()
            since_commit = 0
    commit()
    consumer.close()
    event("closed")


if __name__ == "__main__":
    main()
