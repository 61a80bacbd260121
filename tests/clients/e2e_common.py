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
