"""Describe a consumer group with confluent-kafka's AdminClient (FindCoordinator, then
DescribeGroups at the coordinator).

Prints {"client", "group", "coordinator": node id, "state": e.g. "STABLE",
"members": [client ids, sorted]} and exits 1 on failure.
"""

import argparse

from e2e_common import emit, fail, missing_module

try:
    from confluent_kafka.admin import AdminClient
except ImportError as err:
    missing_module("confluent_kafka", err)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True, help="HOST:PORT[,HOST:PORT...]")
    parser.add_argument("--group", required=True)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    try:
        futures = admin.describe_consumer_groups([args.group], request_timeout=args.timeout)
        description = futures[args.group].result(timeout=args.timeout)
    except Exception as err:  # noqa: BLE001 - any failure is reported in the JSON
        fail("describe_consumer_groups failed: %s" % err)
    if description.coordinator is None:
        fail("the group description names no coordinator")
    emit({
        "client": "confluent-kafka",
        "group": args.group,
        "coordinator": description.coordinator.id,
        "state": description.state.name,
        "members": sorted(member.client_id for member in description.members),
    })


if __name__ == "__main__":
    main()
