#!/usr/bin/env node
// The original Node.js dashboard, as a test peer: what it puts on the wire and what it reads.
//
//   node dashboard.js [--invoices N] [--scores N] [--expect M] [--timeout-ms T]
//
// Like the original it
//   - produces the plain-text value `Gerar Nota fiscal` to `generate-invoice` and `Calcular score`
//     to `calculate-score`, with no key and no headers (KafkaJS 2.x producer, default settings);
//   - consumes `invoice-generated` and `score-calculated` from the beginning in consumer group
//     `dashboard` and logs each value.
// The original sent one request per button click; here the clicks are `--invoices` and
// `--scores` (default 1 each), sent once the consumer is running. Every reply value is printed to
// stdout, one per line, as it arrives; everything else (KafkaJS's own log included) goes to
// stderr. The process exits 0 after it has printed `--expect` values (default: one per request
// sent), or 1 if `--timeout-ms` (default 60000) passes first. With `--expect 0` it runs until the
// timeout and exits 0; with `--timeout-ms 0` as well, until Ctrl-C, like the original.
//
// Environment:
//   KAFKA_BOOTSTRAP_SERVERS  comma-separated brokers (default 127.0.0.1:9092)
//   TOPIC_PREFIX             the one deviation from the original: a namespace put in front of
//                            every topic name and of the group id, so that tests can run on topics
//                            of their own (empty by default: the original names)
'use strict';

const { parseArgs } = require('node:util');
const { Kafka, logLevel } = require('kafkajs');

const INVOICE_REQUEST = 'Gerar Nota fiscal';
const SCORE_REQUEST = 'Calcular score';

const { values: options } = parseArgs({
  options: {
    invoices: { type: 'string', default: '1' },
    scores: { type: 'string', default: '1' },
    expect: { type: 'string' },
    'timeout-ms': { type: 'string', default: '60000' },
  },
});
const count = (name, value) => {
  const number = Number(value);
  if (!Number.isInteger(number) || number < 0) {
    console.error(`--${name}: not a whole number: ${value}`);
    process.exit(2);
  }
  return number;
};
const invoices = count('invoices', options.invoices);
const scores = count('scores', options.scores);
const expected = count('expect', options.expect ?? String(invoices + scores));
const timeoutMs = count('timeout-ms', options['timeout-ms']);

const prefix = process.env.TOPIC_PREFIX ?? '';
const topics = {
  generateInvoice: `${prefix}generate-invoice`,
  calculateScore: `${prefix}calculate-score`,
  invoiceGenerated: `${prefix}invoice-generated`,
  scoreCalculated: `${prefix}score-calculated`,
};
const brokers = (process.env.KAFKA_BOOTSTRAP_SERVERS ?? '127.0.0.1:9092').split(',');

// KafkaJS logs through console.info by default, which is stdout: keep stdout for reply values.
const toStderr = () => ({ namespace, level, label, log }) => {
  const { message, ...extra } = log;
  console.error(`[${label}] ${namespace}: ${message} ${JSON.stringify(extra)}`);
};

const kafka = new Kafka({
  clientId: 'dashboard',
  brokers,
  logLevel: logLevel.INFO,
  logCreator: toStderr,
});
const producer = kafka.producer();
const consumer = kafka.consumer({ groupId: `${prefix}dashboard` });

let received = 0;
let finished = false;

async function finish(code) {
  if (finished) return;
  finished = true;
  clearTimeout(deadline);
  try {
    await consumer.disconnect();
    await producer.disconnect();
  } catch (error) {
    console.error(`disconnect failed: ${error}`);
  }
  process.exit(code);
}

const deadline =
  timeoutMs > 0
    ? setTimeout(() => {
        console.error(`${timeoutMs} ms passed with ${received} of ${expected} replies`);
        finish(received >= expected ? 0 : 1);
      }, timeoutMs)
    : undefined;

async function main() {
  await consumer.connect();
  await consumer.subscribe({
    topics: [topics.invoiceGenerated, topics.scoreCalculated],
    fromBeginning: true,
  });
  await consumer.run({
    eachMessage: async ({ message }) => {
      console.log(message.value.toString());
      received += 1;
      if (expected > 0 && received >= expected) {
        // Not awaited: disconnecting waits for this handler to return.
        finish(0);
      }
    },
  });

  await producer.connect();
  for (let i = 0; i < invoices; i += 1) {
    await producer.send({ topic: topics.generateInvoice, messages: [{ value: INVOICE_REQUEST }] });
  }
  for (let i = 0; i < scores; i += 1) {
    await producer.send({ topic: topics.calculateScore, messages: [{ value: SCORE_REQUEST }] });
  }
  console.error(`sent ${invoices} invoice and ${scores} score requests`);
}

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => finish(0));
}

main().catch((error) => {
  console.error(`dashboard failed: ${error.stack ?? error}`);
  finish(1);
});
