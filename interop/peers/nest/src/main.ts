// A NestJS peer for the interop tests, written against NestJS's public API only.
//
//   node dist/main.js client --brokers HOST:PORT --topic REQUEST_TOPIC --kind invoice|score
//                            [--count 50] [--invalid 0] [--timeout-ms 30000]
//     ClientKafka.send()s COUNT valid requests (and INVALID invalid ones) to REQUEST_TOPIC, all
//     at once, and waits for every reply. NestJS picks the reply topic itself:
//     `<REQUEST_TOPIC>.reply`. Prints one JSON line per call on stdout ({"customer", "reply"} or
//     {"customer", "error"}); logs go to stderr. Exits 0 only if every valid call completed with
//     the reply for its own customer and every invalid one failed with `invalid_request`.
//
//   node dist/main.js load --brokers HOST:PORT --topic REQUEST_TOPIC --kind invoice|score
//                          --concurrency N --warmup-s W --duration-s D [--timeout-ms 10000]
//     Closed-loop load for comparing request/reply stacks on one broker (scripts/bench.d/versus):
//     N ClientKafka.send() calls in flight, each completion starting the next, W seconds
//     unmeasured, then D seconds measured. Requests are the contract's valid ones for 1000
//     customers in turn, keyed by customer. Prints `window start` and `window end` on stderr as
//     the measured window opens and closes, and one JSON line on stdout at the end:
//     {round_trips, seconds, per_second, p50_ms, p99_ms, p999_ms, errors, timeouts, cpu_ms}.
//     No --linger-ms other than 0: KafkaJS does not linger, every send() is a produce request.
//
//   node dist/main.js responder --brokers HOST:PORT [--prefix TOPIC_PREFIX] [--group GROUP]
//     A NestJS microservice whose @MessagePattern handlers answer `<prefix>generate-invoice` and
//     `<prefix>calculate-score` in the project's reply contract ({"schema_version":1,"ok":...}).
//     Prints {"ready":true} once its consumer group is joined. Deterministic business rules:
//       invoice number  (offset + 1) * 1000 + partition of the request; tax 10 %, half up
//       score           100 + (sum of the customer name's UTF-16 code units) mod 9900
//       customer "reject..."  RpcException({code: "invalid_request", message}) -> kafka_nest-err
//       customer "crash..."   a plain Error: NestJS answers {"status":"error","message":...}
import 'reflect-metadata';
import { Controller, Logger, type LoggerService, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import {
  ClientKafka,
  Ctx,
  KafkaContext,
  MessagePattern,
  type MicroserviceOptions,
  Payload,
  RpcException,
  Transport,
} from '@nestjs/microservices';
import kafkajs from 'kafkajs';
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { firstValueFrom, lastValueFrom, timeout, TimeoutError } from 'rxjs';

const { logLevel, Partitioners } = kafkajs;

/** Everything NestJS and KafkaJS log goes to stderr, so stdout carries only results. */
class StderrLogger implements LoggerService {
  log(message: unknown, ...context: unknown[]) {
    this.write('LOG', message, context);
  }
  error(message: unknown, ...context: unknown[]) {
    this.write('ERROR', message, context);
  }
  warn(message: unknown, ...context: unknown[]) {
    this.write('WARN', message, context);
  }
  debug(message: unknown, ...context: unknown[]) {
    this.write('DEBUG', message, context);
  }
  verbose(message: unknown, ...context: unknown[]) {
    this.write('VERBOSE', message, context);
  }
  private write(level: string, message: unknown, context: unknown[]) {
    const text = message instanceof Error ? (message.stack ?? message.message) : message;
    const where = context.length > 0 ? ` [${context.map(String).join(' ')}]` : '';
    process.stderr.write(`${new Date().toISOString()} ${level}${where} ${String(text)}\n`);
  }
}

type Args = Map<string, string>;

function parseArgs(argv: string[]): Args {
  const args = new Map<string, string>();
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i];
    const value = argv[i + 1];
    if (!key.startsWith('--') || value === undefined) {
      throw new Error(`expected --name value pairs, got ${JSON.stringify(argv.slice(i))}`);
    }
    args.set(key.slice(2), value);
  }
  return args;
}

function required(args: Args, name: string): string {
  const value = args.get(name);
  if (value === undefined || value === '') {
    throw new Error(`--${name} is required`);
  }
  return value;
}

function integer(args: Args, name: string, fallback: number): number {
  const value = Number(args.get(name) ?? fallback);
  if (!Number.isInteger(value) || value < 0) {
    throw new Error(`--${name} must be a non-negative integer`);
  }
  return value;
}

function kafkaClientOptions(brokers: string, clientId: string) {
  return { clientId, brokers: brokers.split(','), logLevel: logLevel.WARN };
}

// ---------------------------------------------------------------------------------------------
// client: ClientKafka.send()

/**
 * A ClientKafka for `topic`, connected, under a fresh `<name>-<run>` client id and group. Its
 * reply topic is read from the beginning: a reply that lands before the consumer's first fetch
 * has resolved "latest" would otherwise be skipped. Returns once the reply consumer has joined
 * its group: send() needs its reply partition.
 */
async function connectedClient(brokers: string, topic: string, name: string): Promise<ClientKafka> {
  const run = randomUUID().slice(0, 8);
  const client = new ClientKafka({
    client: kafkaClientOptions(brokers, `${name}-${run}`),
    consumer: { groupId: `${name}-${run}` },
    subscribe: { fromBeginning: true },
    producer: { createPartitioner: Partitioners.DefaultPartitioner },
  });
  client.subscribeToResponseOf(topic);
  await client.connect();
  return client;
}

type Kind = 'invoice' | 'score';

interface Call {
  customer: string;
  request: Record<string, unknown>;
  /** Whether the reply must be a success (true) or an `invalid_request` error (false). */
  valid: boolean;
  /** For invoices: the quantity the reply must echo, which tells replies apart beyond the name. */
  quantity?: number;
}

function calls(kind: Kind, count: number, invalid: number): Call[] {
  const all: Call[] = [];
  for (let i = 0; i < count; i++) {
    const customer = `Nest ${kind} customer ${i}`;
    if (kind === 'invoice') {
      const quantity = i + 1;
      const lines = [{ description: `Widget ${i}`, quantity, unit_price_cents: 250 }];
      all.push({ customer, request: { schema_version: 1, customer, lines }, valid: true, quantity });
    } else {
      all.push({ customer, request: { schema_version: 1, customer }, valid: true });
    }
  }
  for (let i = 0; i < invalid; i++) {
    const customer = `Nest invalid ${kind} ${i}`;
    // Our workers refuse an invoice without lines and a score request for a blank customer.
    const request =
      kind === 'invoice'
        ? { schema_version: 1, customer, lines: [] }
        : { schema_version: 1, customer: ' '.repeat(i + 1) };
    all.push({ customer, request, valid: false });
  }
  return all;
}

/** Why a reply does not answer `call`, or null when it does. */
function wrongReply(kind: Kind, call: Call, reply: any): string | null {
  if (reply === null || typeof reply !== 'object' || reply.schema_version !== 1 || !reply.ok) {
    return `not a success reply of the contract: ${JSON.stringify(reply)}`;
  }
  if (reply.ok.customer !== call.customer) {
    return `reply is for ${JSON.stringify(reply.ok.customer)}, not ${JSON.stringify(call.customer)}`;
  }
  if (kind === 'invoice' && reply.ok.lines?.[0]?.quantity !== call.quantity) {
    return `reply has quantity ${reply.ok.lines?.[0]?.quantity}, not ${call.quantity}`;
  }
  return null;
}

async function runClient(args: Args): Promise<number> {
  const brokers = required(args, 'brokers');
  const topic = required(args, 'topic');
  const kind = required(args, 'kind');
  if (kind !== 'invoice' && kind !== 'score') {
    throw new Error('--kind must be invoice or score');
  }
  const count = integer(args, 'count', 50);
  const invalid = integer(args, 'invalid', 0);
  const timeoutMs = integer(args, 'timeout-ms', 30000);
  const client = await connectedClient(brokers, topic, 'nest-peer');

  const pending = calls(kind, count, invalid).map(async (call) => {
    try {
      const reply = await lastValueFrom(client.send(topic, call.request).pipe(timeout(timeoutMs)));
      console.log(JSON.stringify({ customer: call.customer, reply }));
      const wrong = call.valid ? wrongReply(kind, call, reply) : 'expected an error, got a reply';
      return wrong === null ? null : `${call.customer}: ${wrong}`;
    } catch (error: any) {
      console.log(JSON.stringify({ customer: call.customer, error: String(error?.message ?? error), detail: error }));
      if (call.valid) {
        return `${call.customer}: call failed: ${JSON.stringify(error)} ${error?.stack ?? ''}`;
      }
      return error?.code === 'invalid_request' ? null : `${call.customer}: wrong error ${JSON.stringify(error)}`;
    }
  });
  const problems = (await Promise.all(pending)).filter((problem) => problem !== null);
  await client.close();
  for (const problem of problems) {
    process.stderr.write(`FAILED ${problem}\n`);
  }
  process.stderr.write(`calls: ${count + invalid - problems.length} as expected, ${problems.length} not\n`);
  return problems.length === 0 ? 0 : 1;
}

// ---------------------------------------------------------------------------------------------
// load: ClientKafka.send() in a closed loop, measured

/** Distinct customers, hence keys, the calls take in turn. */
const LOAD_CUSTOMERS = 1000;

/** A required integer argument of at least `minimum`. */
function atLeast(args: Args, name: string, minimum: number): number {
  required(args, name);
  const value = integer(args, name, minimum);
  if (value < minimum) {
    throw new Error(`--${name} must be at least ${minimum}`);
  }
  return value;
}

/** Resolves at `time` (a performance.now() value). */
function until(time: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, time - performance.now())));
}

/** Nearest rank: the smallest latency that a fraction q of all of them do not exceed. */
function percentile(sorted: Float64Array, q: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.max(Math.ceil(q * sorted.length), 1) - 1];
}

async function runLoad(args: Args): Promise<number> {
  const brokers = required(args, 'brokers');
  const topic = required(args, 'topic');
  const kind = required(args, 'kind');
  if (kind !== 'invoice' && kind !== 'score') {
    throw new Error('--kind must be invoice or score');
  }
  const concurrency = atLeast(args, 'concurrency', 1);
  const warmupMs = atLeast(args, 'warmup-s', 0) * 1000;
  const durationMs = atLeast(args, 'duration-s', 1) * 1000;
  const timeoutMs = integer(args, 'timeout-ms', 10000);
  if (integer(args, 'linger-ms', 0) !== 0) {
    throw new Error('--linger-ms: KafkaJS has no linger, each send() is a produce request of its own (linger 0)');
  }
  const client = await connectedClient(brokers, topic, 'nest-load');

  const requests = calls(kind, LOAD_CUSTOMERS, 0);
  const from = performance.now() + warmupMs;
  const to = from + durationMs;
  // Calls started in the window give the latencies (successes only), errors and timeouts;
  // successes completed in the window give the throughput.
  const latencies: number[] = [];
  let completed = 0;
  let errors = 0;
  let timeouts = 0;
  let firstError: string | undefined;
  let next = 0;

  const loop = async () => {
    for (let started = performance.now(); started < to; started = performance.now()) {
      const call = requests[next];
      next = (next + 1) % requests.length;
      let failure: unknown = null;
      try {
        const message = { key: call.customer, value: call.request };
        const reply = await firstValueFrom(client.send(topic, message).pipe(timeout(timeoutMs)));
        if (typeof reply?.ok !== 'object' || reply.ok === null) {
          failure = new Error(`not a success reply of the contract: ${JSON.stringify(reply)}`);
        }
      } catch (error) {
        // An error reply of the contract arrives as its parsed `kafka_nest-err`.
        failure = error ?? new Error('failed without a reason');
      }
      const finished = performance.now();
      if (failure === null && finished >= from && finished < to) {
        completed++;
      }
      if (started < from) {
        continue;
      }
      if (failure === null) {
        latencies.push(finished - started);
      } else if (failure instanceof TimeoutError) {
        timeouts++;
      } else {
        errors++;
        firstError ??= failure instanceof Error ? String(failure) : JSON.stringify(failure);
      }
    }
  };
  const loops = Array.from({ length: concurrency }, () => loop());
  const cpu = await until(from).then(async () => {
    const atStart = process.cpuUsage();
    process.stderr.write('window start\n');
    await until(to);
    const used = process.cpuUsage(atStart);
    process.stderr.write('window end\n');
    return used;
  });
  await Promise.all(loops);
  await client.close();

  const sorted = Float64Array.from(latencies).sort();
  const seconds = durationMs / 1000;
  console.log(
    JSON.stringify({
      round_trips: completed,
      seconds,
      per_second: completed / seconds,
      p50_ms: percentile(sorted, 0.5),
      p99_ms: percentile(sorted, 0.99),
      p999_ms: percentile(sorted, 0.999),
      errors,
      timeouts,
      cpu_ms: (cpu.user + cpu.system) / 1000,
    }),
  );
  if (firstError !== undefined) {
    process.stderr.write(`first error: ${firstError}\n`);
  }
  return latencies.length > 0 ? 0 : 1;
}

// ---------------------------------------------------------------------------------------------
// responder: @MessagePattern handlers

interface LineItem {
  description: string;
  quantity: number;
  unit_price_cents: number;
}

function refuse(message: string): never {
  // An RpcException with an object becomes the kafka_nest-err header as it is.
  throw new RpcException({ code: 'invalid_request', message });
}

function customerOf(request: any): string {
  if (typeof request?.customer !== 'string' || request.customer.trim() === '') {
    refuse('customer: must be a non-empty string');
  }
  const customer: string = request.customer;
  if (customer.toLowerCase().startsWith('reject')) {
    refuse(`customer ${customer} is refused by the NestJS responder`);
  }
  if (customer.toLowerCase().startsWith('crash')) {
    throw new Error(`the NestJS responder crashed on ${customer}`);
  }
  return customer;
}

function responderModule(prefix: string) {
  @Controller()
  class ContractHandlers {
    @MessagePattern(`${prefix}generate-invoice`)
    invoice(@Payload() request: any, @Ctx() context: KafkaContext) {
      const customer = customerOf(request);
      if (!Array.isArray(request.lines) || request.lines.length === 0) {
        refuse('lines: must not be empty');
      }
      const lines = (request.lines as LineItem[]).map((line) => ({
        description: line.description,
        quantity: line.quantity,
        unit_price_cents: line.unit_price_cents,
        amount_cents: line.quantity * line.unit_price_cents,
      }));
      const subtotal = lines.reduce((sum, line) => sum + line.amount_cents, 0);
      const tax = Math.floor((subtotal * 1000 + 5000) / 10000);
      const offset = Number(context.getMessage().offset);
      return {
        schema_version: 1,
        ok: {
          number: (offset + 1) * 1000 + context.getPartition(),
          customer,
          lines,
          subtotal_cents: subtotal,
          tax_cents: tax,
          total_cents: subtotal + tax,
        },
      };
    }

    @MessagePattern(`${prefix}calculate-score`)
    score(@Payload() request: any) {
      const customer = customerOf(request);
      let units = 0;
      for (let i = 0; i < customer.length; i++) {
        units += customer.charCodeAt(i);
      }
      return {
        schema_version: 1,
        ok: {
          customer,
          score: 100 + (units % 9900),
          explanation: `NestJS responder: 100 + (sum of UTF-16 code units ${units}) mod 9900`,
        },
      };
    }
  }

  @Module({ controllers: [ContractHandlers] })
  class ResponderModule {}

  return ResponderModule;
}

async function runResponder(args: Args): Promise<void> {
  const brokers = required(args, 'brokers');
  const prefix = args.get('prefix') ?? '';
  const group = args.get('group') ?? `${prefix}nest-responder`;
  const app = await NestFactory.createMicroservice<MicroserviceOptions>(responderModule(prefix), {
    transport: Transport.KAFKA,
    options: {
      client: kafkaClientOptions(brokers, group),
      // NestJS appends "-server" to this group id.
      consumer: { groupId: group },
      // Requests sent before the group was joined are answered too.
      subscribe: { fromBeginning: true },
      producer: { createPartitioner: Partitioners.DefaultPartitioner },
    },
    logger: new StderrLogger(),
  });
  await app.listen();
  console.log(JSON.stringify({ ready: true }));
  const stop = async () => {
    await app.close();
    process.exit(0);
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

async function main() {
  Logger.overrideLogger(new StderrLogger());
  const [mode, ...rest] = process.argv.slice(2);
  const args = parseArgs(rest);
  if (mode === 'client') {
    process.exit(await runClient(args));
  } else if (mode === 'load') {
    process.exit(await runLoad(args));
  } else if (mode === 'responder') {
    await runResponder(args);
  } else {
    throw new Error('usage: main.js client|load|responder --brokers HOST:PORT ... (see the top of src/main.ts)');
  }
}

main().catch((error) => {
  process.stderr.write(`${error?.stack ?? error}\n`);
  process.exit(2);
});
