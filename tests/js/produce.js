// Produce keyed messages with kafkajs (acks=-1, one send per message) and report
// every delivery. Optionally creates the topic first with the kafkajs admin API
// (CreateTopics). Prints one JSON document {client, topic, produced, deliveries}
// on stdout, where each delivery has partition, offset, key and value; kafkajs
// logs go to stderr. Exits 1 on any failure.
//
// kafkajs has no consumer without a consumer group, and group APIs are not part of
// these tests yet, so the Rust test reads the data back with confluent-kafka.
'use strict';

const { parseArgs } = require('node:util');
const { Kafka, Partitioners, logLevel } = require('kafkajs');

function keyedMessage(index, keys) {
  // Mirrors keyed_message in tests/clients/e2e_common.py and tests/src/records.rs.
  const key = `key-${String(index % keys).padStart(2, '0')}`;
  return { key, value: `m${String(index).padStart(6, '0')}-${key}` };
}

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
      messages: { type: 'string', default: '300' },
      keys: { type: 'string', default: '20' },
      'create-partitions': { type: 'string', default: '0' },
      timeout: { type: 'string', default: '30' },
    },
  });
  if (!args.bootstrap || !args.topic) {
    throw new Error('usage: produce.js --bootstrap HOST:PORT --topic TOPIC [--messages N] '
      + '[--keys K] [--create-partitions P] [--timeout SECONDS]');
  }
  const count = Number(args.messages);
  const keys = Number(args.keys);
  const partitions = Number(args['create-partitions']);
  const timeoutMs = Number(args.timeout) * 1000;

  const kafka = new Kafka({
    clientId: 'myelin-e2e-kafkajs',
    brokers: [args.bootstrap],
    connectionTimeout: timeoutMs,
    requestTimeout: timeoutMs,
    retry: { retries: 3 },
    logLevel: logLevel.WARN,
    logCreator: stderrLogger,
  });

  if (partitions > 0) {
    const admin = kafka.admin();
    await admin.connect();
    try {
      await admin.createTopics({
        topics: [{ topic: args.topic, numPartitions: partitions, replicationFactor: 1 }],
        waitForLeaders: true,
        timeout: timeoutMs,
      });
    } finally {
      await admin.disconnect();
    }
  }

  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  const deliveries = [];
  try {
    for (let index = 0; index < count; index += 1) {
      const message = keyedMessage(index, keys);
      const [meta] = await producer.send({ topic: args.topic, acks: -1, messages: [message] });
      if (meta.errorCode !== 0) {
        throw new Error(`message ${index}: error code ${meta.errorCode}`);
      }
      deliveries.push({
        partition: meta.partition,
        offset: Number(meta.baseOffset),
        key: message.key,
        value: message.value,
      });
    }
  } finally {
    await producer.disconnect();
  }

  process.stdout.write(`${JSON.stringify({
    client: 'kafkajs', topic: args.topic, produced: deliveries.length, deliveries,
  })}\n`);
}

main().catch((err) => {
  process.stdout.write(`${JSON.stringify({ error: String(err && err.stack ? err.stack : err) })}\n`);
  process.stderr.write(`FAILED: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
