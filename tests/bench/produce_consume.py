"""Produce/consume throughput and end-to-end latency of one myelin node, measured with
confluent-kafka (librdkafka) on loopback.

Starts its own node (the release build by default) on a free port with a temporary data
dir, then runs three phases and prints a table:
  1. produce: --messages messages of --size bytes, acks=all, linger.ms=5, batch.size
     1 MB, over --partitions partitions, as fast as the producer goes;
  2. consume: the same topic read back from the beginning (assign, no group);
  3. latency: --rate messages/s for --seconds seconds to a fresh topic while a consumer
     reads it; latency = consume time - send time carried in the payload (first second
     is warm-up and not counted).
MB here is 10^6 bytes of message values. Not a test: it asserts only that every message
arrived. Usage: tests/bench/run [options] (builds the release binary first).
"""

import argparse
import resource
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

try:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic
except ImportError as err:
    sys.exit("cannot import confluent_kafka (%s): run tests/setup or tests/bench/run" % err)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Node:
    """A myelin node process with a temporary data dir, stopped with SIGTERM."""

    def __init__(self, binary, extra_args):
        self.data_dir = tempfile.TemporaryDirectory(prefix="myelin-bench-")
        self.port = free_port()
        self.log_path = os.path.join(self.data_dir.name, "node.log")
        self.log = open(self.log_path, "wb")
        data = os.path.join(self.data_dir.name, "data")
        self.proc = subprocess.Popen(
            [binary, "node", "--listen", self.bootstrap, "--data-dir", data] + extra_args,
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                self.fail("node exited during startup (%s)" % self.proc.returncode)
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.25).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.fail("node did not accept connections within 20 s")
                time.sleep(0.05)

    @property
    def bootstrap(self):
        return "127.0.0.1:%d" % self.port

    def fail(self, message):
        self.stop()
        with open(self.log_path, "rb") as log:
            tail = log.read()[-4000:].decode(errors="replace")
        sys.exit("%s\nnode log tail:\n%s" % (message, tail))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def process_cpu_seconds(pid):
    """User + system CPU seconds a process has used (from /proc), or None if unknown."""
    try:
        with open("/proc/%d/stat" % pid) as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def client_cpu_seconds():
    """CPU seconds of this process, librdkafka's threads included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class CpuMeter:
    """CPU used by the broker and by the client over one phase: where the time goes."""

    def __init__(self, broker_pid):
        self.broker_pid = broker_pid
        self.broker_start = process_cpu_seconds(broker_pid) if broker_pid else None
        self.client_start = client_cpu_seconds()

    def finish(self):
        broker_end = process_cpu_seconds(self.broker_pid) if self.broker_pid else None
        broker = None if self.broker_start is None or broker_end is None \
            else broker_end - self.broker_start
        return {"broker_cpu_s": broker, "client_cpu_s": client_cpu_seconds() - self.client_start}


def create_topic(bootstrap, topic, partitions, replication_factor=1):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions,
                                            replication_factor=replication_factor)],
                                  operation_timeout=30, request_timeout=30)
    futures[topic].result(timeout=30)


def produce_phase(bootstrap, topic, messages, size, timeout):
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "linger.ms": 5,
        "batch.size": 1_000_000,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
    })
    payload = os.urandom(size)
    failed = []

    def on_delivery(err, _msg):
        if err is not None:
            failed.append(str(err))

    deadline = time.monotonic() + timeout
    start = time.perf_counter()
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
    remaining = producer.flush(max(1.0, deadline - time.monotonic()))
    elapsed = time.perf_counter() - start
    if remaining or failed:
        sys.exit("produce phase: %d unflushed, %d failed (%s)" % (remaining, len(failed), failed[:3]))
    return elapsed


def consume_phase(bootstrap, topic, partitions, messages, timeout):
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "myelin-bench-assign-only",
        "enable.auto.commit": False,
        "fetch.max.bytes": 52_428_800,
        "max.partition.fetch.bytes": 1_048_576,
    })
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    received = 0
    value_bytes = 0
    deadline = time.monotonic() + timeout
    start = time.perf_counter()
    while received < messages:
        if time.monotonic() > deadline:
            sys.exit("consume phase timed out after %d of %d messages" % (received, messages))
        for msg in consumer.consume(num_messages=10_000, timeout=0.5):
            if msg.error() is not None:
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    sys.exit("consume error: %s" % msg.error())
                continue
            received += 1
            value_bytes += len(msg.value())
    elapsed = time.perf_counter() - start
    consumer.close()
    return elapsed, value_bytes


def latency_phase(bootstrap, topic, rate, seconds, size, timeout):
    total = rate * seconds
    warmup = rate  # the first second is not counted
    latencies_ns = []
    done = threading.Event()
    errors = []

    def consume():
        consumer = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": "myelin-bench-latency",
            "enable.auto.commit": False,
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
    time.sleep(1.0)  # let the consumer connect and start fetching

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
    padding = b"x" * size
    start = time.monotonic()
    for index in range(total):
        due = start + index / rate
        while True:
            wait = due - time.monotonic()
            if wait <= 0:
                break
            producer.poll(min(wait, 0.001))
        header = b"%d %d " % (index, time.monotonic_ns())
        producer.produce(topic, value=header + padding[len(header):])
        producer.poll(0)
    producer.flush(timeout)
    if not done.wait(seconds + timeout):
        sys.exit("latency phase: the consumer did not see every message")
    if errors:
        sys.exit("latency phase consume errors: %s" % errors[:3])
    expected = total - warmup
    if len(latencies_ns) != expected:
        sys.exit("latency phase: %d of %d measured messages arrived" % (len(latencies_ns), expected))
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
    parser.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "myelin"),
                        help="myelin binary to start (default: the release build)")
    parser.add_argument("--bootstrap", help="use this running broker instead of starting one")
    parser.add_argument("--messages", type=int, default=500_000)
    parser.add_argument("--size", type=int, default=1024, help="message value size in bytes")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--replication-factor", type=int, default=1,
                        help="of the benchmark topics (a cluster: start `myelin cluster` and "
                             "pass --bootstrap)")
    parser.add_argument("--rate", type=int, default=2000, help="latency phase messages/s")
    parser.add_argument("--seconds", type=int, default=10, help="latency phase duration")
    parser.add_argument("--timeout", type=float, default=300.0, help="bound for each phase")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()

    node = None
    if args.bootstrap:
        bootstrap = args.bootstrap
    else:
        if not os.path.isfile(args.binary):
            sys.exit("%s is missing: run tests/bench/run (builds it with "
                     "cargo build --release -p myelin-node)" % args.binary)
        node = Node(args.binary, [])
        bootstrap = node.bootstrap
    try:
        run_id = "%d" % time.time()
        throughput_topic = "bench-throughput-" + run_id
        latency_topic = "bench-latency-" + run_id
        create_topic(bootstrap, throughput_topic, args.partitions, args.replication_factor)
        create_topic(bootstrap, latency_topic, 1, args.replication_factor)

        broker_pid = node.proc.pid if node is not None else None
        meter = CpuMeter(broker_pid)
        produce_s = produce_phase(bootstrap, throughput_topic, args.messages, args.size, args.timeout)
        produce_cpu = meter.finish()
        meter = CpuMeter(broker_pid)
        consume_s, consumed_bytes = consume_phase(
            bootstrap, throughput_topic, args.partitions, args.messages, args.timeout)
        consume_cpu = meter.finish()
        latency = latency_phase(bootstrap, latency_topic, args.rate, args.seconds, args.size,
                                args.timeout)
    finally:
        if node is not None:
            node.stop()

    produced_bytes = args.messages * args.size
    results = {
        "messages": args.messages,
        "size": args.size,
        "partitions": args.partitions,
        "produce": {"seconds": produce_s, "mb_per_s": produced_bytes / produce_s / 1e6,
                    "msgs_per_s": args.messages / produce_s, **produce_cpu},
        "consume": {"seconds": consume_s, "mb_per_s": consumed_bytes / consume_s / 1e6,
                    "msgs_per_s": args.messages / consume_s, **consume_cpu},
        "latency": dict(latency, rate=args.rate, seconds=args.seconds),
    }
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print("myelin produce/consume benchmark: confluent-kafka, loopback, %d x %d B, "
          "%d partitions, replication factor %d, acks=all"
          % (args.messages, args.size, args.partitions, args.replication_factor))
    print("%-10s %10s %10s %12s %14s %14s" % ("phase", "seconds", "MB/s", "msgs/s",
                                             "broker CPU s", "client CPU s"))
    for phase in ("produce", "consume"):
        r = results[phase]
        broker_cpu = "n/a" if r["broker_cpu_s"] is None else "%.2f" % r["broker_cpu_s"]
        print("%-10s %10.2f %10.1f %12.0f %14s %14.2f" % (
            phase, r["seconds"], r["mb_per_s"], r["msgs_per_s"], broker_cpu, r["client_cpu_s"]))
    print("latency at %d msgs/s for %d s (%d samples): p50 %.2f ms, p99 %.2f ms, max %.2f ms"
          % (args.rate, args.seconds, latency["samples"], latency["p50_ms"], latency["p99_ms"],
             latency["max_ms"]))


if __name__ == "__main__":
    main()
