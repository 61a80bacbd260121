"""Shared helpers for the end-to-end client scripts.

Every client script prints exactly one JSON document on stdout (diagnostics go to
stderr) and exits non-zero on any failure. The Rust tests in tests/tests/*.rs parse
that JSON, so the message scheme here must match tests/src/records.rs.
"""

import hashlib
import json
import random
import sys

SETUP_HINT = "run tests/run (it creates .venv and installs tests/requirements.txt)"


def keyed_message(index, keys):
    """Return (key, value) of message `index`; mirrored by records::keyed_message in Rust."""
    key = "key-%02d" % (index % keys)
    value = "m%06d-%s" % (index, key)
    return key, value


def mixed_payload(index):
    """Deterministic payloads for the compression tests: mostly small text, every
    tenth one large and highly compressible, every tenth (offset by 5) incompressible."""
    if index % 10 == 0:
        line = ("line %06d of a large compressible payload; " % index).encode()
        return (line * (160_000 // len(line) + 1))[:160_000]
    if index % 10 == 5:
        return random.Random(index).randbytes(4096)
    return ("small payload %06d " % index).encode() * (1 + index % 7)


def describe_record(partition, offset, key, value):
    """JSON shape of one delivered or consumed record (bytes are summarised by
    SHA-256 and length; text fields are included when short UTF-8)."""
    return {
        "partition": partition,
        "offset": offset,
        "key": _text_or_none(key),
        "value": _text_or_none(value),
        "sha256": hashlib.sha256(value).hexdigest() if value is not None else None,
        "len": len(value) if value is not None else None,
    }


def _text_or_none(data):
    if data is None:
        return None
    if isinstance(data, str):
        data = data.encode()
    if len(data) > 256:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def emit(summary):
    """Print the one JSON summary document."""
    sys.stdout.write(json.dumps(summary) + "\n")
    sys.stdout.flush()


def fail(message, **extra):
    """Print a JSON summary carrying `error` and exit 1."""
    summary = {"error": message}
    summary.update(extra)
    emit(summary)
    sys.stderr.write("FAILED: %s\n" % message)
    sys.exit(1)


def missing_module(name, err):
    """Exit with a clear hint when a client library is not installed."""
    sys.stderr.write("cannot import %s (%s): %s\n" % (name, err, SETUP_HINT))
    sys.exit(3)


def group_consumer_args(description):
    """The command line the group-consumer scripts share (see tests/tests/consumer_groups.rs)."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--bootstrap", required=True, help="HOST:PORT[,HOST:PORT...]")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--client-name", required=True)
    parser.add_argument("--session-timeout-ms", type=int, default=6000)
    parser.add_argument("--commit-every", type=int, default=20)
    parser.add_argument("--commit-interval-ms", type=int, default=200)
    parser.add_argument("--delay-ms", type=float, default=2.0)
    return parser.parse_args()


def event_printer(client_name):
    """A function printing one timestamped JSON event line for `client_name` and flushing it;
    safe to call from a client library's own threads."""
    import threading
    import time

    lock = threading.Lock()

    def event(kind, **fields):
        fields.update({"event": kind, "client": client_name, "ts": time.time()})
        with lock:
            sys.stdout.write(json.dumps(fields) + "\n")
            sys.stdout.flush()

    return event


def stop_on_sigterm():
    """A flag ({"now": bool}) that SIGTERM sets, for a graceful stop."""
    import signal

    stopping = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stopping.update(now=True))
    return stopping


def watchdog(seconds, what):
    """Bound a whole script: after `seconds`, print a JSON error line and exit 4 at once
    (for client calls that take no timeout of their own, e.g. kafka-python's
    commit_transaction). Returns the timer; cancel() it to disarm."""
    import os
    import threading

    def expire():
        sys.stdout.write(json.dumps({"error": "%s did not finish within %.0f s" % (what, seconds)})
                         + "\n")
        sys.stdout.flush()
        sys.stderr.write("FAILED: watchdog expired after %.0f s\n" % seconds)
        os._exit(4)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    return timer


TXN_PATTERN_HELP = ("one letter per transaction: c = commit, a = abort, x = leave it open and "
                    "exit at once with os._exit (the transaction stays open until the "
                    "coordinator times it out or a new producer with the same id fences it)")


def txn_produce_args(description):
    """The command line the transactional producer scripts share (ck_txn_produce.py,
    kp_txn_produce.py and tests/js/txn_produce.js take the same flags)."""
    import argparse

    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", required=True, help="HOST:PORT[,HOST:PORT...]")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--transactional-id", required=True)
    parser.add_argument("--pattern", required=True, help=TXN_PATTERN_HELP)
    parser.add_argument("--messages", type=int, default=5, help="messages per transaction")
    parser.add_argument("--keys", type=int, default=20)
    parser.add_argument("--start", type=int, default=0,
                        help="index of the first message (values are keyed_message(index))")
    parser.add_argument("--partition", type=int, default=-1,
                        help="write every message to this partition (-1: by key)")
    parser.add_argument("--create-partitions", type=int, default=0,
                        help="create the topic with this many partitions first (0: don't)")
    parser.add_argument("--transaction-timeout-ms", type=int, default=60000)
    parser.add_argument("--hold", type=float, default=0.0,
                        help="seconds to keep a transaction open, its messages acknowledged, "
                             "before ending it (prints a 'holding' line first)")
    parser.add_argument("--hold-at", default="",
                        help="comma-separated transaction indexes to hold (default: all)")
    parser.add_argument("--offsets-group", default="",
                        help="also commit, in each transaction, the offset "
                             "start + (i+1) * messages of --offsets-topic partition 0 for this "
                             "consumer group (AddOffsetsToTxn + TxnOffsetCommit)")
    parser.add_argument("--offsets-topic", default="",
                        help="topic of those offsets (default: --topic)")
    parser.add_argument("--fence", action="store_true",
                        help="first run a zombie producer with the same transactional id: it "
                             "opens a transaction, the real producer's init_transactions fences "
                             "it, and its next send and commit must fail (a 'fenced' line)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="bound of each client call, in seconds")
    args = parser.parse_args()
    if not args.pattern or any(ch not in "cax" for ch in args.pattern):
        parser.error("--pattern must be a non-empty string of c, a and x")
    if "x" in args.pattern[:-1]:
        parser.error("x ends the run: it can only be the last letter of --pattern")
    args.offsets_topic = args.offsets_topic or args.topic
    hold_at = [int(i) for i in args.hold_at.split(",") if i.strip()]
    args.held = set(hold_at) if hold_at else set(range(len(args.pattern)))
    if args.hold <= 0:
        args.held = set()
    return args


def txn_messages(args, txn_index):
    """The (key, value) texts of transaction `txn_index` of a transactional producer run."""
    first = args.start + txn_index * args.messages
    return [keyed_message(index, args.keys) for index in range(first, first + args.messages)]


def txn_zombie_messages(args):
    """The messages of the --fence zombie's transaction: indexes from start + 1,000,000 on,
    so they never collide with the real producer's and must never be read committed."""
    first = args.start + 1_000_000
    return [keyed_message(index, args.keys) for index in range(first, first + args.messages)]


def txn_offset(args, txn_index):
    """The offset transaction `txn_index` commits with --offsets-group."""
    return args.start + (txn_index + 1) * args.messages


def txn_watchdog_seconds(args):
    """A bound for a whole transactional producer run."""
    per_txn = args.timeout * 3 + (args.hold if args.hold > 0 else 0)
    return args.timeout * 4 + per_txn * len(args.pattern)
