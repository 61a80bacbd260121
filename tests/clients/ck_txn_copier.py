"""Kafka's transactions system-test copier with confluent-kafka (librdkafka):
consume-transform-produce, exactly once.

A read_committed consumer in consumer group --group (auto-commit off) reads --input-topic; a
transactional producer (--transactional-id: unique per copier instance, the same across
its restarts) copies every record (key and value unchanged, output partition by key) to
--output-topic in transactions of up to --transaction-size records. Each transaction also
carries the consumer's positions (send_offsets_to_transaction(consumer.position(assignment),
consumer.consumer_group_metadata())), then commits; with probability --abort-probability
it aborts on purpose instead and seeks the consumer back to the group's committed offsets
(as Kafka's copier does), so those records are copied again. A transaction is also ended
when no record arrived for --flush-after seconds. --max-rate bounds the copy rate (a pause
after each record), so a test's faults land while the copy runs.

Rebalances: on revoke (or loss) the open transaction is aborted; on assignment the consumer
starts from the committed offsets (librdkafka fetches them, with require_stable under
read_committed). A copier killed -9 and restarted with the same --transactional-id fences
its predecessor (init_transactions aborts its open transaction) and resumes from the group's
committed offsets. A fenced copier (fatal error) reports it and exits 1.

It runs until the group's committed offsets of every input partition reached the end offsets
(--end-offsets, or the high watermarks read at start), no transaction is open, and no record
arrived for --idle seconds. (librdkafka's positions move past transaction markers, so an
input topic that ends with one is done at its high watermark too.) SIGTERM stops it early:
the open transaction is aborted, the consumer closed, "done" printed with "stopped": true.

Every line on stdout is one JSON object with "event", "client" (--client-name) and "ts":
  {"event": "started", "transactional_id", "group", "end_offsets": {"p": o}}
  {"event": "assigned", "partitions": [...]}  /  {"event": "revoked"|"lost", "partitions",
   "aborted_open_transaction": bool}
  {"event": "committed", "transaction": n, "records": k, "offsets": {"p": next offset}}
  {"event": "aborted", "transaction": n, "records": k, "reason": "random"|"rebalance"|
   "error: ..."|"stopping", "rewound_to": {"p": offset} | null}
  {"event": "retry", "stage": "send_offsets"|"commit", "error": text}
  {"event": "progress", "copied": c, "committed_transactions": n, "aborted_transactions": a,
   "owned": [...], "committed_offsets": {"p": o}}
  {"event": "done", "copied": c (records in committed transactions), "committed_transactions",
   "aborted_transactions", "committed_offsets": {"p": o}, "end_offsets": {"p": o},
   "stopped": bool}   last line, exit 0
On a fatal error the last line is {"error": ..., "cause": {...}} and the exit status 1.

A transactional call still running HANG_GRACE seconds past its own --timeout is a client
hang, not a broker answer: librdkafka (through 2.16) can wait forever in
send_offsets_to_transaction when the group coordinator it cached left the cluster's metadata
while down (librdkafka#5511; the call's timeout is not applied there: #5456). The copier then
exits 4 with {"error": "... client call hung ..."} as its last line, and the test restarts it
as an operator would.
"""

import argparse
import faulthandler
import os
import random
import sys
import time

from e2e_common import emit, event_printer, fail, missing_module, stop_on_sigterm, watchdog

try:
    from confluent_kafka import (OFFSET_BEGINNING, Consumer, KafkaError, KafkaException,
                                 Producer, TopicPartition)
except ImportError as err:
    missing_module("confluent_kafka", err)

RETRIES = 5
# Seconds past a call's own timeout after which the call counts as hung (see the doc).
HANG_GRACE = 5.0


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", required=True, help="HOST:PORT[,HOST:PORT...]")
    parser.add_argument("--input-topic", required=True)
    parser.add_argument("--output-topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--transactional-id", required=True)
    parser.add_argument("--client-name", default="copier")
    parser.add_argument("--transaction-size", type=int, default=100,
                        help="records per transaction at most (Kafka's test: 750)")
    parser.add_argument("--abort-probability", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=None, help="seed of the random aborts")
    parser.add_argument("--end-offsets", default="",
                        help="P:OFFSET,... of the input (default: high watermarks at start)")
    parser.add_argument("--max-rate", type=float, default=0.0,
                        help="copy at most this many records per second (0: no limit), so "
                             "a test's faults land while the copy runs")
    parser.add_argument("--flush-after", type=float, default=0.5,
                        help="end the open transaction after this many idle seconds")
    parser.add_argument("--idle", type=float, default=3.0,
                        help="once everything is committed, exit after this many idle seconds")
    parser.add_argument("--progress-interval", type=float, default=2.0)
    parser.add_argument("--session-timeout-ms", type=int, default=6000)
    parser.add_argument("--transaction-timeout-ms", type=int, default=60000)
    parser.add_argument("--timeout", type=float, default=30.0, help="bound of each client call")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="bound of the run")
    return parser.parse_args()


def error_fields(err):
    kerr = err.args[0] if isinstance(err, KafkaException) and err.args else err
    if isinstance(kerr, KafkaError):
        return {"error": kerr.str(), "code": kerr.code(), "name": kerr.name(),
                "fatal": kerr.fatal(), "retriable": kerr.retriable(),
                "abortable": kerr.txn_requires_abort()}
    return {"error": str(err), "code": None, "name": type(err).__name__,
            "fatal": None, "retriable": None, "abortable": None}


def kafka_error(err):
    """The KafkaError inside a KafkaException, or None."""
    kerr = err.args[0] if err.args else None
    return kerr if isinstance(kerr, KafkaError) else None


def by_partition(tps):
    return {str(tp.partition): tp.offset for tp in tps}


class Copier:
    def __init__(self, args, event):
        self.args = args
        self.event = event
        self.rng = random.Random(args.seed)
        self.owned = set()
        self.in_txn = False
        self.txn_records = 0
        self.transactions = 0  # transactions begun
        self.committed_txns = 0
        self.aborted_txns = 0
        self.copied = 0
        self.delivery_errors = []
        self.consumer = Consumer({
            "bootstrap.servers": args.bootstrap,
            "error_cb": lambda err: sys.stderr.write("consumer error: %s\n" % err),
            "group.id": args.group,
            "client.id": args.client_name,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": args.session_timeout_ms,
            "heartbeat.interval.ms": 1000,
        })
        self.producer = Producer({
            "bootstrap.servers": args.bootstrap,
            # Without an error_cb confluent-kafka raises a fatal error (e.g. _FENCED) from
            # inside the next callback; the transactional calls report it instead.
            "error_cb": lambda err: sys.stderr.write("producer error: %s\n" % err),
            "transactional.id": args.transactional_id,
            "transaction.timeout.ms": args.transaction_timeout_ms,
            "message.timeout.ms": min(int(args.timeout * 1000), args.transaction_timeout_ms),
            "acks": "all",
            "linger.ms": 5,
            "client.id": args.client_name,
            # e.g. LIBRDKAFKA_DEBUG=eos,msg to trace sequences and retries when diagnosing.
            **({"debug": os.environ["LIBRDKAFKA_DEBUG"]} if os.environ.get("LIBRDKAFKA_DEBUG") else {}),
        })

    # --- setup -------------------------------------------------------------------------

    def input_partitions(self):
        try:
            metadata = self.consumer.list_topics(self.args.input_topic, timeout=self.args.timeout)
        except KafkaException as err:
            fail("metadata request failed", cause=error_fields(err))
        topic = metadata.topics.get(self.args.input_topic)
        if topic is None or topic.error is not None or not topic.partitions:
            fail("input topic metadata error: %s" % (None if topic is None else topic.error))
        return sorted(topic.partitions)

    def watermarks(self, partitions):
        low, high = {}, {}
        for p in partitions:
            try:
                low[p], high[p] = self.consumer.get_watermark_offsets(
                    TopicPartition(self.args.input_topic, p), timeout=self.args.timeout)
            except KafkaException as err:
                fail("ListOffsets of input partition %d failed" % p, cause=error_fields(err))
        return low, high

    # --- rebalance callbacks (run inside consumer.poll) ---------------------------------

    def on_assign(self, _consumer, partitions):
        self.owned = {tp.partition for tp in partitions}
        self.event("assigned", partitions=sorted(self.owned))

    def on_revoke(self, _consumer, partitions, kind="revoked"):
        had_txn = self.in_txn
        if had_txn:
            self.abort("rebalance", rewind=False)
        gone = sorted(tp.partition for tp in partitions)
        self.owned -= set(gone)
        self.event(kind, partitions=gone, aborted_open_transaction=had_txn)

    def on_lost(self, consumer, partitions):
        self.on_revoke(consumer, partitions, kind="lost")

    # --- transactions ------------------------------------------------------------------

    def on_delivery(self, err, _msg):
        if err is not None:
            self.delivery_errors.append(str(err))

    def copy(self, msg):
        try:
            if not self.in_txn:
                self.producer.begin_transaction()
                self.in_txn = True
                self.txn_records = 0
                self.transactions += 1
            while True:
                try:
                    self.producer.produce(self.args.output_topic, key=msg.key(),
                                          value=msg.value(), on_delivery=self.on_delivery)
                    break
                except BufferError:
                    self.producer.poll(0.05)
        except KafkaException as err:
            kerr = kafka_error(err)
            if self.in_txn and kerr is not None and not kerr.fatal():
                # The transaction failed (an abortable error; produce then refuses with
                # _STATE): abort it and copy again from the committed offsets, as Kafka's
                # copier does. The record is consumed again after the rewind.
                self.abort("error: %s" % kerr.str(), rewind=True)
                return
            self.fatal("produce", err)
        self.producer.poll(0)
        self.txn_records += 1

    def fatal(self, stage, err):
        self.event("fatal", stage=stage, **error_fields(err))
        fail("%s failed fatally: %s" % (stage, err), cause=error_fields(err))

    def bounded(self, stage, call):
        """Runs a transactional call; exits 4 if it outlives its timeout (see the doc)."""
        guard = watchdog(self.args.timeout + HANG_GRACE,
                         "%s (client call hung past its %.0f s timeout)" % (stage, self.args.timeout))
        try:
            return call()
        finally:
            guard.cancel()

    def retrying(self, stage, call):
        """Runs call(); retriable errors are retried, abortable ones returned, fatal fail."""
        for attempt in range(RETRIES):
            try:
                self.bounded(stage, call)
                return None
            except KafkaException as err:
                kerr = kafka_error(err)
                if kerr is None or kerr.fatal():
                    self.fatal(stage, err)
                if kerr.txn_requires_abort():
                    return err
                if kerr.retriable() and attempt + 1 < RETRIES:
                    self.event("retry", stage=stage, error=kerr.str())
                    continue
                return err
        return None

    def finish(self):
        """Sends the positions and commits the open transaction (or aborts it)."""
        assignment = self.consumer.assignment()
        positions = [tp for tp in self.consumer.position(assignment) if tp.offset >= 0]
        metadata = self.consumer.consumer_group_metadata()
        failure = self.retrying("send_offsets", lambda: self.producer.send_offsets_to_transaction(
            positions, metadata, self.args.timeout))
        if failure is not None:
            self.abort("error: %s" % failure, rewind=True)
            return
        if self.rng.random() < self.args.abort_probability:
            self.abort("random", rewind=True)
            return
        failure = self.retrying("commit", lambda: self.producer.commit_transaction(
            self.args.timeout))
        if failure is not None:
            self.abort("error: %s" % failure, rewind=True)
            return
        self.in_txn = False
        self.committed_txns += 1
        self.copied += self.txn_records
        self.event("committed", transaction=self.transactions, records=self.txn_records,
                   offsets=by_partition(positions))

    def abort(self, reason, rewind):
        records = self.txn_records
        try:
            self.bounded("abort", lambda: self.producer.abort_transaction(self.args.timeout))
        except KafkaException as err:
            self.fatal("abort", err)
        self.in_txn = False
        self.txn_records = 0
        self.aborted_txns += 1
        self.delivery_errors.clear()
        rewound = self.rewind() if rewind else None
        self.event("aborted", transaction=self.transactions, records=records, reason=reason,
                   rewound_to=rewound)

    def rewind(self):
        """Seeks every assigned partition back to the group's committed offset."""
        assignment = self.consumer.assignment()
        if not assignment:
            return {}
        try:
            committed = self.consumer.committed(assignment, timeout=self.args.timeout)
        except KafkaException as err:
            self.fatal("committed", err)
        rewound = {}
        for tp in committed:
            offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            try:
                self.consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
            except KafkaException as err:
                self.fatal("seek", err)
            rewound[str(tp.partition)] = offset
        return rewound

    def committed_offsets(self, partitions):
        try:
            found = self.consumer.committed(
                [TopicPartition(self.args.input_topic, p) for p in partitions],
                timeout=self.args.timeout)
        except KafkaException as err:
            self.event("retry", stage="committed", error=str(err))
            return None
        return {tp.partition: tp.offset for tp in found}


def main():
    args = parse_args()
    watchdog(args.max_seconds + 60, "ck_txn_copier")
    deadline = time.monotonic() + args.max_seconds
    event = event_printer(args.client_name)
    stopping = stop_on_sigterm()
    copier = Copier(args, event)

    partitions = copier.input_partitions()
    low, high = copier.watermarks(partitions)
    if args.end_offsets:
        end = {int(p): int(o) for p, o in (item.split(":") for item in args.end_offsets.split(","))}
    else:
        end = dict(high)
    try:
        copier.bounded("init_transactions",
                       lambda: copier.producer.init_transactions(args.timeout))
    except KafkaException as err:
        fail("init_transactions failed", cause=error_fields(err))
    event("started", transactional_id=args.transactional_id, group=args.group,
          end_offsets={str(p): o for p, o in end.items()})
    copier.consumer.subscribe([args.input_topic], on_assign=copier.on_assign,
                              on_revoke=copier.on_revoke, on_lost=copier.on_lost)

    last_record = time.monotonic()
    last_check = 0.0
    last_progress = time.monotonic()
    committed = {}
    while not stopping["now"]:
        # A loop iteration stuck for a minute (a client call that does not return) dumps
        # every thread's Python stack to stderr, so the test's report shows where.
        faulthandler.dump_traceback_later(60, repeat=True)
        now = time.monotonic()
        if now > deadline:
            fail("not done within %.0f s" % args.max_seconds, copied=copier.copied,
                 committed_offsets={str(p): o for p, o in committed.items()},
                 end_offsets={str(p): o for p, o in end.items()})
        if now - last_progress >= args.progress_interval:
            last_progress = now
            event("progress", copied=copier.copied, committed_transactions=copier.committed_txns,
                  aborted_transactions=copier.aborted_txns, owned=sorted(copier.owned),
                  committed_offsets={str(p): o for p, o in committed.items()})
        msg = copier.consumer.poll(0.2)
        now = time.monotonic()
        if msg is None:
            if copier.in_txn and now - last_record >= args.flush_after:
                copier.finish()
            elif not copier.in_txn and now - last_check >= 1.0:
                last_check = now
                committed = copier.committed_offsets(partitions) or committed
                done = all(committed.get(p, -1) >= end[p] or end[p] <= low[p]
                           for p in partitions)
                if done and now - last_record >= args.idle:
                    break
            continue
        if msg.error() is not None:
            if msg.error().code() != KafkaError._PARTITION_EOF:
                print("consume error: %s" % msg.error(), flush=True, file=sys.stderr)
            continue
        last_record = now
        if msg.partition() not in copier.owned:
            continue
        copier.copy(msg)
        if args.max_rate > 0:
            time.sleep(1.0 / args.max_rate)
        if copier.txn_records >= args.transaction_size:
            copier.finish()

    faulthandler.cancel_dump_traceback_later()
    if copier.in_txn:
        copier.abort("stopping", rewind=False)
    committed = copier.committed_offsets(partitions) or committed
    copier.consumer.close()
    copier.producer.flush(args.timeout)
    emit({"event": "done", "client": args.client_name, "ts": time.time(),
          "transactional_id": args.transactional_id, "copied": copier.copied,
          "committed_transactions": copier.committed_txns,
          "aborted_transactions": copier.aborted_txns,
          "committed_offsets": {str(p): o for p, o in committed.items()},
          "end_offsets": {str(p): o for p, o in end.items()},
          "stopped": stopping["now"]})


if __name__ == "__main__":
    main()
