// A kafkajs consumer in a consumer group, printing what it does.
//
// The same command line and JSON events as tests/clients/ck_group_consume.py: assigned (on
// every group join, the whole assignment), message, committed (only once acknowledged) and
// closed (after SIGTERM: the last commit made and the group left). Auto-commit is off;
// offsets are committed every --commit-every messages and at the end, only for partitions
// this member is assigned.
"use strict";

const { Kafka, logLevel } = require("kafkajs");

function option(name, fallback) {
  const at = process.argv.lastIndexOf("--" + name);
  if (at >= 0 && at + 1 < process.argv.length) return process.argv[at + 1];
  if (fallback === undefined) {
    console.error("missing --" + name);
    process.exit(2);
  }
  return fallback;
}

function event(kind, fields) {
  process.stdout.write(JSON.stringify({ ...fields, event: kind, ts: Date.now() / 1000 }) + "\n");
}

async function main() {
  const topic = option("topic");
  const commitEvery = Number(option("commit-every", "25"));
  const kafka = new Kafka({
    clientId: option("name"),
    brokers: option("bootstrap").split(","),
    // Its warnings and errors reach stderr, which the test shows when it fails.
    logLevel: logLevel.WARN,
    retry: { retries: 30, initialRetryTime: 100, maxRetryTime: 2000 },
  });
  const consumer = kafka.consumer({
    groupId: option("group"),
    sessionTimeout: Number(option("session-timeout-ms", "6000")),
    heartbeatInterval: 1000,
    rebalanceTimeout: 10000,
  });
  let assigned = new Set();
  const pending = new Map();
  let sinceCommit = 0;
  let stopping = false;

  async function commit() {
    const offsets = [...pending.entries()]
      .filter(([partition]) => assigned.has(partition))
      .map(([partition, offset]) => ({ topic, partition, offset: String(offset) }));
    pending.clear();
    if (offsets.length === 0) return;
    try {
      await consumer.commitOffsets(offsets);
    } catch (error) {
      console.error("commit failed: " + error.message);
      return;
    }
    for (const { partition, offset } of offsets) {
      event("committed", { partition, offset: Number(offset) });
    }
  }

  consumer.on(consumer.events.GROUP_JOIN, (joined) => {
    const partitions = (joined.payload.memberAssignment[topic] || []).slice().sort((a, b) => a - b);
    assigned = new Set(partitions);
    event("assigned", { partitions });
  });
  process.on("SIGTERM", () => {
    stopping = true;
  });

  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ partition, message }) => {
      if (stopping) return;
      event("message", { partition, offset: Number(message.offset), value: message.value.toString() });
      pending.set(partition, Number(message.offset) + 1);
      sinceCommit += 1;
      if (sinceCommit >= commitEvery) {
        sinceCommit = 0;
        await commit();
      }
    },
  });
  while (!stopping) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await consumer.pause([{ topic }]);
  await commit();
  await consumer.disconnect();
  event("closed", {});
  process.exit(0);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
