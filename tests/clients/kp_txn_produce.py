"""Transactions with kafka-python 3 (KafkaProducer(transactional_id=...)): one transaction per
letter of --pattern.

Same command line and output as ck_txn_produce.py (see there and
e2e_common.txn_produce_args), with "client": "kafka-python". Error objects carry
{"error", "code" (the Kafka error code, when the exception has one), "name" (the exception
class), "fatal": null, "retriable", "abortable": null}. kafka-python's commit and abort calls
take no timeout: the script's watchdog bounds them.
"""

import os
import time

from e2e_common import (emit, event_printer, fail, missing_module, txn_messages,
                        txn_offset, txn_produce_args, txn_watchdog_seconds,
                        txn_zombie_messages, watchdog)

try:
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient
    from kafka.structs import OffsetAndMetadata, TopicPartition
except ImportError as err:
    missing_module("kafka (kafka-python)", err)

CLIENT = "kafka-python"


def error_fields(err):
    return {"error": str(err), "code": getattr(err, "errno", None), "name": type(err).__name__,
            "fatal": None, "retriable": getattr(err, "retriable", None), "abortable": None}


def make_producer(args):
    timeout_ms = int(args.timeout * 1000)
    return KafkaProducer(
        bootstrap_servers=args.bootstrap.split(","),
        transactional_id=args.transactional_id,
        transaction_timeout_ms=args.transaction_timeout_ms,
        acks="all",
        linger_ms=5,
        max_block_ms=timeout_ms,
        request_timeout_ms=timeout_ms,
    )


def produce_all(producer, args, messages):
    """Send and wait for every acknowledgement; returns (deliveries, first error or None)."""
    futures = []
    try:
        for key, value in messages:
            kwargs = {"key": key.encode(), "value": value.encode()}
            if args.partition >= 0:
                kwargs["partition"] = args.partition
            futures.append((key, value, producer.send(args.topic, **kwargs)))
        producer.flush(timeout=args.timeout)
    except Exception as err:  # noqa: BLE001 - returned to the caller
        return [], err
    deliveries = []
    for key, value, future in futures:
        try:
            meta = future.get(timeout=args.timeout)
        except Exception as err:  # noqa: BLE001 - returned to the caller
            return deliveries, err
        deliveries.append({"partition": meta.partition, "offset": meta.offset,
                           "key": key, "value": value})
    return deliveries, None


def main():
    args = txn_produce_args(__doc__)
    watchdog(txn_watchdog_seconds(args), "kp_txn_produce")
    event = event_printer(CLIENT)
    timeout_ms = int(args.timeout * 1000)
    if args.create_partitions > 0:
        try:
            admin = KafkaAdminClient(bootstrap_servers=args.bootstrap.split(","),
                                     request_timeout_ms=timeout_ms)
            admin.create_topics(
                {args.topic: {"num_partitions": args.create_partitions,
                              "replication_factor": 1}},
                timeout_ms=timeout_ms, wait_for_metadata=True)
            admin.close()
        except Exception as err:  # noqa: BLE001 - any failure is reported in the JSON
            fail("create_topics failed: %r" % err)

    zombie = None
    try:
        if args.fence:
            zombie = make_producer(args)
            zombie.init_transactions()
            zombie.begin_transaction()
            zombie_messages = txn_zombie_messages(args)
            deliveries, failure = produce_all(zombie, args, zombie_messages)
            if failure is not None:
                fail("the zombie producer's messages were not acknowledged",
                     cause=error_fields(failure))
            event("zombie_open", values=[v for _, v in zombie_messages], deliveries=deliveries)
        producer = make_producer(args)
        producer.init_transactions()
    except Exception as err:  # noqa: BLE001 - reported in the JSON
        fail("init_transactions failed", cause=error_fields(err))
    event("initialized", transactional_id=args.transactional_id)
    if zombie is not None:
        _, failure = produce_all(zombie, args, [("zombie-key", "zombie-after-fence")])
        if failure is None:
            event("fenced", stage="send", error=None, code=None, name=None, fatal=None)
        else:
            event("fenced", stage="send", **error_fields(failure))
        try:
            zombie.commit_transaction()
        except Exception as err:  # noqa: BLE001 - the expected outcome
            event("fenced", stage="commit", **error_fields(err))
        else:
            fail("the fenced producer's commit succeeded")
        try:
            zombie.close(timeout=0)
        except Exception:  # noqa: BLE001 - a fenced producer may complain on close
            pass

    outcomes = {"committed": [], "aborted": [], "open": []}

    def summary(exited_open):
        return {"event": "summary", "client": CLIENT, "ts": time.time(), "topic": args.topic,
                "transactional_id": args.transactional_id,
                "transactions": len(args.pattern), "exited_open": exited_open, **outcomes}

    for index, letter in enumerate(args.pattern):
        messages = txn_messages(args, index)
        values = [value for _, value in messages]
        deliveries, offsets = [], None
        try:
            producer.begin_transaction()
            deliveries, failure = produce_all(producer, args, messages)
            if failure is not None:
                raise failure
            if args.offsets_group:
                offsets = {"group": args.offsets_group, "topic": args.offsets_topic,
                           "partition": 0, "offset": txn_offset(args, index)}
                producer.send_offsets_to_transaction(
                    {TopicPartition(args.offsets_topic, 0):
                     OffsetAndMetadata(offsets["offset"], "", -1)},
                    args.offsets_group)
            if letter == "x":
                event("transaction", index=index, outcome="open", values=values,
                      deliveries=deliveries, offsets=offsets)
                outcomes["open"].extend(values)
                emit(summary(True))
                os._exit(0)
            if index in args.held:
                event("holding", index=index, seconds=args.hold, values=values)
                time.sleep(args.hold)
            if letter == "c":
                producer.commit_transaction()
            else:
                producer.abort_transaction()
        except Exception as err:  # noqa: BLE001 - reported, then the run fails
            event("transaction", index=index, outcome="failed", values=values,
                  deliveries=deliveries, offsets=offsets, error=error_fields(err))
            fail("transaction %d failed: %r" % (index, err), **summary(False))
        outcome = "committed" if letter == "c" else "aborted"
        outcomes[outcome].extend(values)
        event("transaction", index=index, outcome=outcome, values=values,
              deliveries=deliveries, offsets=offsets)
    producer.close(timeout=args.timeout)
    emit(summary(False))


if __name__ == "__main__":
    main()
