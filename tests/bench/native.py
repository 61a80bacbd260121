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
    parser.add_argument("--tmp", default=tempfile.gettempdir())
    parser.add_argument("--json", action="store_true", help="print one JSON object per line")
    args = parser.parse_args()

    brokers = Brokers(args.binary, args.cluster, args.tmp)
    replication_factor = 3 if args.cluster else 1
    rows = []
    try:
        for partitions in [int(count) for count in args.partitions.split(",")]:
            topic = "native-%d" % partitions
            create_topic_once_a_controller_is_elected(brokers.bootstrap, topic, partitions,
                                                      replication_factor)
            time.sleep(1)  # every partition elects its leader before the clock starts
            produced, produce_cpu = run_phase(args.load_generator, brokers, topic, partitions,
                                              args.messages, args.size, "produce",
                                              args.rdkafka_performance)
            consumed, consume_cpu = run_phase(args.load_generator, brokers, topic, partitions,
                                              args.messages, args.size, "consume",
                                              args.rdkafka_performance)
            total_mb = args.messages * args.size / 1e6
            row = {
                "nodes": 3 if args.cluster else 1,
                "partitions": partitions,
                "messages": args.messages,
                "size": args.size,
                "produce_mb_s": round(total_mb / produced["produce_s"], 1),
                "produce_broker_cpu_s": round(produce_cpu, 2),
                "consume_mb_s": round(total_mb / consumed["consume_s"], 1),
                "consume_broker_cpu_s": round(consume_cpu, 2),
            }
            rows.append(row)
            if args.json:
                print(json.dumps(row), flush=True)
    finally:
        brokers.stop()
    if not args.json:
        print("nodes  partitions  produce MB/s  broker CPU s  consume MB/s  broker CPU s")
        for row in rows:
            print("%5d  %10d  %12.1f  %12.2f  %12.1f  %12.2f" % (
                row["nodes"], row["partitions"], row["produce_mb_s"],
                row["produce_broker_cpu_s"], row["consume_mb_s"], row["consume_broker_cpu_s"]))


if __name__ == "__main__":
    main()
