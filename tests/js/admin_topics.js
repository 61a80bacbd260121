// Drive the topic admin APIs with kafkajs's admin client and report what they did:
// createTopics (2 partitions, --replication-factor), createPartitions to 3 (and to 2,
// refused), fetchTopicMetadata, alterConfigs (AlterConfigs, whole replacement) then
// describeConfigs, createTopics with a replicaAssignment (--assignment, JSON), and
// describeCluster. Prints one JSON document on stdout; kafkajs logs go to stderr; the
// Rust test (tests/tests/admin_topics.rs) checks it. Exits 1 on an unexpected failure.
'use strict';

const { parseArgs } = require('node:util');
const { Kafka, ConfigResourceTypes, logLevel } = require('kafkajs');

function stderrLogger() {
  return ({ namespace, level, log }) => {
    const { message, ...extra } = log;
    process.stderr.write(`[kafkajs ${level} ${namespace}] ${message} ${JSON.stringify(extra)}\n`);
  };
}

// 'OK', or the Kafka error type kafkajs reports.
async function outcome(call) {
  try {
    await call();
    return 'OK';
  } catch (err) {
    return err.type || (err.errors && err.errors[0] && err.errors[0].type) || String(err);
  }
}

async function partitionsOf(admin, topic) {
  const metadata = await admin.fetchTopicMetadata({ topics: [topic] });
  const partitions = {};
  for (const p of metadata.topics[0].partitions) {
    partitions[p.partitionId] = { replicas: p.replicas, leader: p.leader };
  }
  return partitions;
}

async function describe(admin, topic) {
  const described = await admin.describeConfigs({
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic }],
    includeSynonyms: false,
  });
  const configs = {};
  for (const entry of described.resources[0].configEntries) {
    configs[entry.configName] = { value: entry.configValue, isDefault: entry.isDefault };
  }
  return configs;
}

async function main() {
  const { values: args } = parseArgs({
    options: {
      bootstrap: { type: 'string' },
      topic: { type: 'string' },
      'replication-factor': { type: 'string', default: '1' },
      assignment: { type: 'string' },
      timeout: { type: 'string', default: '30' },
    },
  });
  if (!args.bootstrap || !args.topic || !args.assignment) {
    throw new Error('usage: admin_topics.js --bootstrap HOST:PORT --topic TOPIC '
      + '--assignment JSON [--replication-factor R] [--timeout SECONDS]');
  }
  const timeoutMs = Number(args.timeout) * 1000;
  const kafka = new Kafka({
    clientId: 'myelin-e2e-kafkajs-admin',
    brokers: args.bootstrap.split(','),
    connectionTimeout: timeoutMs,
    requestTimeout: timeoutMs,
    retry: { retries: 5 },
    logLevel: logLevel.WARN,
    logCreator: stderrLogger,
  });
  const admin = kafka.admin();
  await admin.connect();
  const topic = args.topic;
  const summary = { client: 'kafkajs', topic };
  try {
    summary.create = await outcome(() => admin.createTopics({
      topics: [{ topic, numPartitions: 2, replicationFactor: Number(args['replication-factor']) }],
      waitForLeaders: true,
      timeout: timeoutMs,
    }));
    summary.grow = await outcome(() => admin.createPartitions({
      topicPartitions: [{ topic, count: 3 }],
      timeout: timeoutMs,
    }));
    summary.shrink = await outcome(() => admin.createPartitions({
      topicPartitions: [{ topic, count: 2 }],
      timeout: timeoutMs,
    }));
    summary.partitions = await partitionsOf(admin, topic);
    summary.alter = await outcome(() => admin.alterConfigs({
      validateOnly: false,
      resources: [{
        type: ConfigResourceTypes.TOPIC,
        name: topic,
        configEntries: [{ name: 'retention.ms', value: '5400000' }],
      }],
    }));
    // Each broker applies a change once it learns of its commit: ask until it shows.
    const deadline = Date.now() + timeoutMs;
    do {
      summary.configs = await describe(admin, topic);
      if (summary.configs['retention.ms'].value === '5400000') break;
      await new Promise((resolve) => { setTimeout(resolve, 200); });
    } while (Date.now() < deadline);
    const assignment = JSON.parse(args.assignment);
    const placed = `${topic}-placed`;
    summary.create_placed = await outcome(() => admin.createTopics({
      topics: [{
        topic: placed,
        replicaAssignment: assignment.map((replicas, partition) => ({ partition, replicas })),
      }],
      timeout: timeoutMs,
    }));
    summary.placed_partitions = await partitionsOf(admin, placed);
    const cluster = await admin.describeCluster();
    summary.cluster = {
      clusterId: cluster.clusterId,
      controller: cluster.controller,
      brokers: cluster.brokers.map((broker) => broker.nodeId).sort(),
    };
  } finally {
    await admin.disconnect();
  }
  process.stdout.write(`${JSON.stringify(summary)}\n`);
}

main().catch((err) => {
  process.stdout.write(`${JSON.stringify({ error: String(err && err.stack ? err.stack : err) })}\n`);
  process.exit(1);
});
