"""How long partition leaders take to move after one node of three is killed, and a
producer's latency meanwhile.

Starts three `myelin node` processes (a cluster of three, on free ports, data under --tmp),
creates a topic of --partitions partitions with replication factor 3, waits until every
partition has a leader, and starts a producer (confluent-kafka, acks=all, 1 KiB, --rate
messages/s round-robin over the partitions). Then it kills (SIGKILL) the node that leads the
most partitions and reports:
  - the seconds until a Metadata request to a surviving node shows every partition led by
    a live node;
  - the producer's delivery latency (p50, p99, max) over the window from the kill until
    --after seconds past that point, and how many deliveries failed.
Data dirs are removed at the end, also on failure.
Usage: tests/bench/run leader_move [options] (builds the release binary first).
"""

import argparse
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

from confluent_kafka import Producer
from produce_consume import ROOT, free_port
from native import create_topic_once_a_controller_is_elected
from restart import metadata_request, partition_leaders, read_exactly


def leaders(port, topic):
    """{partition: leader id} from a Metadata v1 request to the node on `port`."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(metadata_request(11, topic))
        (size,) = struct.unpack(">i", read_exactly(sock, 4))
        return partition_leaders(read_exactly(sock, size)[4:])


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=os.path.join(ROOT, "target/release/myelin"))
    parser.add_argument("--partitions", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=1000, help="messages/s (default 1000)")
    parser.add_argument("--after", type=float, default=10.0,
                        help="seconds of latency counted after the leaders moved (default 10)")
    parser.add_argument("--ready-timeout", type=float, default=300,
                        help="seconds for every partition to get its first leader (default 300)")
    parser.add_argument("--tmp", default=tempfile.gettempdir())
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="myelin-leader-move-", dir=args.tmp)
    kafka_ports = [free_port() for _ in range(3)]
    peer_ports = [free_port() for _ in range(3)]
    peers = ",".join("%d=127.0.0.1:%d" % (node + 1, peer_ports[node]) for node in range(3))
    nodes = {}
    logs = []
    stop_producing = threading.Event()
    try:
        for node in range(3):
            log = open(os.path.join(work, "node-%d.log" % (node + 1)), "wb")
            logs.append(log)
            nodes[node + 1] = subprocess.Popen(
                [args.binary, "node", "--node-id", str(node + 1),
                 "--listen", "127.0.0.1:%d" % kafka_ports[node],
                 "--peer-listen", "127.0.0.1:%d" % peer_ports[node], "--peers", peers,
                 "--data-dir", os.path.join(work, "node-%d" % (node + 1))],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        bootstrap = ",".join("127.0.0.1:%d" % port for port in kafka_ports)
        time.sleep(1)
        topic = "moving"
        create_topic_once_a_controller_is_elected(bootstrap, topic, args.partitions, 3)
        created_at = time.monotonic()
        led = {}
        while True:
            try:
                led = leaders(kafka_ports[0], topic)
                if len(led) == args.partitions and all(leader > 0 for leader in led.values()):
                    break
            except (OSError, struct.error):
                pass  # busy creating the partitions
            if time.monotonic() > created_at + args.ready_timeout:
                sys.exit("%d of %d partitions got a leader within %.0f s" % (
                    sum(1 for leader in led.values() if leader > 0), args.partitions,
                    args.ready_timeout))
            time.sleep(0.2)
        print("every partition led %.1f s after the topic was created"
              % (time.monotonic() - created_at), file=sys.stderr)

        latencies = []  # (send time, seconds to delivery)
        failures = []
        producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 1,
                             "log_level": 0})
        payload = os.urandom(1024)

        def produce():
            index = 0
            start = time.monotonic()
            while not stop_producing.is_set():
                sent = time.monotonic()

                def on_delivery(err, _msg, sent=sent):
                    if err is not None:
                        failures.append((sent, str(err)))
                    else:
                        latencies.append((sent, time.monotonic() - sent))

                producer.produce(topic, value=payload, partition=index % args.partitions,
                                 on_delivery=on_delivery)
                producer.poll(0)
                index += 1
                pause = start + index / args.rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
            producer.flush(30)

        thread = threading.Thread(target=produce)
        thread.start()
        time.sleep(3)  # steady state before the kill

        counts = {}
        for leader in led.values():
            counts[leader] = counts.get(leader, 0) + 1
        victim = max(counts, key=counts.get)
        survivor_port = kafka_ports[[node for node in nodes if node != victim][0] - 1]
        killed_at = time.monotonic()
        nodes[victim].send_signal(signal.SIGKILL)
        nodes[victim].wait()
        while True:
            try:
                led = leaders(survivor_port, topic)
                if len(led) == args.partitions and all(
                        leader > 0 and leader != victim for leader in led.values()):
                    break
            except (OSError, struct.error):
                pass
            if time.monotonic() > killed_at + 120:
                sys.exit("leaders did not move within 120 s")
            time.sleep(0.05)
        moved_s = time.monotonic() - killed_at
        time.sleep(args.after)
        stop_producing.set()
        thread.join()

        window = [seconds for sent, seconds in latencies
                  if killed_at <= sent <= killed_at + moved_s + args.after]
        before = [seconds for sent, seconds in latencies if sent < killed_at]
        result = {
            "partitions": args.partitions,
            "victim_led": counts[victim],
            "leaders_moved_s": round(moved_s, 3),
            "latency_before_ms": {
                "p50": round(percentile(before, 0.5) * 1000, 1) if before else None,
                "p99": round(percentile(before, 0.99) * 1000, 1) if before else None},
            "latency_during_ms": {
                "p50": round(percentile(window, 0.5) * 1000, 1) if window else None,
                "p99": round(percentile(window, 0.99) * 1000, 1) if window else None,
                "max": round(max(window) * 1000, 1) if window else None},
            "deliveries_during": len(window),
            "failed": len(failures),
        }
        if args.json:
            print(json.dumps(result))
        else:
            print("killed node %d, leader of %d of %d partitions" % (
                victim, counts[victim], args.partitions))
            print("every partition led by a live node after %.3f s" % moved_s)
            print("produce latency before the kill: p50 %s ms, p99 %s ms" % (
                result["latency_before_ms"]["p50"], result["latency_before_ms"]["p99"]))
            print("produce latency from the kill to %.0f s after the move: p50 %s ms, "
                  "p99 %s ms, max %s ms (%d deliveries, %d failed)" % (
                      args.after, result["latency_during_ms"]["p50"],
                      result["latency_during_ms"]["p99"], result["latency_during_ms"]["max"],
                      len(window), len(failures)))
    finally:
        stop_producing.set()
        for proc in nodes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for log in logs:
            log.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
