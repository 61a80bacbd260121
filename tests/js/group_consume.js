// A kafkajs consumer in a consumer group that reports what it does.
//
// Same command line and JSON-lines output as tests/clients/ck_group_consume.py (see there):
// started, assigned, revoked, lost, message, stray, committed (only once acknowledged),
// commit_failed and closed. Auto-commit is off; what was processed is committed with
// explicit offsets every --commit-every messages or --commit-interval-ms and on SIGTERM,
// then the consumer disconnects (which sends LeaveGroup).
//
// kafkajs has no revocation callback: "revoked" is printed on its REBALANCING event, which
// it emits just before it rejoins (nothing is committed then; the next owner reads again
// from the last commit), and a new "assigned" always replaces the previous assignment. At
// SIGTERM it commits, prints "revoked" for what it owns, then leaves.
// "committed" is printed from kafkajs's COMMIT_OFFSETS instrumentation event, which it emits
// only once the broker answered the OffsetCommit without error (commitOffsets() itself also
// returns quietly when the consumer is not running).
'use strict';

const { parseArgs } = require('node:util');
const { Kafka, logLevel } = require('kafkajs');

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function stderrLogger() {
  return ({ namespace, level, log }) => {
    const { message, ...extra } = log;
    process.stderr.write(`[kafkajs ${level} ${namespace}] ${message} ${JSON.stringify(extra)}\n`);
  };
}

async function main() {
  const { values: args } = parseArgs({
    options: {
      bootstrap: { type: 'string' },
      topic: { type: 'string' },
      group: { type: 'string' },
      'client-name': { type: 'string' },
      'session-timeout-ms': { type: 'string', default: '6000' },
      'commit-every': { type: 'string', default: '20' },
      'commit-interval-ms': { type: 'string', default: '200' },
      'delay-ms': { type: 'string', default: '2' },
    },
  });
  if (!args.bootstrap || !args.topic || !args.group || !args['client-name']) {
    throw new Error('usage: group_consume.js --bootstrap HOST:PORT[,...] --topic T '
      + '--group G --client-name N [--session-timeout-ms MS] [--commit-every N] '
      + '[--commit-interval-ms MS] [--delay-ms MS]');
  }
  const { topic } = args;
  const name = args['client-name'];
  const commitEvery = Number(args['commit-every']);
  const commitIntervalMs = Number(args['commit-interval-ms']);
  const delayMs = Number(args['delay-ms']);

  // Pipes are written synchronously on Linux, so every line is out before the next step.
  const event = (kind, fields = {}) => {
    process.stdout.write(`${JSON.stringify({
      ...fields, event: kind, client: name, ts: Date.now() / 1000,
    })}\n`);
  };

  const kafka = new Kafka({
    clientId: name,
    brokers: args.bootstrap.split(','),
    logLevel: logLevel.WARN,
    logCreator: stderrLogger,
    // kafkajs keeps sending group requests to the coordinator it found, even once that
    // node is gone, until its retries run out and the consumer restarts (and looks the
    // coordinator up again): few, short retries keep that to seconds.
    retry: { retries: 3, initialRetryTime: 100, maxRetryTime: 1000 },
  });
  const consumer = kafka.consumer({
    groupId: args.group,
    sessionTimeout: Number(args['session-timeout-ms']),
    heartbeatInterval: 1000,
    // Short fetch long-polls: kafkajs heartbeats from its fetch loop, not from a thread.
    maxWaitTimeInMs: 500,
    // The consumer's own retries (of its fetch loop, before it crashes and restarts).
    retry: { retries: 3, initialRetryTime: 100, maxRetryTime: 1000 },
  });

  let owned = new Set();
  const pending = new Map(); // partition -> next offset to commit (processed, not committed)
  let sinceCommit = 0;
  let lastCommit = Date.now();
  let busy = false; // inside eachMessage
  let committing = Promise.resolve(true);
  let stopping = false;

  consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
    const partitions = (payload.memberAssignment[topic] || []).slice().sort((a, b) => a - b);
    owned = new Set(partitions);
    pending.clear();
    event('assigned', { partitions });
  });
  consumer.on(consumer.events.REBALANCING, () => {
    const partitions = [...owned].sort((a, b) => a - b);
    owned = new Set();
    pending.clear();
    event('revoked', { partitions });
  });
  consumer.on(consumer.events.COMMIT_OFFSETS, ({ payload }) => {
    for (const { topic: committedTopic, partitions } of payload.topics) {
      if (committedTopic !== topic) continue;
      for (const { partition, offset } of partitions) {
        event('committed', { partition: Number(partition), offset: Number(offset) });
      }
    }
  });
  // kafkajs emits CRASH once it has stopped consuming; it then restarts and rejoins as a
  // new member.
  consumer.on(consumer.events.CRASH, ({ payload }) => {
    process.stderr.write(`consumer crashed (restart: ${payload.restart}): ${payload.error}\n`);
    const partitions = [...owned].sort((a, b) => a - b);
    owned = new Set();
    pending.clear();
    event('lost', { partitions });
  });

  // Commits what was processed on the owned partitions, one commit at a time; resolves to
  // whether it succeeded.
  const commit = () => {
    committing = committing.then(async () => {
      const offsets = [...pending.entries()].filter(([partition]) => owned.has(partition));
      lastCommit = Date.now();
      sinceCommit = 0;
      if (offsets.length === 0) return true;
      try {
        await consumer.commitOffsets(offsets.map(([partition, offset]) => (
          { topic, partition, offset: String(offset) })));
      } catch (error) {
        event('commit_failed', {
          partitions: offsets.map(([partition]) => partition).sort((a, b) => a - b),
          error: String(error && error.message ? error.message : error),
        });
        return false;
      }
      for (const [partition, offset] of offsets) {
        if (pending.get(partition) === offset) pending.delete(partition);
      }
      return true;
    });
    return committing;
  };

  process.on('SIGTERM', () => {
    stopping = true;
  });

  event('started');
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ partition, message }) => {
      if (stopping) return; // not processed, so not committed
      busy = true;
      try {
        const offset = Number(message.offset);
        if (!owned.has(partition)) {
          event('stray', { partition, offset });
          return;
        }
        event('message', { partition, offset, value: message.value.toString() });
        pending.set(partition, offset + 1);
        sinceCommit += 1;
        if (delayMs > 0) await sleep(delayMs);
        if (sinceCommit >= commitEvery || Date.now() - lastCommit >= commitIntervalMs) {
          await commit();
        }
      } finally {
        busy = false;
      }
    },
  });

  // eachMessage only runs when messages arrive: commit by time as well.
  while (!stopping) {
    await sleep(50);
    if (!busy && pending.size > 0 && Date.now() - lastCommit >= commitIntervalMs) {
      await commit();
    }
  }
  while (busy) await sleep(5);
  const finalOk = await commit();
  // Nothing more is processed: give the partitions up before leaving, so that "revoked"
  // comes before any other member can be assigned them.
  const partitions = [...owned].sort((a, b) => a - b);
  owned = new Set();
  event('revoked', { partitions });
  await consumer.disconnect(); // stops fetching and sends LeaveGroup
  event('closed', { final_commit_ok: finalOk });
  process.exit(0);
}

main().catch((error) => {
  process.stderr.write(`FAILED: ${error && error.stack ? error.stack : error}\n`);
  process.exit(1);
});
