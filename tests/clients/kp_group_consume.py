"""A kafka-python consumer in a consumer group, printing what it does.

The same command line and JSON events as ck_group_consume.py (see there): assigned,
revoked, message, committed (only once acknowledged) and closed (after SIGTERM: the last
commit made and the group left). Auto-commit is off; offsets are committed synchronously
every --commit-every messages, on revocation and at the end.
"""

import argparse
import json
import logging
import signal
import sys
import time

from e2e_common import missing_module

try:
    from kafka import ConsumerRebalanceListener, KafkaConsumer
    from kafka.errors import KafkaError
    from kafka.structs import OffsetAndMetadata
except ImportError as err:
    missing_module("kafka", err)


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
    # The client's own warnings (lost connections, retries) go to stderr for the test's
    # failure report.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("kafka.coordinator").setLevel(logging.INFO)

    stopping = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stopping.update(now=True))
    consumer = KafkaConsumer(
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        client_id=args.name,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=args.session_timeout_ms,
        heartbeat_interval_ms=1000,
    )
    # Next offset to commit per partition: what was processed and not committed yet.
    pending = {}

    def commit():
        owned = consumer.assignment()
        offsets = {tp: OffsetAndMetadata(offset, "", -1)
                   for tp, offset in pending.items() if tp in owned}
        pending.clear()
        if not offsets:
            return
        try:
            consumer.commit(offsets)
        except KafkaError as error:
            print("commit failed: %r" % error, file=sys.stderr)
            return
        for tp, committed in sorted(offsets.items()):
            event("committed", partition=tp.partition, offset=committed.offset)

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            commit()
            event("revoked", partitions=sorted(tp.partition for tp in revoked))

        def on_partitions_assigned(self, assigned):
            event("assigned", partitions=sorted(tp.partition for tp in assigned))

    consumer.subscribe([args.topic], listener=Listener())
    since_commit = 0
    while not stopping["now"]:
        batches = consumer.poll(timeout_ms=100)
        for tp, records in sorted(batches.items()):
            for record in records:
                event("message", partition=tp.partition, offset=record.offset,
                      value=record.value.decode())
                pending[tp] = record.offset + 1
                since_commit += 1
        if since_commit >= args.commit_every:
            commit()
            since_commit = 0
    commit()
    consumer.close()
    event("closed")


if __name__ == "__main__":
    main()
