"""Produce a steady stream with confluent-kafka and print each delivery report at once.

Used by the crash test, which kills the broker (and then this script) mid-stream.
Every acknowledged message is printed as one JSON line {"partition", "offset",
"value"} and flushed immediately, so the test knows exactly what was acknowledged
before the crash; failed deliveries are printed as {"error", "value"}. Values are
"c" + a 7-digit sequence number; keys are "key-NN" over --keys keys. If it is not
killed it stops after --duration seconds, or at SIGTERM, waits for the outstanding
delivery reports and prints a final {"summary": ...} line.
"""

import argparse
import json
import signal
import sys
import time

from e2e_common import missing_module

try:
    from confluent_kafka import Producer
except ImportError as err:
    missing_module("confluent_kafka", err)


def print_line(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True, help="HOST:PORT of the broker")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds to keep producing")
    parser.add_argument("--rate", type=int, default=4000, help="messages per second")
    parser.add_argument("--keys", type=int, default=20)
    parser.add_argument("--idempotence", action="store_true",
                        help="enable.idempotence (retries never duplicate or reorder)")
    parser.add_argument("--message-timeout-ms", type=int, default=5000)
    args = parser.parse_args()

    producer = Producer({
        "bootstrap.servers": args.bootstrap,
        "acks": "all",
        "linger.ms": 2,
        "message.timeout.ms": args.message_timeout_ms,
        "enable.idempotence": args.idempotence,
    })
    counts = {"acked": 0, "failed": 0}
    stopping = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stopping.update(now=True))

    def on_delivery(err, msg):
        value = msg.value().decode()
        if err is not None:
            counts["failed"] += 1
            print_line({"error": str(err), "value": value})
        else:
            counts["acked"] += 1
            print_line({"partition": msg.partition(), "offset": msg.offset(), "value": value})

    start = time.monotonic()
    sent = 0
    while time.monotonic() - start < args.duration and not stopping["now"]:
        # Pace the stream: never run more than `rate` messages/s ahead of the clock.
        due = int((time.monotonic() - start) * args.rate) + 1
        while sent < due:
            key = "key-%02d" % (sent % args.keys)
            try:
                producer.produce(args.topic, key=key.encode(), value=b"c%07d" % sent,
                                 on_delivery=on_delivery)
            except BufferError:
                break
            sent += 1
        producer.poll(0.005)

    producer.flush(10)
    print_line({"summary": {"sent": sent, "acked": counts["acked"], "failed": counts["failed"]}})


if __name__ == "__main__":
    main()
