"""A confluent-kafka (librdkafka) consumer in a consumer group that reports what it does.

One of three scripts with the same command line and output (ck_group_consume.py,
kp_group_consume.py, tests/js/group_consume.js), driven by tests/tests/consumer_groups.rs.
Every line on stdout is one JSON object, flushed at once, with "event", "client" (--client-name)
and "ts" (wall-clock seconds, so the test can order events of several processes):
  {"event": "started"}
  {"event": "assigned", "partitions": [...]}   the whole new assignment (eager protocol)
  {"event": "revoked", "partitions": [...]}    before giving partitions up (after committing)
  {"event": "lost", "partitions": [...]}       partitions taken away without a revoke
  {"event": "message", "partition": p, "offset": o, "value": v}
  {"event": "stray", "partition": p, "offset": o}   a message of a partition not owned: skipped
  {"event": "committed", "partition": p, "offset": next}   only once the broker acknowledged it
  {"event": "commit_failed", "partitions": [...], "error": "..."}
  {"event": "closed", "final_commit_ok": bool}   after SIGTERM: committed, group left
Auto-commit is off. What was processed is committed synchronously (explicit offsets, the next
offset to read) every --commit-every messages or --commit-interval-ms, on revocation and on
SIGTERM; a commit covers only partitions currently owned. Each message takes --delay-ms, so a
backlog builds up and the test can act mid-stream.
"""

import sys
import time

from e2e_common import event_printer, group_consumer_args, missing_module, stop_on_sigterm

try:
    from confluent_kafka import Consumer, KafkaException, TopicPartition
except ImportError as err:
    missing_module("confluent_kafka", err)


def main():
    args = group_consumer_args(__doc__)
    event = event_printer(args.client_name)
    stopping = stop_on_sigterm()

    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "client.id": args.client_name,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": args.session_timeout_ms,
        "heartbeat.interval.ms": 1000,
    })
    owned = set()
    pending = {}  # partition -> next offset to commit (processed, not committed yet)
    state = {"last_commit": time.monotonic(), "since_commit": 0}

    def commit(partitions=None):
        """Commit what was processed on `partitions` (default: all owned); returns success."""
        chosen = owned if partitions is None else set(partitions) & owned
        offsets = {p: o for p, o in pending.items() if p in chosen}
        state["last_commit"] = time.monotonic()
        state["since_commit"] = 0
        if not offsets:
            return True
        try:
            results = consumer.commit(
                offsets=[TopicPartition(args.topic, p, o) for p, o in sorted(offsets.items())],
                asynchronous=False)
        except KafkaException as error:
            event("commit_failed", partitions=sorted(offsets), error=str(error))
            return False
        ok = True
        for tp in results or []:
            if tp.error is None:
                event("committed", partition=tp.partition, offset=tp.offset)
                if pending.get(tp.partition) == tp.offset:
                    del pending[tp.partition]
            else:
                ok = False
                event("commit_failed", partitions=[tp.partition], error=str(tp.error))
        return ok

    def on_assign(_consumer, partitions):
        owned.clear()
        owned.update(tp.partition for tp in partitions)
        pending.clear()
        event("assigned", partitions=sorted(owned))

    def on_revoke(_consumer, partitions):
        revoked = sorted(tp.partition for tp in partitions)
        commit(revoked)
        for partition in revoked:
            owned.discard(partition)
            pending.pop(partition, None)
        event("revoked", partitions=revoked)

    def on_lost(_consumer, partitions):
        lost = sorted(tp.partition for tp in partitions)
        for partition in lost:
            owned.discard(partition)
            pending.pop(partition, None)
        event("lost", partitions=lost)

    event("started")
    consumer.subscribe([args.topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
    while not stopping["now"]:
        message = consumer.poll(0.1)
        if message is not None:
            if message.error():
                print("consume error: %s" % message.error(), file=sys.stderr, flush=True)
            elif message.partition() not in owned:
                event("stray", partition=message.partition(), offset=message.offset())
            else:
                event("message", partition=message.partition(), offset=message.offset(),
                      value=message.value().decode())
                pending[message.partition()] = message.offset() + 1
                state["since_commit"] += 1
                if args.delay_ms > 0:
                    time.sleep(args.delay_ms / 1000.0)
        due = time.monotonic() - state["last_commit"] >= args.commit_interval_ms / 1000.0
        if pending and (state["since_commit"] >= args.commit_every or due):
            commit()
    final_ok = commit()
    consumer.close()  # revokes (on_revoke: nothing left to commit) and sends LeaveGroup
    event("closed", final_commit_ok=final_ok)


if __name__ == "__main__":
    main()
