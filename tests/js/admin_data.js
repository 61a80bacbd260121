// The data- and group-side admin APIs through kafkajs's admin client, and two consumers of
// one group started together.
//
// Steps (--steps, comma-separated); the summary printed (one JSON document) holds:
// - timestamps: creates --topic (--partitions), produces one batch of records whose
//   timestamps are out of order to partition 0, and asks fetchTopicOffsetsByTimestamp:
//   "by_timestamp" {asked ms: offset of partition 0}.
// - together: two consumers of --group start at once and run until both are assigned and
//   have heartbeated since; "generations" {consumer: the generations its heartbeats named,
//   in order}, "joins" {consumer: GROUP_JOIN events}, "assigned" {consumer: partitions},
//   "described" (describeGroups: state and member count), then both disconnect.
// - delete-groups: deleteGroups of --group (after its members left) and of a group that
//   never existed: "deleted" and "deleted_unknown" (error codes, 0 for none).
// - delete-records: deleteTopicRecords of partition 0 before --delete-before, then
//   "earliest_after" (fetchTopicOffsets' low offset of partition 0).
// - deleted-topic-offsets: setOffsets of --group-gone on a new topic --topic-gone, then
//   deleteTopics and createTopics of it again: "gone_offsets" [committed before, after]
//   (fetchOffsets of partition 0; -1: none, the offsets went with the deleted topic).
'use strict';

const { parseArgs } = require('node:util');
const { Kafka, logLevel } = require('kafkajs');

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const TIMESTAMPS = [1000, 5000, 3000, 2000, 4000];
const ASKED = [0, 2500, 4500, 5001];

async function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function timestamps(kafka, admin, args, summary) {
  await admin.createTopics({
    topics: [{ topic: args.topic, numPartitions: Number(args.partitions) }],
    waitForLeaders: true,
  });
  const producer = kafka.producer();
  await producer.connect();
  // One send of one partition's messages is one batch.
  await producer.send({
    topic: args.topic,
    acks: -1,
    messages: TIMESTAMPS.map((timestamp, index) => ({
      partition: 0, value: `v${index}`, timestamp: String(timestamp),
    })),
  });
  await producer.disconnect();
  summary.by_timestamp = {};
  for (const asked of ASKED) {
    const offsets = await admin.fetchTopicOffsetsByTimestamp(args.topic, asked);
    const partition0 = offsets.find((entry) => entry.partition === 0);
    summary.by_timestamp[asked] = Number(partition0.offset);
  }
}

async function together(kafka, admin, args, summary) {
  const names = ['a', 'b'];
  const joins = { a: 0, b: 0 };
  const assigned = { a: [], b: [] };
  const generations = { a: [], b: [] };
  const consumers = names.map((name) => {
    const consumer = kafka.consumer({ groupId: args.group, sessionTimeout: 10000 });
    consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
      joins[name] += 1;
      assigned[name] = (payload.memberAssignment[args.topic] || []).slice().sort();
    });
    // kafkajs reports a generation only with its heartbeats.
    consumer.on(consumer.events.HEARTBEAT, ({ payload }) => {
      const seen = generations[name];
      if (seen[seen.length - 1] !== payload.groupGenerationId) seen.push(payload.groupGenerationId);
    });
    return consumer;
  });
  // Started together: connected, subscribed and running in one go.
  await Promise.all(consumers.map(async (consumer) => {
    await consumer.connect();
    await consumer.subscribe({ topic: args.topic, fromBeginning: true });
    await consumer.run({ eachMessage: async () => {} });
  }));
  const everything = Number(args.partitions);
  const deadline = Date.now() + 60000;
  while (assigned.a.length + assigned.b.length < everything
    || assigned.a.length === 0 || assigned.b.length === 0) {
    if (Date.now() > deadline) throw new Error(`never both assigned: ${JSON.stringify(assigned)}`);
    await sleep(100);
  }
  // Long enough for a second rebalance to show, were one under way, and for a heartbeat of
  // each (every 3 s).
  await sleep(4000);
  while (generations.a.length === 0 || generations.b.length === 0) {
    if (Date.now() > deadline) throw new Error('no heartbeat of both consumers');
    await sleep(100);
  }
  const described = await admin.describeGroups([args.group]);
  const group = described.groups[0];
  summary.generations = generations;
  summary.joins = joins;
  summary.assigned = assigned;
  summary.described = { state: group.state, members: group.members.length };
  await Promise.all(consumers.map((consumer) => consumer.disconnect()));
}

async function deleteGroup(admin, group) {
  try {
    const results = await admin.deleteGroups([group]);
    return results[0].errorCode || 0;
  } catch (err) {
    if (err.groups && err.groups.length > 0) return err.groups[0].errorCode;
    throw err;
  }
}

async function deleteGroups(kafka, admin, args, summary) {
  summary.deleted = await deleteGroup(admin, args.group);
  summary.deleted_unknown = await deleteGroup(admin, `${args.group}-never-existed`);
}

async function deleteRecords(kafka, admin, args, summary) {
  // kafkajs finds the leaders in metadata it must have loaded.
  await admin.fetchTopicMetadata({ topics: [args.topic] });
  await admin.deleteTopicRecords({
    topic: args.topic,
    partitions: [{ partition: 0, offset: args['delete-before'] }],
  });
  const offsets = await admin.fetchTopicOffsets(args.topic);
  summary.earliest_after = Number(offsets.find((entry) => entry.partition === 0).low);
}

async function deletedTopicOffsets(kafka, admin, args, summary) {
  const topic = `${args.topic}-gone`;
  const group = `${args.group}-gone`;
  const committed = async () => {
    const offsets = await admin.fetchOffsets({ groupId: group, topics: [topic] });
    return Number(offsets[0].partitions.find((entry) => entry.partition === 0).offset);
  };
  await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
  await admin.setOffsets({ groupId: group, topic, partitions: [{ partition: 0, offset: '1' }] });
  const before = await committed();
  await admin.deleteTopics({ topics: [topic] });
  await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
  // The coordinator drops them once it applies the deletion: ask for a while.
  let after = await committed();
  for (let tries = 0; after !== -1 && tries < 50; tries += 1) {
    await sleep(100);
    after = await committed();
  }
  summary.gone_offsets = [before, after];
}

async function main() {
  const { values: args } = parseArgs({
    options: {
      bootstrap: { type: 'string' },
      topic: { type: 'string' },
      group: { type: 'string', default: 'admin-data-js' },
      partitions: { type: 'string', default: '4' },
      'delete-before': { type: 'string', default: '3' },
      steps: { type: 'string', default: 'timestamps,together,delete-groups' },
    },
  });
  if (!args.bootstrap || !args.topic) {
    throw new Error('usage: admin_data.js --bootstrap HOST:PORT[,...] --topic T [--group G] '
      + '[--partitions N] [--delete-before OFFSET] [--steps a,b,...]');
  }
  const kafka = new Kafka({
    clientId: 'admin-data-js',
    brokers: args.bootstrap.split(','),
    logLevel: logLevel.WARN,
    logCreator: () => ({ namespace, level, log }) => {
      const { message, ...extra } = log;
      process.stderr.write(`[kafkajs ${level} ${namespace}] ${message} ${JSON.stringify(extra)}\n`);
    },
  });
  const admin = kafka.admin();
  await admin.connect();
  const summary = { client: 'kafkajs' };
  const steps = {
    timestamps,
    together,
    'delete-groups': deleteGroups,
    'delete-records': deleteRecords,
    'deleted-topic-offsets': deletedTopicOffsets,
  };
  for (const name of args.steps.split(',')) {
    await withTimeout(steps[name](kafka, admin, args, summary), 90000, name);
  }
  await admin.disconnect();
  process.stdout.write(`${JSON.stringify(summary)}\n`);
}

main().catch((err) => {
  process.stdout.write(`${JSON.stringify({ error: String(err && err.stack ? err.stack : err) })}\n`);
  process.exit(1);
});
