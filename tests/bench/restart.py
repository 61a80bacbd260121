"""Restart time of one myelin node holding a large log.

Starts a node on a temporary data dir (under --tmp, /tmp by default), fills --gigabytes of
log across --partitions partitions with confluent-kafka (16 KiB values in 1 MB batches,
acks=all: a fast fill, not a produce benchmark), then restarts the node --restarts times
with each --binary (given twice, A and B take turns on the same data, so that both see the
same machine load) and reports how long each restart took, from spawning the process until it answers a
Metadata request that lists every partition of the topic with a leader. Two kinds of stop:
  - clean: SIGTERM, the node syncs and exits;
  - crash: SIGKILL right after a short burst of appends, so nothing is shut down cleanly.
Each binary's turn starts with a clean restart that is not counted (it settles what the
other binary left). The page cache is left as it is (warm): the figure is the node's own work at start, not
the disk's read speed. The data dir is removed at the end, also on failure.
Usage: tests/bench/run restart [options] (builds the release binary first).
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

try:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic
except ImportError as err:
    sys.exit("cannot import confluent_kafka (%s): run tests/setup or tests/bench/run" % err)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VALUE_BYTES = 16 * 1024


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def metadata_request(correlation_id, topic):
    """A Metadata v1 request for one topic, size-prefixed (v1: a topic list, no client id
    rules beyond a nullable string)."""
    name = topic.encode()
    body = struct.pack(">hhih", 3, 1, correlation_id, -1)
    body += struct.pack(">i", 1) + struct.pack(">h", len(name)) + name
    return struct.pack(">i", len(body)) + body


def read_exactly(sock, count):
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise OSError("connection closed")
        data += chunk
    return data


def partition_leaders(response):
    """{partition: leader id, or -1 with an error} of the topics in a Metadata v1 response
    (correlation id already stripped)."""
    view = memoryview(response)
    at = 0

    def take(fmt):
        nonlocal at
        values = struct.unpack_from(fmt, view, at)
        at += struct.calcsize(fmt)
        return values

    def string():
        nonlocal at
        (length,) = take(">h")
        at += max(length, 0)

    (brokers,) = take(">i")
    for _ in range(brokers):
        take(">i")
        string()
        take(">i")
        string()  # rack
    take(">i")  # controller id
    (topics,) = take(">i")
    leaders = {}
    for _ in range(topics):
        (topic_error,) = take(">h")
        string()
        take(">b")  # is_internal
        (partitions,) = take(">i")
        for _ in range(partitions):
            error, index, leader = take(">hii")
            (replicas,) = take(">i")
            take(">%di" % replicas)
            (isr,) = take(">i")
            take(">%di" % isr)
            leaders[index] = leader if topic_error == 0 and error == 0 else -1
    return leaders


def partitions_with_leader(response):
    """Counts the partitions with a leader in a Metadata v1 response."""
    return sum(1 for leader in partition_leaders(response).values() if leader >= 0)


def answers_metadata(port, topic, partitions):
    """True when the node answers Metadata with every partition of `topic` led."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(metadata_request(7, topic))
            (size,) = struct.unpack(">i", read_exactly(sock, 4))
            response = read_exactly(sock, size)
            return partitions_with_leader(response[4:]) == partitions
    except (OSError, struct.error):
        return False


class Node:
    """A myelin node on a fixed port and data dir, restartable."""

    def __init__(self, binary, data_dir, extra_args):
        self.binary = binary
        self.data_dir = data_dir
        self.port = free_port()
        self.extra_args = extra_args
        self.proc = None
        self.log = None

    @property
    def bootstrap(self):
        return "127.0.0.1:%d" % self.port

    def start(self, topic=None, partitions=0, timeout=120, binary=None):
        """Spawns the node; returns the seconds until it served Metadata for the topic (or,
        without a topic, until it accepted a connection)."""
        self.log = open(os.path.join(self.data_dir, "node.log"), "ab")
        start = time.perf_counter()
        self.proc = subprocess.Popen(
            [binary or self.binary, "node", "--listen", self.bootstrap,
             "--data-dir", os.path.join(self.data_dir, "data")] + self.extra_args,
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                self.fail("node exited during startup (%s)" % self.proc.returncode)
            if topic is None:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.25).close()
                    return time.perf_counter() - start
                except OSError:
                    pass
            elif answers_metadata(self.port, topic, partitions):
                return time.perf_counter() - start
            if time.monotonic() > deadline:
                self.fail("node not ready within %d s" % timeout)
            time.sleep(0.005)

    def stop(self, how):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if how == "crash" else signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.log is not None:
            self.log.close()
            self.log = None

    def fail(self, message):
        self.stop("crash")
        with open(os.path.join(self.data_dir, "node.log"), "rb") as log:
            tail = log.read()[-4000:].decode(errors="replace")
        raise SystemExit("%s\nnode log tail:\n%s" % (message, tail))


def producer(bootstrap):
    return Producer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "linger.ms": 20,
        "batch.size": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
        # Quiet: the node is stopped under it on purpose; failures come back as errors.
        "log_level": 0,
    })


def fill(bootstrap, topic, partitions, total_bytes, timeout):
    client = producer(bootstrap)
    payload = os.urandom(VALUE_BYTES)
    failed = []

    def on_delivery(err, _msg):
        if err is not None:
            failed.append(str(err))

    messages = total_bytes // VALUE_BYTES
    deadline = time.monotonic() + timeout
    start = time.perf_counter()
    for index in range(messages):
        while True:
            try:
                client.produce(topic, value=payload, partition=index % partitions,
                               on_delivery=on_delivery)
                break
            except BufferError:
                client.poll(0.01)
                if time.monotonic() > deadline:
                    sys.exit("fill timed out")
        if index % 256 == 0:
            client.poll(0)
    remaining = client.flush(max(1.0, deadline - time.monotonic()))
    if remaining or failed:
        sys.exit("fill: %d unflushed, %d failed (%s)" % (remaining, len(failed), failed[:3]))
    return time.perf_counter() - start


def burst(bootstrap, topic, partitions, total_bytes):
    """A few appends just before a crash, so the crash stop has a fresh tail to recover."""
    client = producer(bootstrap)
    payload = os.urandom(VALUE_BYTES)
    for index in range(total_bytes // VALUE_BYTES):
        while True:
            try:
                client.produce(topic, value=payload, partition=index % partitions)
                break
            except BufferError:
                client.poll(0.01)
    if client.flush(60):
        sys.exit("burst: messages left unflushed")


def data_bytes(path):
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            total += os.path.getsize(os.path.join(folder, name))
    return total


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", action="append",
                        help="myelin binary (repeatable; default target/release/myelin)")
    parser.add_argument("--gigabytes", type=float, default=10.0,
                        help="log to fill, in 10^9 bytes of values (default 10)")
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--restarts", type=int, default=5, help="restarts of each kind")
    parser.add_argument("--burst-megabytes", type=int, default=64,
                        help="appended just before each crash stop (default 64)")
    parser.add_argument("--tmp", default=tempfile.gettempdir(),
                        help="where the temporary data dir goes (default /tmp)")
    parser.add_argument("--node-arg", action="append", default=[],
                        help="extra argument for `myelin node` (repeatable)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    topic = "restart"
    work = tempfile.mkdtemp(prefix="myelin-restart-", dir=args.tmp)
    binaries = args.binary or [os.path.join(ROOT, "target/release/myelin")]
    node = Node(binaries[0], work, args.node_arg)
    try:
        node.start()
        admin = AdminClient({"bootstrap.servers": node.bootstrap})
        admin.create_topics([NewTopic(topic, num_partitions=args.partitions,
                                      replication_factor=1)])[topic].result(timeout=30)
        fill_s = fill(node.bootstrap, topic, args.partitions,
                      int(args.gigabytes * 1e9), timeout=3600)
        stored = data_bytes(os.path.join(work, "data"))
        print("filled %.2f GB in %.1f s; %.2f GB on disk" % (args.gigabytes, fill_s, stored / 1e9),
              file=sys.stderr)
        timings = {(binary, how): [] for binary in binaries for how in ("clean", "crash")}
        for _ in range(args.restarts):
            for binary in binaries:
                node.stop("clean")
                node.start(topic, args.partitions, binary=binary)  # settles; not counted
                for how in ("clean", "crash"):
                    if how == "crash":
                        burst(node.bootstrap, topic, args.partitions, args.burst_megabytes << 20)
                    node.stop(how)
                    seconds = node.start(topic, args.partitions, binary=binary)
                    timings[(binary, how)].append(seconds)
                    print("%s, %s stop: restarted in %.3f s" % (binary, how, seconds),
                          file=sys.stderr)
        result = {
            "partitions": args.partitions,
            "log_gb_on_disk": round(stored / 1e9, 2),
            "binaries": {binary: {
                "restart_after_%s_stop_s" % how: {
                    "median": round(statistics.median(timings[(binary, how)]), 3),
                    "all": [round(s, 3) for s in timings[(binary, how)]]}
                for how in ("clean", "crash")} for binary in binaries},
        }
        if args.json:
            print(json.dumps(result))
        else:
            print("log on disk: %.2f GB in %d partitions" % (stored / 1e9, args.partitions))
            for binary in binaries:
                for how in ("clean", "crash"):
                    values = timings[(binary, how)]
                    print("%s: restart after a %s stop: median %.3f s  (%s)" % (
                        binary, how, statistics.median(values),
                        ", ".join("%.3f" % s for s in values)))
    finally:
        node.stop("clean")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
