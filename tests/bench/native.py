"""Produce and consume throughput driven by a native librdkafka client (tests/bench/native,
a Rust program on the rdkafka crate, which builds the librdkafka it bundles): no Python in
the data path, so the broker, not the client, is what is measured.

For each --partitions count (default 1, 4 and 16) it creates a topic, produces --messages
records of --size bytes (default 1 KiB) with acks=all round-robin over the partitions,
then consumes them back from the beginning, and reports MB/s (10^6 bytes of values) and
the CPU seconds the broker process(es) used in each phase.
  - one node (default): a node started on a temporary data dir under --tmp;
  - --cluster: `myelin cluster` with three nodes, topics with replication factor 3.
With --rdkafka-performance PATH the load is librdkafka's own performance tool
(examples/rdkafka_performance.c, which `tests/bench/run native` compiles against the same
bundled librdkafka into target/native/rdkafka_performance), the tool the storage issue's
reference figures were measured with; its producer picks a random partition per message
and its consumer reads every partition (-p for each). The figures are the tool's own.

--measure picks what is measured (comma-separated, default throughput,latency,limits):
  - throughput: the above;
  - latency: one partition, --latency-messages records produced at --latency-rate msgs/s
    by rdkafka_performance -l (each value carries its send time) while a second
    rdkafka_performance -l consumes them: produce latency is send to acks=all delivery
    report, end-to-end latency send to consume; p50/p99/max of each from the tools'
    per-message files (-A). Uses --rdkafka-performance, or target/native/rdkafka_performance;
  - limits: the machine's limits the broker's figures are set against, on --tmp's file
    system (where the data dirs are): synced-write bandwidth of --limit-bytes in 1 MiB
    writes with one fdatasync at the end, and with an fdatasync after each write; and
    loopback TCP bandwidth moving 4 x --limit-bytes over 127.0.0.1 in 1 MiB writes.
Every row carries the 1-minute load average when it was taken (the machine may be shared).
Data dirs are removed at the end, also on failure.
Usage: tests/bench/run native [options] (builds both binaries first).
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from confluent_kafka import KafkaException
from produce_consume import ROOT, create_topic, free_port, process_cpu_seconds


def port_is_free(port):
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_cluster_base_port():
    """A base port for `myelin cluster` whose six ports (Kafka and peer, three nodes) are
    free: other clusters may run on this machine."""
    for _ in range(200):
        base = 11000 + int.from_bytes(os.urandom(2), "big") % 14000
        ports = [base + offset for node in range(3) for offset in (node * 10000, node * 10000 + 1)]
        if all(port_is_free(port) for port in ports):
            return base
    sys.exit("no free base port for a three-node cluster")


def wait_for_port(port, proc, log_path, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            fail(proc, log_path, "exited during startup (%s)" % proc.returncode)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.25).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                fail(proc, log_path, "not accepting connections within %d s" % timeout)
            time.sleep(0.05)


def fail(proc, log_path, message):
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    with open(log_path, "rb") as log:
        tail = log.read()[-4000:].decode(errors="replace")
    raise SystemExit("%s\nlog tail:\n%s" % (message, tail))


def cpu_seconds(pids):
    """User + system CPU seconds of the given processes."""
    return sum(process_cpu_seconds(pid) or 0.0 for pid in pids)


def child_pids(pid):
    """The direct children of `pid` (the nodes `myelin cluster` started)."""
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as children:
            return [int(child) for child in children.read().split()]
    except OSError:
        return []


class Brokers:
    """One node, or a three-node `myelin cluster`, on a temporary directory."""

    def __init__(self, binary, cluster, tmp):
        self.work = tempfile.mkdtemp(prefix="myelin-native-", dir=tmp)
        self.log_path = os.path.join(self.work, "broker.log")
        self.log = open(self.log_path, "wb")
        data = os.path.join(self.work, "data")
        if cluster:
            base = free_cluster_base_port()
            self.ports = [base, base + 10000, base + 20000]
            command = [binary, "cluster", "--nodes", "3", "--data-dir", data,
                       "--base-port", str(base)]
        else:
            self.ports = [free_port()]
            command = [binary, "node", "--listen", "127.0.0.1:%d" % self.ports[0],
                       "--data-dir", data]
        self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log)
        for port in self.ports:
            wait_for_port(port, self.proc, self.log_path)
        self.pids = [self.proc.pid] + child_pids(self.proc.pid)

    @property
    def bootstrap(self):
        return ",".join("127.0.0.1:%d" % port for port in self.ports)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.copy(self.log_path, '/tmp/broker-%d.log' % time.time())
        shutil.rmtree(self.work, ignore_errors=True)


def create_topic_once_a_controller_is_elected(bootstrap, topic, partitions, replication_factor):
    """A fresh cluster answers NOT_CONTROLLER until its controller is elected: retry."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return create_topic(bootstrap, topic, partitions, replication_factor)
        except KafkaException as error:
            if time.monotonic() > deadline or "NOT_CONTROLLER" not in str(error):
                raise
            time.sleep(0.5)


def run_performance_tool(tool, brokers, topic, partitions, messages, size, phase):
    """One phase driven by rdkafka_performance: seconds it took, from its own summary."""
    if phase == "produce":
        command = [tool, "-P", "-t", topic, "-s", str(size), "-c", str(messages), "-a", "-1",
                   "-b", brokers.bootstrap, "-X", "linger.ms=5"]
        pattern = r"% (\d+) messages produced \((\d+) bytes\), (\d+) delivered.* in (\d+)ms"
    else:
        command = [tool, "-C", "-t", topic, "-o", "beginning", "-c", str(messages), "-e",
                   "-b", brokers.bootstrap]
        for partition in range(partitions):
            command += ["-p", str(partition)]
        pattern = r"% (\d+) messages \((\d+) bytes\) consumed in (\d+)ms"
    output = subprocess.run(command, check=True, capture_output=True, text=True)
    found = re.findall(pattern, output.stdout + output.stderr)
    if not found:
        raise SystemExit("no summary from %s:\n%s%s" % (tool, output.stdout[-2000:],
                                                          output.stderr[-2000:]))
    counted = int(found[-1][0])
    if counted < messages:
        raise SystemExit("%s %s only %d of %d messages" % (tool, phase, counted, messages))
    return int(found[-1][-1]) / 1000.0


def load_average():
    """The 1-minute load average, recorded with every figure (the machine may be shared)."""
    return os.getloadavg()[0]


def percentiles_ms(path, skip):
    """p50, p99 and max in ms of the per-message latencies (us, one a line) in `path`, but
    for the first `skip`."""
    with open(path) as values:
        samples = sorted([int(line) for line in values if line.strip()][skip:])
    if not samples:
        raise SystemExit("no latency samples in %s" % path)

    def at(fraction):
        return samples[min(len(samples) - 1, int(fraction * len(samples)))] / 1000.0

    return {"p50": round(at(0.50), 2), "p99": round(at(0.99), 2),
            "max": round(samples[-1] / 1000.0, 2), "samples": len(samples)}


def measure_latency(tool, brokers, topic, messages, size, rate, work):
    """Produce latency and end-to-end latency at a fixed rate, one partition, with two
    rdkafka_performance -l instances: the producer stamps each value with its send time and
    records send -> delivery report; the consumer records send -> consumed."""
    produced_path = os.path.join(work, "produce-latency.txt")
    consumed_path = os.path.join(work, "consume-latency.txt")
    if messages <= rate:
        raise SystemExit("--latency-messages must exceed --latency-rate (the first second "
                         "is a warm-up)")
    timeout = 60 + 3 * messages / rate
    # Its once-a-second stats go to a file: an unread pipe would fill and stall it.
    consumer_log = open(os.path.join(work, "latency-consumer.log"), "wb")
    consumer = subprocess.Popen(
        [tool, "-C", "-l", "-A", consumed_path, "-t", topic, "-p", "0", "-o", "beginning",
         "-c", str(messages), "-b", brokers.bootstrap],
        stdin=subprocess.DEVNULL, stdout=consumer_log, stderr=subprocess.STDOUT)
    try:
        time.sleep(1)  # the consumer is fetching before the first value is stamped
        output = subprocess.run(
            [tool, "-P", "-l", "-A", produced_path, "-t", topic, "-p", "0", "-s", str(size),
             "-c", str(messages), "-r", str(rate), "-a", "-1", "-b", brokers.bootstrap,
             "-X", "linger.ms=1"],
            check=True, capture_output=True, text=True, timeout=timeout)
        consumer.wait(timeout=60)
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.wait()
        consumer_log.close()
    # The rate the tool reached (it sleeps 1/rate after each send, so it may fall short).
    found = re.findall(r"% (\d+) messages produced .* in (\d+)ms",
                       output.stdout + output.stderr)
    achieved = round(int(found[-1][0]) * 1000 / max(1, int(found[-1][1]))) if found else None
    warm_up = rate  # the first second waits for connections and metadata: not counted
    return (percentiles_ms(produced_path, warm_up), percentiles_ms(consumed_path, warm_up),
            achieved)


def synced_write_mb_s(directory, total, sync_each):
    """MB/s writing `total` bytes in 1 MiB writes to a new file in `directory`, with an
    fdatasync after each write or one at the end."""
    chunk = os.urandom(1 << 20)
    path = os.path.join(directory, "myelin-limits-%d" % os.getpid())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        start = time.monotonic()
        for _ in range(total // len(chunk)):
            os.write(fd, chunk)
            if sync_each:
                os.fdatasync(fd)
        os.fdatasync(fd)
        return total / 1e6 / (time.monotonic() - start)
    finally:
        os.close(fd)
        os.unlink(path)


def loopback_mb_s(total):
    """MB/s moving `total` bytes over a 127.0.0.1 TCP connection in 1 MiB writes (a sender
    thread and this thread receiving; both release the GIL in their system calls)."""
    chunk = b"\0" * (1 << 20)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(30)

    def send():
        with socket.create_connection(listener.getsockname(), timeout=60) as sender:
            for _ in range(total // len(chunk)):
                sender.sendall(chunk)

    sender = threading.Thread(target=send, daemon=True)
    start = time.monotonic()
    sender.start()
    receiver, _ = listener.accept()
    receiver.settimeout(60)
    buffer = bytearray(1 << 20)
    received = 0
    with receiver, listener:
        while received < total:
            count = receiver.recv_into(buffer)
            if count == 0:
                raise SystemExit("loopback sender closed after %d of %d bytes"
                                 % (received, total))
            received += count
    seconds = time.monotonic() - start
    sender.join(60)
    return total / 1e6 / seconds


def measure_limits(directory, total):
    row = {"limits": True, "load_average": load_average()}
    row["disk_sync_at_end_mb_s"] = round(synced_write_mb_s(directory, total, False), 1)
    row["disk_sync_each_mb_s"] = round(synced_write_mb_s(directory, total, True), 1)
    row["loopback_mb_s"] = round(loopback_mb_s(4 * total), 1)
    row["load_average_after"] = load_average()
    return row


def run_phase(load_generator, brokers, topic, partitions, messages, size, phase,
              performance_tool=None):
    before = cpu_seconds(brokers.pids)
    if performance_tool:
        seconds = run_performance_tool(performance_tool, brokers, topic, partitions, messages,
                                       size, phase)
        return {phase + "_s": seconds}, cpu_seconds(brokers.pids) - before
    output = subprocess.run(
        [load_generator, "--bootstrap", brokers.bootstrap, "--topic", topic,
         "--partitions", str(partitions), "--messages", str(messages), "--size", str(size),
         "--phase", phase],
        check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1]), cpu_seconds(brokers.pids) - before


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=os.path.join(ROOT, "target/release/myelin"))
    parser.add_argument("--load-generator",
                        default=os.path.join(ROOT, "target/native/release/myelin-native-bench"))
    parser.add_argument("--rdkafka-performance", metavar="PATH",
                        help="drive the load with librdkafka's rdkafka_performance instead")
    parser.add_argument("--partitions", default="1,4,16",
                        help="comma-separated partition counts (default 1,4,16)")
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--cluster", action="store_true",
                        help="three nodes (myelin cluster), replication factor 3")
    parser.add_argument("--measure", default="throughput,latency,limits",
                        help="comma-separated: throughput, latency, limits (default all)")
    parser.add_argument("--latency-rate", type=int, default=2000,
                        help="msgs/s produced in the latency phase (default 2000)")
    parser.add_argument("--latency-messages", type=int, default=20_000)
    parser.add_argument("--limit-bytes", type=int, default=1 << 30,
                        help="bytes written to disk per limit (loopback moves 4x; 1 GiB)")
    parser.add_argument("--tmp", default=tempfile.gettempdir())
    parser.add_argument("--json", action="store_true", help="print one JSON object per line")
    args = parser.parse_args()
    measure = set(args.measure.split(","))
    unknown = measure - {"throughput", "latency", "limits"}
    if unknown:
        parser.error("unknown --measure %s" % ",".join(sorted(unknown)))
    latency_tool = (args.rdkafka_performance
                    or os.path.join(ROOT, "target/native/rdkafka_performance"))

    rows = []

    def report(row):
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)

    if "limits" in measure:
        report(measure_limits(args.tmp, args.limit_bytes))
    nodes = 3 if args.cluster else 1
    brokers = Brokers(args.binary, args.cluster, args.tmp) if measure - {"limits"} else None
    try:
        for partitions in [int(count) for count in args.partitions.split(",")]:
            if "throughput" not in measure:
                break
            topic = "native-%d" % partitions
            create_topic_once_a_controller_is_elected(brokers.bootstrap, topic, partitions,
                                                      nodes)
            time.sleep(1)  # every partition elects its leader before the clock starts
            load = load_average()
            produced, produce_cpu = run_phase(args.load_generator, brokers, topic, partitions,
                                              args.messages, args.size, "produce",
                                              args.rdkafka_performance)
            consumed, consume_cpu = run_phase(args.load_generator, brokers, topic, partitions,
                                              args.messages, args.size, "consume",
                                              args.rdkafka_performance)
            total_mb = args.messages * args.size / 1e6
            report({
                "nodes": nodes,
                "partitions": partitions,
                "messages": args.messages,
                "size": args.size,
                "produce_mb_s": round(total_mb / produced["produce_s"], 1),
                "produce_broker_cpu_s": round(produce_cpu, 2),
                "consume_mb_s": round(total_mb / consumed["consume_s"], 1),
                "consume_broker_cpu_s": round(consume_cpu, 2),
                "load_average": load,
                "load_average_after": load_average(),
            })
        if "latency" in measure:
            topic = "native-latency"
            create_topic_once_a_controller_is_elected(brokers.bootstrap, topic, 1, nodes)
            time.sleep(1)
            load = load_average()
            produce, end_to_end, achieved = measure_latency(latency_tool, brokers, topic,
                                                  args.latency_messages, args.size,
                                                  args.latency_rate, brokers.work)
            report({"nodes": nodes, "latency": True, "rate": args.latency_rate,
                    "achieved_rate": achieved,
                    "messages": args.latency_messages, "size": args.size,
                    "produce_ms": produce, "end_to_end_ms": end_to_end,
                    "load_average": load, "load_average_after": load_average()})
    finally:
        if brokers:
            brokers.stop()
    if args.json:
        return
    for row in rows:
        if row.get("limits"):
            print("limits (%s): disk 1 MiB writes, fdatasync at end %.1f MB/s, after each "
                  "write %.1f MB/s; loopback TCP %.1f MB/s; load average %.2f-%.2f" % (
                      args.tmp, row["disk_sync_at_end_mb_s"], row["disk_sync_each_mb_s"],
                      row["loopback_mb_s"], row["load_average"], row["load_average_after"]))
    throughput = [row for row in rows if "produce_mb_s" in row]
    if throughput:
        print("nodes  partitions  produce MB/s  broker CPU s  consume MB/s  broker CPU s  load")
        for row in throughput:
            print("%5d  %10d  %12.1f  %12.2f  %12.1f  %12.2f  %.2f-%.2f" % (
                row["nodes"], row["partitions"], row["produce_mb_s"],
                row["produce_broker_cpu_s"], row["consume_mb_s"], row["consume_broker_cpu_s"],
                row["load_average"], row["load_average_after"]))
    for row in rows:
        if row.get("latency"):
            print("latency, %d node(s), %d msgs/s (reached %s) of %d B, %d records: "
                  "produce (acks=all) p50 %.2f p99 %.2f max %.2f ms; end-to-end p50 %.2f p99 %.2f max %.2f ms; "
                  "load average %.2f-%.2f" % (
                      row["nodes"], row["rate"], row["achieved_rate"], row["size"],
                      row["messages"],
                      row["produce_ms"]["p50"], row["produce_ms"]["p99"],
                      row["produce_ms"]["max"], row["end_to_end_ms"]["p50"],
                      row["end_to_end_ms"]["p99"], row["end_to_end_ms"]["max"],
                      row["load_average"], row["load_average_after"]))


if __name__ == "__main__":
    main()
