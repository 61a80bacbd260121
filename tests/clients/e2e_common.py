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
