// Transactions with kafkajs 2.2.4 (producer.transaction(), send, sendOffsets, commit/abort):
// one transaction per letter of --pattern.
//
// Same command line and JSON-lines output as tests/clients/ck_txn_produce.py (see there and
// e2e_common.txn_produce_args), with "client": "kafkajs":
//   --bootstrap HOST:PORT[,...] --topic T --transactional-id ID --pattern [cax]+
//   [--messages M] [--keys K] [--start N] [--partition P] [--create-partitions P]
//   [--transaction-timeout-ms MS] [--hold S] [--hold-at I,J] [--offsets-group G]
//   [--offsets-topic T] [--fence] [--timeout S]
// Lines: initialized, zombie_open and fenced (--fence), holding, transaction (outcome
// committed / aborted / open / failed), summary (always last); {"error": ...} last and exit 1
// on failure. Error objects carry {"error", "code" (Kafka error code), "name" (kafkajs's
// error type, e.g. PRODUCER_FENCED), "fatal": null, "retriable", "abortable": null}.
//
// kafkajs initializes the transactional producer id on its first producer.transaction(), so
// "initialized" is printed once the first transaction object exists. It sends no EndTxn for a
// transaction that wrote nothing; every transaction here writes --messages messages.
'use strict';

const { parseArgs } = require('node:util');
const { Kafka, Partitioners, logLevel } = require('kafkajs');

const CLIENT = 'kafkajs';
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

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

function line(fields) {
  // Pipes are written synchronously on Linux, so every line is out before the next step.
  process.stdout.write(`${JSON.stringify(fields)}\n`);
}

function event(kind, fields = {}) {
  line({ ...fields, event: kind, client: CLIENT, ts: Date.now() / 1000 });
}

function errorFields(error) {
  return {
    error: String(error && error.message ? error.message : error),
    code: error && error.code !== undefined ? error.code : null,
    name: error ? (error.type || error.name || null) : null,
    fatal: null,
    retriable: error && error.retriable !== undefined ? error.retriable : null,
    abortable: null,
  };
}

function fail(message, extra = {}) {
  line({ error: message, ...extra });
  process.stderr.write(`FAILED: ${message}\n`);
  process.exit(1);
}

function parseCommandLine() {
  const { values: args } = parseArgs({
    options: {
      bootstrap: { type: 'string' },
      topic: { type: 'string' },
      'transactional-id': { type: 'string' },
      pattern: { type: 'string' },
      messages: { type: 'string', default: '5' },
      keys: { type: 'string', default: '20' },
      start: { type: 'string', default: '0' },
      partition: { type: 'string', default: '-1' },
      'create-partitions': { type: 'string', default: '0' },
      'transaction-timeout-ms': { type: 'string', default: '60000' },
      hold: { type: 'string', default: '0' },
      'hold-at': { type: 'string', default: '' },
      'offsets-group': { type: 'string', default: '' },
      'offsets-topic': { type: 'string', default: '' },
      fence: { type: 'boolean', default: false },
      timeout: { type: 'string', default: '30' },
    },
  });
  const usage = 'usage: txn_produce.js --bootstrap HOST:PORT[,...] --topic T '
    + '--transactional-id ID --pattern [cax]+ [--messages M] [--keys K] [--start N] '
    + '[--partition P] [--create-partitions P] [--transaction-timeout-ms MS] [--hold S] '
    + '[--hold-at I,J] [--offsets-group G] [--offsets-topic T] [--fence] [--timeout S]';
  if (!args.bootstrap || !args.topic || !args['transactional-id'] || !args.pattern) {
    throw new Error(usage);
  }
  if (!/^[cax]+$/.test(args.pattern) || args.pattern.slice(0, -1).includes('x')) {
    throw new Error(`--pattern must be c, a and x letters, x only last\n${usage}`);
  }
  const hold = Number(args.hold);
  const holdAt = args['hold-at'].split(',').filter((s) => s.trim() !== '').map(Number);
  const pattern = [...args.pattern];
  return {
    bootstrap: args.bootstrap.split(','),
    topic: args.topic,
    transactionalId: args['transactional-id'],
    pattern,
    messages: Number(args.messages),
    keys: Number(args.keys),
    start: Number(args.start),
    partition: Number(args.partition),
    createPartitions: Number(args['create-partitions']),
    transactionTimeout: Number(args['transaction-timeout-ms']),
    hold,
    held: new Set(hold > 0 ? (holdAt.length ? holdAt : pattern.map((_, i) => i)) : []),
    offsetsGroup: args['offsets-group'],
    offsetsTopic: args['offsets-topic'] || args.topic,
    fence: args.fence,
    timeoutMs: Number(args.timeout) * 1000,
  };
}

function txnMessages(opts, txnIndex, first = opts.start + txnIndex * opts.messages) {
  const out = [];
  for (let index = first; index < first + opts.messages; index += 1) {
    out.push(keyedMessage(index, opts.keys));
  }
  return out;
}

// Sends the messages in the transaction; returns the deliveries (one send per message, so
// every delivery has its own offset).
async function sendAll(tx, opts, messages) {
  const deliveries = [];
  for (const message of messages) {
    const record = opts.partition >= 0 ? { ...message, partition: opts.partition } : message;
    const [meta] = await tx.send({ topic: opts.topic, acks: -1, messages: [record] });
    if (meta.errorCode !== 0) throw new Error(`error code ${meta.errorCode}`);
    deliveries.push({
      partition: meta.partition, offset: Number(meta.baseOffset), key: message.key,
      value: message.value,
    });
  }
  return deliveries;
}

async function main() {
  const opts = parseCommandLine();
  const perTxn = opts.timeoutMs * 3 + opts.hold * 1000;
  const watchdog = setTimeout(() => {
    fail(`txn_produce.js did not finish within ${(opts.timeoutMs * 4 + perTxn * opts.pattern.length) / 1000} s`);
  }, opts.timeoutMs * 4 + perTxn * opts.pattern.length);

  const kafka = new Kafka({
    clientId: 'myelin-e2e-kafkajs-txn',
    brokers: opts.bootstrap,
    connectionTimeout: opts.timeoutMs,
    requestTimeout: opts.timeoutMs,
    retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 1000 },
    logLevel: logLevel.WARN,
    logCreator: stderrLogger,
  });
  const makeProducer = () => kafka.producer({
    createPartitioner: Partitioners.DefaultPartitioner,
    transactionalId: opts.transactionalId,
    transactionTimeout: opts.transactionTimeout,
    idempotent: true,
    maxInFlightRequests: 1,
    retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 1000 },
  });

  if (opts.createPartitions > 0) {
    const admin = kafka.admin();
    await admin.connect();
    try {
      await admin.createTopics({
        topics: [{ topic: opts.topic, numPartitions: opts.createPartitions, replicationFactor: 1 }],
        waitForLeaders: true,
        timeout: opts.timeoutMs,
      });
    } finally {
      await admin.disconnect();
    }
  }

  let zombie = null;
  let zombieTx = null;
  if (opts.fence) {
    zombie = makeProducer();
    await zombie.connect();
    zombieTx = await zombie.transaction();
    const messages = txnMessages(opts, 0, opts.start + 1000000);
    const deliveries = await sendAll(zombieTx, opts, messages);
    event('zombie_open', { values: messages.map((m) => m.value), deliveries });
  }

  const producer = makeProducer();
  await producer.connect();
  let tx;
  try {
    tx = await producer.transaction();
  } catch (error) {
    fail('init_transactions failed', { cause: errorFields(error) });
  }
  event('initialized', { transactional_id: opts.transactionalId });

  if (zombie) {
    try {
      await sendAll(zombieTx, opts, [{ key: 'zombie-key', value: 'zombie-after-fence' }]);
      event('fenced', {
        stage: 'send', error: null, code: null, name: null, fatal: null,
      });
    } catch (error) {
      event('fenced', { stage: 'send', ...errorFields(error) });
    }
    try {
      await zombieTx.commit();
    } catch (error) {
      event('fenced', { stage: 'commit', ...errorFields(error) });
      zombie = null;
    }
    if (zombie) fail("the fenced producer's commit succeeded");
  }

  const outcomes = { committed: [], aborted: [], open: [] };
  const summary = (exitedOpen) => ({
    event: 'summary',
    client: CLIENT,
    ts: Date.now() / 1000,
    topic: opts.topic,
    transactional_id: opts.transactionalId,
    transactions: opts.pattern.length,
    exited_open: exitedOpen,
    ...outcomes,
  });

  for (let index = 0; index < opts.pattern.length; index += 1) {
    const letter = opts.pattern[index];
    const messages = txnMessages(opts, index);
    const values = messages.map((m) => m.value);
    let deliveries = [];
    let offsets = null;
    try {
      if (index > 0) tx = await producer.transaction();
      deliveries = await sendAll(tx, opts, messages);
      if (opts.offsetsGroup) {
        offsets = {
          group: opts.offsetsGroup,
          topic: opts.offsetsTopic,
          partition: 0,
          offset: opts.start + (index + 1) * opts.messages,
        };
        await tx.sendOffsets({
          consumerGroupId: opts.offsetsGroup,
          topics: [{
            topic: opts.offsetsTopic,
            partitions: [{ partition: 0, offset: String(offsets.offset) }],
          }],
        });
      }
      if (letter === 'x') {
        event('transaction', {
          index, outcome: 'open', values, deliveries, offsets,
        });
        outcomes.open.push(...values);
        line(summary(true));
        process.exit(0);
      }
      if (opts.held.has(index)) {
        event('holding', { index, seconds: opts.hold, values });
        await sleep(opts.hold * 1000);
      }
      if (letter === 'c') await tx.commit();
      else await tx.abort();
    } catch (error) {
      event('transaction', {
        index, outcome: 'failed', values, deliveries, offsets, error: errorFields(error),
      });
      fail(`transaction ${index} failed: ${error && error.message ? error.message : error}`,
        summary(false));
    }
    const outcome = letter === 'c' ? 'committed' : 'aborted';
    outcomes[outcome].push(...values);
    event('transaction', {
      index, outcome, values, deliveries, offsets,
    });
  }
  await producer.disconnect();
  clearTimeout(watchdog);
  line(summary(false));
  process.exit(0);
}

main().catch((err) => {
  fail(String(err && err.stack ? err.stack : err));
});
