"""Transactional produce throughput and read_committed latency of one myelin node, measured
with confluent-kafka (librdkafka) on loopback, next to the idempotent producer's figure.

Starts its own node (as produce_consume.py does) and runs, each on a fresh topic of
--partitions partitions:
  1. idempotent: --messages messages of --size bytes, acks=all, enable.idempotence;
  2. transactions of 100 records: the same messages, committed every 100 records;
  3. transactions of 1,000 records: committed every 1,000 records;
  4. read_committed latency: a transactional producer sends --rate messages/s for --seconds
     seconds and commits every --txn-ms milliseconds; a read_committed consumer measures
     consume time - send time (the first second is warm-up). A record becomes visible only
     with its transaction's commit, so the latency includes the wait for the commit.
MB here is 10^6 bytes of message values. Not a test: it asserts only that every message
arrived. Usage: tests/bench/run transactions [options].
"""

import argparse
import json
import os
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from produce_consume import ROOT, CpuMeter, Node, create_topic  # noqa: E402

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition  # noqa: E402


def produce_phase(bootstrap, topic, messages, size, transaction_records, timeout):
    """Produces `messages` messages; with `transaction_records`, inside transactions of that
    many records. Returns the elapsed seconds."""
    config = {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "batch.size": 1_000_000,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
    }
    if transaction_records:
        config["transactional.id"] = "bench-%s" % uuid.uuid4()
    producer = Producer(config)
    failed = []

    def on_delivery(err, _msg):
        if err is not None:
            failed.append(str(err))

    payload = os.urandom(size)
    deadline = time.monotonic() + timeout
    start = time.perf_counter()
    if transaction_records:
        producer.init_transactions(30)
        producer.begin_transaction()
    for index in range(messages):
        while True:
            try:
                producer.produce(topic, value=payload, key=b"%d" % index, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.01)
                if time.monotonic() > deadline:
                    sys.exit("produce phase timed out")
        if index % 1000 == 0:
            producer.poll(0)
        if transaction_records and (index + 1) % transaction_records == 0:
            producer.commit_transaction(max(1.0, deadline - time.monotonic()))
            if index + 1 < messages:
                producer.begin_transaction()
    if transaction_records and messages % transaction_records:
        producer.commit_transaction(max(1.0, deadline - time.monotonic()))
    remaining = producer.flush(max(1.0, deadline - time.monotonic()))
    elapsed = time.perf_counter() - start
    if remaining or failed:
        sys.exit("produce phase: %d unflushed, %d failed (%s)" % (remaining, len(failed), failed[:3]))
    return elapsed


def latency_phase(bootstrap, topic, rate, seconds, size, txn_ms, timeout):
    total = rate * seconds
    warmup = rate
    latencies_ns = []
    done = threading.Event()
    errors = []

    def consume():
        consumer = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": "myelin-bench-txn-latency",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "fetch.wait.max.ms": 100,
        })
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        seen = 0
        deadline = time.monotonic() + seconds + timeout
        while seen < total and time.monotonic() < deadline:
            msg = consumer.poll(0.1)
            if msg is None:
                continue
            if msg.error() is not None:
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    errors.append(str(msg.error()))
                continue
            now = time.monotonic_ns()
            index, sent_ns = msg.value()[:40].split(b" ")[:2]
            if int(index) >= warmup:
                latencies_ns.append(now - int(sent_ns))
            seen += 1
        consumer.close()
        done.set()

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    time.sleep(1.0)

    producer = Producer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "linger.ms": 0,
        "transactional.id": "bench-latency-%s" % uuid.uuid4(),
    })
    producer.init_transactions(30)
    producer.begin_transaction()
    padding = b"x" * size
    start = time.monotonic()
    next_commit = start + txn_ms / 1000
    for index in range(total):
        due = start + index / rate
        while True:
            now = time.monotonic()
            if now >= next_commit:
                producer.commit_transaction(timeout)
                producer.begin_transaction()
                next_commit = now + txn_ms / 1000
            wait = due - now
            if wait <= 0:
                break
            producer.poll(min(wait, 0.001))
        header = b"%d %d " % (index, time.monotonic_ns())
        producer.produce(topic, value=header + padding[len(header):])
        producer.poll(0)
    producer.commit_transaction(timeout)
    if not done.wait(seconds + timeout):
        sys.exit("latency phase: the consumer did not see every message")
    if errors:
        sys.exit("latency phase consume errors: %s" % errors[:3])
    latencies_ns.sort()
    return {
        "samples": len(latencies_ns),
        "p50_ms": latencies_ns[len(latencies_ns) // 2] / 1e6,
        "p99_ms": latencies_ns[int(len(latencies_ns) * 0.99) - 1] / 1e6,
        "max_ms": latencies_ns[-1] / 1e6,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "myelin"))
    parser.add_argument("--bootstrap", help="use this running broker instead of starting one")
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--replication-factor", type=int, default=1)
    parser.add_argument("--rate", type=int, default=2000, help="latency phase messages/s")
    parser.add_argument("--seconds", type=int, default=10, help="latency phase duration")
    parser.add_argument("--txn-ms", type=int, default=100,
                        help="latency phase: commit a transaction every this many ms")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    node = None
    if args.bootstrap:
        bootstrap = args.bootstrap
    else:
        if not os.path.isfile(args.binary):
            sys.exit("%s is missing: run tests/bench/run transactions" % args.binary)
        node = Node(args.binary, [])
        bootstrap = node.bootstrap
    results = {"messages": args.messages, "size": args.size, "partitions": args.partitions}
    try:
        run_id = "%d" % time.time()
        broker_pid = node.proc.pid if node is not None else None
        for name, records in (("idempotent", 0), ("transactions of 100", 100),
                              ("transactions of 1000", 1000)):
            topic = "bench-txn-%s-%d-%s" % (run_id, records, uuid.uuid4().hex[:6])
            create_topic(bootstrap, topic, args.partitions, args.replication_factor)
            meter = CpuMeter(broker_pid)
            seconds = produce_phase(bootstrap, topic, args.messages, args.size, records,
                                    args.timeout)
            results[name] = {"seconds": seconds,
                             "mb_per_s": args.messages * args.size / seconds / 1e6,
                             "msgs_per_s": args.messages / seconds, **meter.finish()}
        latency_topic = "bench-txn-latency-" + run_id
        create_topic(bootstrap, latency_topic, 1, args.replication_factor)
        results["read_committed latency"] = dict(
            latency_phase(bootstrap, latency_topic, args.rate, args.seconds, args.size,
                          args.txn_ms, args.timeout),
            rate=args.rate, seconds=args.seconds, txn_ms=args.txn_ms)
    finally:
        if node is not None:
            node.stop()
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print("myelin transactions benchmark: confluent-kafka, loopback, %d x %d B, %d partitions, "
          "replication factor %d, acks=all" % (args.messages, args.size, args.partitions,
                                                args.replication_factor))
    print("%-22s %10s %10s %12s %14s" % ("producer", "seconds", "MB/s", "msgs/s", "broker CPU s"))
    for name in ("idempotent", "transactions of 100", "transactions of 1000"):
        r = results[name]
        broker_cpu = "n/a" if r["broker_cpu_s"] is None else "%.2f" % r["broker_cpu_s"]
        print("%-22s %10.2f %10.1f %12.0f %14s" % (name, r["seconds"], r["mb_per_s"],
                                                   r["msgs_per_s"], broker_cpu))
    latency = results["read_committed latency"]
    print("read_committed latency at %d msgs/s, a commit every %d ms (%d samples): "
          "p50 %.2f ms, p99 %.2f ms, max %.2f ms"
          % (args.rate, args.txn_ms, latency["samples"], latency["p50_ms"], latency["p99_ms"],
             latency["max_ms"]))


if __name__ == "__main__":
    main()
