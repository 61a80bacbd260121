"""Transactions with confluent-kafka (librdkafka): one transaction per letter of --pattern.

One of three scripts with the same command line and output (ck_txn_produce.py,
kp_txn_produce.py, tests/js/txn_produce.js); see e2e_common.txn_produce_args for the flags.
Transaction i holds --messages messages, keyed_message(start + i * messages + j), written to
--topic (by key, or all to --partition); its letter says how it ends: c commit, a abort,
x leave it open and exit at once (os._exit: no abort, no close) so the transaction stays open
until the coordinator times it out or a new producer with the same id fences it.

Every line on stdout is one JSON object with "event", "client" and "ts" (wall-clock seconds):
  {"event": "initialized", "transactional_id": id}          init_transactions returned
  {"event": "zombie_open", "values": [...], "deliveries": [...]}    --fence only: the first
        producer's transaction is open with these messages acknowledged
  {"event": "fenced", "stage": "send"|"commit", "error": text, "code": c, "name": n,
   "fatal": bool}                                            --fence only: the zombie failed
  {"event": "holding", "index": i, "seconds": s, "values": [...]}    messages acknowledged,
        the transaction stays open for s seconds (--hold / --hold-at)
  {"event": "transaction", "index": i, "outcome": "committed"|"aborted"|"open"|"failed",
   "values": [...], "deliveries": [{"partition", "offset", "key", "value"}...],
   "offsets": {"group", "topic", "partition", "offset"} | null, "error": {...} (failed only)}
  {"event": "summary", "topic": t, "transactional_id": id, "transactions": n,
   "committed": [values], "aborted": [values], "open": [values], "exited_open": bool}
The summary is always the last line (also before the os._exit of x). Exits 0 when every
transaction ended as its letter asked (and, with --fence, the zombie was fenced); else
prints {"error": ...} last and exits 1. A watchdog bounds the whole run.
"""

import os
import sys
import time

from e2e_common import (emit, event_printer, fail, missing_module, txn_messages,
                        txn_offset, txn_produce_args, txn_watchdog_seconds,
                        txn_zombie_messages, watchdog)

try:
    from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
except ImportError as err:
    missing_module("confluent_kafka", err)

from ck_create_topic import create_topic

CLIENT = "confluent-kafka"


def error_fields(err):
    """JSON fields describing a client exception (a KafkaError's code, name and flags)."""
    kerr = err.args[0] if isinstance(err, KafkaException) and err.args else err
    if isinstance(kerr, KafkaError):
        return {"error": kerr.str(), "code": kerr.code(), "name": kerr.name(),
                "fatal": kerr.fatal(), "retriable": kerr.retriable(),
                "abortable": kerr.txn_requires_abort()}
    return {"error": str(err), "code": None, "name": type(err).__name__,
            "fatal": None, "retriable": None, "abortable": None}


def log_client_error(err):
    """error_cb: without one, confluent-kafka raises a fatal error (e.g. _FENCED) from inside
    whatever callback runs next; the script sees it in the calls' results instead."""
    sys.stderr.write("client error: %s\n" % err)


def make_producer(args):
    return Producer({
        "bootstrap.servers": args.bootstrap,
        "error_cb": log_client_error,
        "transactional.id": args.transactional_id,
        "transaction.timeout.ms": args.transaction_timeout_ms,
        "message.timeout.ms": min(int(args.timeout * 1000), args.transaction_timeout_ms),
        "acks": "all",
        "linger.ms": 5,
    })


class Batch:
    """The messages of one transaction and their delivery reports."""

    def __init__(self, messages):
        self.messages = messages
        self.deliveries = []
        self.errors = []

    def on_delivery(self, err, msg):
        if err is not None:
            self.errors.append(err)
        else:
            self.deliveries.append({
                "partition": msg.partition(), "offset": msg.offset(),
                "key": msg.key().decode(), "value": msg.value().decode()})

    def values(self):
        return [value for _, value in self.messages]


def produce_all(producer, args, batch):
    """Produce the batch and wait for every delivery report; returns the first error."""
    try:
        for key, value in batch.messages:
            kwargs = {"key": key.encode(), "value": value.encode(),
                      "on_delivery": batch.on_delivery}
            if args.partition >= 0:
                kwargs["partition"] = args.partition
            producer.produce(args.topic, **kwargs)
            producer.poll(0)
        remaining = producer.flush(args.timeout)
    except (KafkaException, BufferError) as err:  # e.g. a fenced producer refusing at once
        return err
    except SystemError as err:
        # confluent-kafka 2.x raises a fatal error (_FENCED) while it runs a delivery
        # callback, which surfaces as a SystemError caused by the KafkaException.
        if isinstance(err.__cause__, KafkaException):
            return err.__cause__
        raise
    if batch.errors:
        return KafkaException(batch.errors[0])
    if remaining:
        return RuntimeError("%d messages not delivered within %.0f s" % (remaining, args.timeout))
    return None


def run_zombie(args, event):
    """--fence: a first producer opens a transaction; returns it and its batch."""
    zombie = make_producer(args)
    zombie.init_transactions(args.timeout)
    zombie.begin_transaction()
    batch = Batch(txn_zombie_messages(args))
    failure = produce_all(zombie, args, batch)
    if failure is not None:
        fail("the zombie producer's messages were not acknowledged",
             cause=error_fields(failure))
    event("zombie_open", values=batch.values(), deliveries=batch.deliveries)
    return zombie, batch


def check_fenced(args, event, zombie):
    """The zombie's next send and its commit must both fail once it is fenced."""
    extra = Batch([("zombie-key", "zombie-after-fence")])
    failure = produce_all(zombie, args, extra)
    if failure is None:
        event("fenced", stage="send", error=None, code=None, name=None, fatal=None)
    else:
        event("fenced", stage="send", **error_fields(failure))
    try:
        zombie.commit_transaction(args.timeout)
    except KafkaException as err:
        event("fenced", stage="commit", **error_fields(err))
        return
    fail("the fenced producer's commit succeeded")


def main():
    args = txn_produce_args(__doc__)
    watchdog(txn_watchdog_seconds(args), "ck_txn_produce")
    event = event_printer(CLIENT)
    if args.create_partitions > 0:
        try:
            create_topic(args.bootstrap, args.topic, args.create_partitions, args.timeout)
        except Exception as err:  # noqa: BLE001 - any failure is reported in the JSON
            fail("create_topics failed: %s" % err)

    try:
        zombie = run_zombie(args, event)[0] if args.fence else None
        producer = make_producer(args)
        producer.init_transactions(args.timeout)
    except KafkaException as err:
        fail("init_transactions failed", cause=error_fields(err))
    event("initialized", transactional_id=args.transactional_id)
    if zombie is not None:
        check_fenced(args, event, zombie)

    group_metadata = None
    if args.offsets_group:
        group_metadata = Consumer({
            "bootstrap.servers": args.bootstrap, "group.id": args.offsets_group,
        }).consumer_group_metadata()

    outcomes = {"committed": [], "aborted": [], "open": []}

    def summary(exited_open):
        return {"event": "summary", "client": CLIENT, "ts": time.time(), "topic": args.topic,
                "transactional_id": args.transactional_id,
                "transactions": len(args.pattern), "exited_open": exited_open, **outcomes}

    for index, letter in enumerate(args.pattern):
        batch = Batch(txn_messages(args, index))
        offsets = None
        report = {"index": index, "values": batch.values()}
        try:
            producer.begin_transaction()
            failure = produce_all(producer, args, batch)
            if failure is not None:
                raise failure
            if group_metadata is not None:
                offsets = {"group": args.offsets_group, "topic": args.offsets_topic,
                           "partition": 0, "offset": txn_offset(args, index)}
                producer.send_offsets_to_transaction(
                    [TopicPartition(args.offsets_topic, 0, offsets["offset"])],
                    group_metadata, args.timeout)
            if letter == "x":
                event("transaction", outcome="open", deliveries=batch.deliveries,
                      offsets=offsets, **report)
                outcomes["open"].extend(batch.values())
                emit(summary(True))
                os._exit(0)
            if index in args.held:
                event("holding", index=index, seconds=args.hold, values=batch.values())
                time.sleep(args.hold)
            if letter == "c":
                producer.commit_transaction(args.timeout)
            else:
                producer.abort_transaction(args.timeout)
        except Exception as err:  # noqa: BLE001 - reported, then the run fails
            event("transaction", outcome="failed", deliveries=batch.deliveries,
                  offsets=offsets, error=error_fields(err), **report)
            fail("transaction %d failed: %s" % (index, err), **summary(False))
        outcome = "committed" if letter == "c" else "aborted"
        outcomes[outcome].extend(batch.values())
        event("transaction", outcome=outcome, deliveries=batch.deliveries, offsets=offsets,
              **report)
    producer.flush(args.timeout)
    emit(summary(False))


if __name__ == "__main__":
    main()
