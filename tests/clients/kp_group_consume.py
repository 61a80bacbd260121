"""A kafka-python consumer in a consumer group that reports what it does.

Same command line and JSON-lines output as ck_group_consume.py (see there): started,
assigned, revoked, lost, message, stray, committed (only once acknowledged),
commit_failed and closed. Auto-commit is off; what was processed is committed synchronously
(explicit offsets) every --commit-every messages or --commit-interval-ms and on SIGTERM,
then the consumer is closed (which sends LeaveGroup).

kafka-python 3 runs rebalance listeners on its IO thread once that thread is up, and a
blocking commit() there raises RuntimeError ("Cannot block on net.run() from the IO thread
itself"), which poll() re-raises as "User rebalance callback throws an error". So this
script does not commit on revocation: what was processed since the last commit is read
again by the next owner (duplicates back to the last commit, no loss).
"""

import logging
import sys
import time

from e2e_common import event_printer, group_consumer_args, missing_module, stop_on_sigterm

try:
    from kafka import ConsumerRebalanceListener, KafkaConsumer
    from kafka.errors import KafkaError
    from kafka.structs import OffsetAndMetadata
except ImportError as err:
    missing_module("kafka (kafka-python)", err)


def main():
    args = group_consumer_args(__doc__)
    # kafka-python's warnings and errors (e.g. failing requests it retries forever) to stderr.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("kafka.coordinator").setLevel(logging.INFO)  # joins, syncs, revocations

    event = event_printer(args.client_name)
    stopping = stop_on_sigterm()

    consumer = KafkaConsumer(
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        client_id=args.client_name,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=args.session_timeout_ms,
        heartbeat_interval_ms=1000,
        max_poll_records=50,
    )
    owned = set()
    pending = {}  # TopicPartition -> next offset to commit (processed, not committed yet)
    state = {"last_commit": time.monotonic(), "since_commit": 0}

    def commit():
        """Commit what was processed on the owned partitions; returns success."""
        offsets = {tp: OffsetAndMetadata(offset, "", -1)
                   for tp, offset in pending.items() if tp in owned}
        state["last_commit"] = time.monotonic()
        state["since_commit"] = 0
        if not offsets:
            return True
        try:
            consumer.commit(offsets)
        except KafkaError as error:
            event("commit_failed", partitions=sorted(tp.partition for tp in offsets),
                  error=repr(error))
            return False
        for tp, committed in sorted(offsets.items()):
            event("committed", partition=tp.partition, offset=committed.offset)
            if pending.get(tp) == committed.offset:
                del pending[tp]
        return True

    def give_up(kind, partitions):
        for tp in partitions:
            owned.discard(tp)
            pending.pop(tp, None)
        event(kind, partitions=sorted(tp.partition for tp in partitions))

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            give_up("revoked", revoked)

        def on_partitions_lost(self, lost):
            give_up("lost", lost)

        def on_partitions_assigned(self, assigned):
            owned.clear()
            owned.update(assigned)
            pending.clear()
            event("assigned", partitions=sorted(tp.partition for tp in assigned))

    event("started")
    # Know the topic's partitions before joining. Otherwise the leader's first assignment is
    # empty and it rejoins at once when the metadata arrives; kafka-python 3.0.12 can lose
    # that second join if a poll() times out while it is in flight (the SyncGroup answer
    # arrives, but it never applies the assignment and never rejoins).
    deadline = time.monotonic() + 30
    while not consumer.partitions_for_topic(args.topic):
        if time.monotonic() > deadline:
            print("no metadata for %s" % args.topic, file=sys.stderr, flush=True)
            sys.exit(1)
        time.sleep(0.1)
    consumer.subscribe([args.topic], listener=Listener())
    # A long poll: kafka-python 3.0.12 can also lose a rebalance's SyncGroup answer when a
    # poll times out while the join is in flight (the leader then neither applies its
    # assignment nor rejoins); a rebalance here takes about a heartbeat interval, so a 3 s
    # poll rarely times out inside one. poll() returns as soon as records arrive.
    while not stopping["now"]:
        batches = consumer.poll(timeout_ms=3000)
        for tp, records in sorted(batches.items()):
            for record in records:
                if tp not in owned:
                    event("stray", partition=tp.partition, offset=record.offset)
                    continue
                event("message", partition=tp.partition, offset=record.offset,
                      value=record.value.decode())
                pending[tp] = record.offset + 1
                state["since_commit"] += 1
                if args.delay_ms > 0:
                    time.sleep(args.delay_ms / 1000.0)
        due = time.monotonic() - state["last_commit"] >= args.commit_interval_ms / 1000.0
        if pending and (state["since_commit"] >= args.commit_every or due):
            commit()
    final_ok = commit()
    consumer.close()  # revokes (listener) and sends LeaveGroup
    event("closed", final_commit_ok=final_ok)


if __name__ == "__main__":
    main()
