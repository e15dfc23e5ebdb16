#!/usr/bin/env node
// The dashboard in a real browser: headless Chromium (Debian's /usr/bin/chromium, or
// $CHROMIUM_PATH) driven by playwright-core, against a running dashboard with both workers.
//
//   node e2e.mjs <base-url> <screenshot-dir> [<dead-letter-source>]
//
// Run by dashboard/tests/browser.rs, which starts the whole system in-process on the test broker.
// Checks, each wait an explicit condition with a timeout (no fixed sleeps):
//   1. desktop: the invoice form, filled by label and submitted with Enter, lands on the request
//      page, which turns "completed" with the reply without the script reloading it (the page
//      reloads itself on the live update, or was served completed);
//   2. a score submitted from a second page appears in the first page's table and turns
//      "completed" live, the first page never reloaded;
//   3. without JavaScript: the form posts and redirects; reloading shows the reply; so does `/`;
//   4. a bad quantity: the error next to the field, aria-invalid, a summary link that focuses it;
//   5. the kind filter shows only its kind, and live updates respect it;
//   6. a phone viewport: no horizontal scrolling of the home page or a request page, the Kafka
//      header names still shown, the forms usable by touch;
//   7. screenshots: desktop home, a request page, an error page, the phone view, into
//      <screenshot-dir>; with UPDATE_README_SCREENSHOT=1 the desktop home also goes to
//      dashboard/docs/screenshot.png;
//   8. throughout: every request any page makes goes to 127.0.0.1, no uncaught script error;
//   9. the dead-letter page, reached by its link in the header, lists the request browser.rs
//      made the invoice worker dead-letter (at <dead-letter-source>) with the parser's reason,
//      where the copy sits and the payload sent, on a desktop and on a phone without horizontal
//      scrolling (of the page or of a table inside it);
//  10. the request page's journey, on a desktop and on a phone: every hop in order at the
//      positions and key the page's Request and Reply cards show, times that only grow, ending at
//      the round trip it shows; the worker that answered; the invoice number explained from the
//      request's partition and offset; the Kafka fields labelled; a duplicate reply (written by
//      browser.rs on request) listed where it sits;
//  11. the system page: both worker groups stable with the worker that answered as their member
//      holding every partition; every topic's end offsets equal to what was written to it;
//      committed offsets equal to the requests this script sent; then, with the score worker
//      stopped (by browser.rs on request), its group empty, the banner no longer green and saying
//      why, and a new score request pending "because no consumer in group ..." on its page and on
//      a home page watching live; that request on the charts (waiting now: 1) and on the system
//      page (lag 1); then, with a consumer that answers nothing in the score group (browser.rs),
//      the watching page drops the reason without a reload while the request still waits.
// What a browser cannot do (write a duplicate reply, stop a worker) it asks of browser.rs: a
// `#control ...` line on stdout, answered with a line on stdin.
//  12. the charts page, reached by its link in the header: its figures (data attributes, the text
//      and the bars) are what this script sent and what the API says the round trips were; with
//      JavaScript it refreshes itself in place, without it the page reloads itself; on a phone
//      without horizontal scrolling; screenshots desktop-charts.png and phone-charts.png (with
//      UPDATE_README_SCREENSHOT=1 the desktop one also goes to dashboard/docs/charts.png).
// Exits 0 when all pass, 1 with the reason (and failure-*.png screenshots) when one fails.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { copyFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const [base, shotDir, deadLetterSource] = process.argv.slice(2);
if (!base || !shotDir) {
  console.error('usage: node e2e.mjs <base-url> <screenshot-dir>');
  process.exit(2);
}
const BASE = new URL(base).origin;
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const README_SCREENSHOT = fileURLToPath(new URL('../../docs/screenshot.png', import.meta.url));
const README_DOCS = path.dirname(README_SCREENSHOT);
const README_CHARTS_SCREENSHOT = fileURLToPath(new URL('../../docs/charts.png', import.meta.url));
const INSTALL = fileURLToPath(new URL('./install', import.meta.url));

// Default for every action and wait.
const STEP_TIMEOUT = 15_000;
// A reply over Kafka; the first one waits for the workers to join their groups. The dashboard
// times a request out after 30 s.
const REPLY_TIMEOUT = 40_000;
// The whole run; browser.rs gives it a little longer before it stops the script.
const OVERALL_TIMEOUT = 200_000;

const DESKTOP = { viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1 };
const PHONE = {
  viewport: { width: 390, height: 844 },
  deviceScaleFactor: 2,
  isMobile: true,
  hasTouch: true,
};
const UUID = /\/requests\/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/;

if (!existsSync(CHROMIUM)) {
  console.error(`${CHROMIUM} is missing: run ${INSTALL}`);
  process.exit(1);
}

// ---------------------------------------------------------------------------------------------
// Watching every page: requests off the machine, script errors.

const problems = [];
// Error answers that a check provokes on purpose: `METHOD /path STATUS`.
const expectedErrors = new Set();
const contexts = [];

async function newContext(options) {
  const context = await browser.newContext({ baseURL: BASE, ...options });
  context.setDefaultTimeout(STEP_TIMEOUT);
  context.setDefaultNavigationTimeout(STEP_TIMEOUT);
  context.on('request', (request) => {
    const url = new URL(request.url());
    if (url.protocol === 'data:' || url.protocol === 'blob:') return;
    if (url.hostname !== '127.0.0.1') problems.push(`request to a non-loopback host: ${request.url()}`);
  });
  context.on('weberror', (error) => problems.push(`uncaught error in a page: ${error.error()}`));
  context.on('console', (message) => {
    if (message.type() !== 'error') return;
    // A failed load is logged as well; its response is judged below.
    if (!message.text().startsWith('Failed to load resource')) {
      problems.push(`console error on ${message.page()?.url()}: ${message.text()}`);
    }
  });
  context.on('response', (response) => {
    if (response.status() < 400) return;
    const what = `${response.request().method()} ${new URL(response.url()).pathname}`;
    if (!expectedErrors.has(`${what} ${response.status()}`)) problems.push(`${what} answered ${response.status()}`);
  });
  contexts.push(context);
  return context;
}

// Counts the main-frame navigations of a page (loads and reloads, its own or ours).
function countNavigations(page) {
  const counter = { loads: 0 };
  page.on('framenavigated', (frame) => {
    if (frame === page.mainFrame()) counter.loads += 1;
  });
  return counter;
}

// ---------------------------------------------------------------------------------------------
// Asking browser.rs: one `#control` line out, one answer line in.

const answerLines = [];
let answerWaiter = null;
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  if (answerWaiter) {
    const resolve = answerWaiter;
    answerWaiter = null;
    resolve(line);
  } else {
    answerLines.push(line);
  }
});

async function control(request) {
  console.log(`#control ${request}`);
  if (answerLines.length) return answerLines.shift();
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`browser.rs did not answer "${request}"`)), 60_000);
  });
  try {
    return await Promise.race([new Promise((resolve) => { answerWaiter = resolve; }), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

// What this script has sent through the dashboard, for the pages that count requests.
const sent = { invoice: 0, score: 0 };

// ---------------------------------------------------------------------------------------------
// Helpers.

function requestIdOf(page) {
  const match = UUID.exec(new URL(page.url()).pathname);
  assert.ok(match, `expected a request page, got ${page.url()}`);
  return match[1];
}

// What the score calculator answers for a customer: 100 + FNV-1a-64(normalized name) mod 9900.
function expectedScore(customer) {
  const normalized = customer.trim().split(/\s+/).join(' ').toLowerCase();
  let hash = 0xcbf29ce484222325n;
  for (const byte of new TextEncoder().encode(normalized)) {
    hash = ((hash ^ BigInt(byte)) * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return 100 + Number(hash % 9900n);
}

// Opens `/` and waits until its live-update stream is open, so no update can be missed.
async function openLiveHome(page, url = '/') {
  const events = page.waitForResponse((response) => new URL(response.url()).pathname === '/events');
  await page.goto(url);
  const response = await events;
  assert.equal(response.status(), 200, '/events answered');
}

// The request's state from the JSON API, held up to `waitMs` for the reply.
async function apiState(context, id, waitMs = 0) {
  const response = await context.request.get(`/api/requests/${id}?wait_ms=${waitMs}`, {
    timeout: waitMs + STEP_TIMEOUT,
  });
  assert.equal(response.status(), 200, `GET /api/requests/${id}`);
  return response.json();
}

// Waits for a request page to show "completed"; says so precisely when the reply did arrive but
// the page never learnt of it.
async function waitForCompletedDetail(page, context) {
  const id = requestIdOf(page);
  try {
    await page.locator('#request-detail[data-status="completed"] .badge.completed').waitFor({ timeout: REPLY_TIMEOUT });
  } catch (error) {
    const state = await apiState(context, id).catch((e) => ({ status: `unknown (${e})` }));
    throw new Error(
      `request page ${id} did not turn completed within ${REPLY_TIMEOUT} ms; the API says ` +
        `"${state.status}"` +
        (state.status === 'completed'
          ? ` (round trip ${state.round_trip_ms?.toFixed(1)} ms): the reply arrived, but the page missed its live update`
          : ''),
      { cause: error },
    );
  }
  return id;
}

// The document fits the screen's width. On a phone the browser widens its layout viewport
// (zooming out) to fit content that overflows, so the check is against the screen's width.
async function assertNoHorizontalOverflow(page, what) {
  const screen = page.viewportSize().width;
  const { scrollWidth, innerWidth, wideTables } = await page.evaluate(() => ({
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
    // A table may also scroll inside its own box, which the document's width does not show.
    wideTables: [...document.querySelectorAll('.table-wrap')]
      .filter((wrap) => wrap.scrollWidth > wrap.clientWidth)
      .map((wrap) => `${wrap.firstElementChild?.className}: ${wrap.scrollWidth}px in ${wrap.clientWidth}px`),
  }));
  assert.ok(
    scrollWidth <= innerWidth && innerWidth <= screen,
    `${what}: the document is ${scrollWidth}px wide, the layout viewport ${innerWidth}px, the screen ${screen}px`,
  );
  assert.deepEqual(wideTables, [], `${what}: tables that scroll sideways`);
}

// Where a request page's Request or Reply card says its message is: `topic/partition/offset`.
async function positionOf(page, card) {
  const meta = page.locator(`${card} dl.kafka-meta`);
  const first = (selector) => meta.locator(selector).first().evaluate((element) => element.firstChild.textContent.trim());
  return `${await first('dd code')}/${await first('dd.partition')}/${await first('dd.offset')}`;
}

// A completed request page's journey: every hop in order, at the positions the page's Request and
// Reply cards show, the key the request was sent with, times that only grow (each party's clock is
// this machine's) and end at the round trip the page shows. Returns the worker hop's text.
async function checkJourney(page, key) {
  const hops = page.locator('#journey table.journey tbody tr');
  assert.deepEqual(await hops.evaluateAll((trs) => trs.map((tr) => tr.dataset.hop)), [
    'sent by the dashboard',
    'appended by the broker',
    'picked up by a worker',
    'handled',
    'reply appended',
    'reply received by the dashboard',
  ]);
  const hop = (name) => page.locator(`#journey tr[data-hop="${name}"] small`).textContent();
  const request = await positionOf(page, '#request-message');
  assert.ok((await hop('appended by the broker')).includes(`stored at ${request} (topic/partition/offset), key ${key};`), `the broker hop names ${request} and key ${key}: ${await hop('appended by the broker')}`);
  assert.match(await hop('appended by the broker'), /LogAppendTime, set by the broker/);
  const reply = await positionOf(page, '#reply-message');
  assert.ok((await hop('reply appended')).includes(`stored at ${reply} (topic/partition/offset)`), `the reply hop names ${reply}`);
  const since = (await hops.locator('.since').allTextContents()).map((text) => Number.parseFloat(text));
  // The broker and the worker stamp whole milliseconds, on their own clocks (the broker's is the
  // JVM's), against the dashboard's microseconds: a hop may read a little before the one before
  // it (1.5 ms was seen here, a reply appended "after" it was received), never by more than that
  // on one machine.
  const CLOCKS_DISAGREE_MS = 3;
  for (let index = 1; index < since.length; index += 1) {
    assert.ok(since[index] >= since[index - 1] - CLOCKS_DISAGREE_MS, `hop ${index} at ${since[index]} ms comes after hop ${index - 1} at ${since[index - 1]} ms (${since})`);
  }
  const roundTrip = (await page.locator('#round-trip').textContent()).trim();
  assert.equal((await hops.last().locator('.since').textContent()).trim(), roundTrip, 'the last hop is the round trip');
  return (await hop('picked up by a worker')).trim();
}

// Where the charts page's charts are, all measured at once.
function chartBoxes(page) {
  return page.locator('section#charts svg').evaluateAll((svgs) =>
    svgs.map((svg) => {
      const { x, width, height } = svg.getBoundingClientRect();
      return { x, width, height };
    }),
  );
}

async function shot(page, name, options = {}) {
  const file = path.join(shotDir, name);
  await page.screenshot({ path: file, fullPage: true, animations: 'disabled', caret: 'hide', ...options });
  return file;
}

// A picture of one part of a page for the README: to <screenshot-dir>, and with
// UPDATE_README_SCREENSHOT=1 to dashboard/docs/ as well.
async function readmeShot(locator, name) {
  const file = path.join(shotDir, name);
  await locator.screenshot({ path: file, animations: 'disabled', caret: 'hide' });
  if (process.env.UPDATE_README_SCREENSHOT === '1') {
    await copyFile(file, path.join(README_DOCS, name));
    console.log(`# wrote ${path.join(README_DOCS, name)}`);
  }
}

let stepNumber = 0;
let stepName = '';
async function step(name, body) {
  stepNumber += 1;
  stepName = name;
  const started = Date.now();
  await body();
  console.log(`ok ${stepNumber} - ${name} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
}

// ---------------------------------------------------------------------------------------------
// The run.

await mkdir(shotDir, { recursive: true });
const overall = setTimeout(() => {
  console.error(`not ok - the whole run took longer than ${OVERALL_TIMEOUT} ms (in step ${stepNumber}: ${stepName})`);
  process.exit(1);
}, OVERALL_TIMEOUT);

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
console.log(`# ${CHROMIUM} ${browser.version()}, dashboard at ${BASE}`);

let failed = false;
try {
  const desktop = await newContext(DESKTOP);
  let invoiceId;
  // Who answered the first invoice, from its journey.
  const invoiceWorker = {};

  await step('desktop: the invoice form, filled by label and sent with Enter, shows its reply without a reload', async () => {
    const page = await desktop.newPage();
    await page.goto('/');
    const form = page.getByRole('form', { name: 'Generate an invoice' });
    const customer = form.getByLabel('Customer', { exact: true });
    assert.equal(await customer.getAttribute('id'), 'invoice-customer');
    await customer.fill('ACME Corp');
    const line = form.getByRole('group', { name: 'Line 1', exact: true });
    const fields = {
      Description: ['line-1-description', 'Widget'],
      Quantity: ['line-1-quantity', '3'],
      'Unit price': ['line-1-unit_price', '12.50'],
    };
    for (const [label, [id, value]] of Object.entries(fields)) {
      const input = line.getByLabel(label, { exact: true });
      assert.equal(await input.getAttribute('id'), id, `the label "${label}" of line 1`);
      await input.fill(value);
    }
    const navigations = countNavigations(page);
    const detail = page.waitForResponse((response) => UUID.test(new URL(response.url()).pathname));
    await line.getByLabel('Unit price', { exact: true }).press('Enter');
    await page.waitForURL(UUID);
    sent.invoice += 1;
    // Informational. The body is gone once the page has reloaded itself, which it does only
    // when the status it was served with has changed: it was served pending.
    const firstStatus = await (await detail)
      .text()
      .then((html) => /id="request-detail"[^>]*data-status="(\w+)"/.exec(html)?.[1])
      .catch(() => 'pending');
    const loadsBefore = navigations.loads;
    // Informational too: a marker that survives shows the page was not reloaded after this.
    await page
      .evaluate(() => {
        window.__marker = 'set by the test';
      })
      .catch(() => {}); // the page was reloading itself just then
    invoiceId = await waitForCompletedDetail(page, desktop);
    assert.equal((await page.locator('#request-detail .badge').first().textContent()).trim(), 'completed');
    const outcome = (await page.locator('#request-detail .outcome').textContent()).trim();
    assert.match(outcome, /^Invoice #\d+, total 41\.25$/, 'the reply summary (3 x 12.50 + 10 % tax)');
    assert.match(await page.locator('#reply-body').textContent(), /"total_cents":\s*4125/);
    // Both the request and the reply carry the correlation ID header, shown in their tables.
    const headerRows = page.locator('table.headers tr', { hasText: 'kafka_correlationId' });
    assert.equal(await headerRows.count(), 2, 'kafka_correlationId rows (request and reply)');
    for (const row of await headerRows.all()) assert.ok((await row.textContent()).includes(invoiceId));
    const marker = await page.evaluate(() => window.__marker);
    console.log(
      `# the request page was served ${firstStatus}; ` +
        `${navigations.loads === loadsBefore ? 'it did not reload' : `it reloaded itself ${navigations.loads - loadsBefore}x (live update)`}; ` +
        `a marker set after it loaded is ${marker ? 'still there' : 'gone (reloaded since)'}`,
    );
    // The journey, hop by hop, ends at the round trip the page shows.
    const worker = /^(\S+) in consumer group (\S+) on host \S+/.exec(await checkJourney(page, 'ACME Corp'));
    assert.ok(worker, 'the worker hop names the client id, group and host');
    [invoiceWorker.clientId, invoiceWorker.group] = [worker[1], worker[2]];
    // The invoice number comes from where the request sits in Kafka.
    const partition = Number(await page.locator('#request-message dd.partition').evaluate((dd) => dd.firstChild.textContent));
    const offset = Number(await page.locator('#request-message dd.offset').evaluate((dd) => dd.firstChild.textContent));
    const number = (offset + 1) * 1000 + partition;
    assert.match(outcome, new RegExp(`^Invoice #${number},`), `invoice number from partition ${partition}, offset ${offset}`);
    assert.match(await page.locator('#invoice-number-note').textContent(), new RegExp(`#${number}`));
    // A learner can open what a correlation ID is, and each known header says what it is for.
    const explain = page.locator('#request-detail details.explain').first();
    await explain.locator('summary').click();
    assert.match(await explain.textContent(), /copies it onto its reply/);
    assert.match(
      await page.locator('#request-message table.headers tr', { hasText: 'traceparent' }).locator('.header-explanation').textContent(),
      /trace/,
    );
    assert.match(
      await page.locator('#request-message table.headers tr', { hasText: 'kafka_replyTopic' }).locator('.header-explanation').textContent(),
      /reply/i,
    );
    // The position and key of the request, each labelled.
    const labels = await page.locator('#request-message dl.kafka-meta dt').allTextContents();
    assert.deepEqual(labels, ['Topic', 'Partition', 'Offset', 'Key', 'Timestamp']);
    assert.equal((await page.locator('#request-message dl.kafka-meta dd code').nth(1).textContent()).trim(), 'ACME Corp', 'the key is the customer');
    assert.match(await page.locator('#request-message dl.kafka-meta dd').last().textContent(), /LogAppendTime: set by the broker/);
    await shot(page, 'desktop-request.png');
    await readmeShot(page.locator('#journey'), 'journey.png');
    await page.close();
  });

  await step('a duplicate reply (a redelivery answered again) is listed where it sits in the log', async () => {
    const position = await control(`duplicate-reply ${invoiceId}`);
    assert.match(position, /\/\d+\/\d+$/, `browser.rs answered ${position}`);
    const page = await desktop.newPage();
    await page.goto(`/requests/${invoiceId}`);
    const listed = page.locator('#duplicates li', { hasText: position });
    const deadline = Date.now() + REPLY_TIMEOUT;
    while ((await listed.count()) === 0) {
      assert.ok(Date.now() < deadline, `the duplicate at ${position} is not listed`);
      await page.reload();
    }
    assert.match(await page.locator('#request-detail .badge.dup').textContent(), /^1 duplicate/);
    assert.equal((await page.locator('#request-detail .outcome').textContent()).trim().startsWith('Invoice #'), true, 'the first reply stays the answer');
    await page.close();
  });

  await step('desktop: a score sent from a second page appears in the first page and completes live', async () => {
    const watcher = await desktop.newPage();
    await openLiveHome(watcher);
    const navigations = countNavigations(watcher);
    await watcher.evaluate(() => {
      window.__marker = 'never reloaded';
    });

    const sender = await desktop.newPage();
    await sender.goto('/');
    const form = sender.getByRole('form', { name: 'Calculate a score' });
    const customer = form.getByLabel('Customer', { exact: true });
    assert.equal(await customer.getAttribute('id'), 'score-customer');
    await customer.fill('Globex');
    await form.getByRole('button', { name: 'Calculate score' }).click();
    await sender.waitForURL(UUID);
    sent.score += 1;
    const id = requestIdOf(sender);

    const row = watcher.locator(`tr#req-${id}`);
    await row.waitFor({ timeout: STEP_TIMEOUT });
    await watcher.locator(`tr#req-${id}[data-status="completed"] .badge.completed`).waitFor({ timeout: REPLY_TIMEOUT });
    assert.equal(await row.getAttribute('data-kind'), 'score');
    assert.equal((await row.locator('.outcome').textContent()).trim(), `Score ${expectedScore('Globex')}`);
    assert.equal(await watcher.evaluate(() => window.__marker), 'never reloaded', 'the watching page was reloaded');
    assert.equal(navigations.loads, 0, 'the watching page navigated');
    // The invoice of step 1 is in the table too, as it was rendered.
    await watcher.locator(`tr#req-${invoiceId}[data-status="completed"]`).waitFor();
    await sender.close();
    await watcher.close();
  });

  await step('no JavaScript: the form posts and redirects, a reload shows the reply, and so does /', async () => {
    const noScript = await newContext({ ...DESKTOP, javaScriptEnabled: false });
    let eventStreams = 0;
    noScript.on('request', (request) => {
      if (new URL(request.url()).pathname === '/events') eventStreams += 1;
    });
    const page = await noScript.newPage();
    await page.goto('/');
    const form = page.locator('#invoice-form');
    await form.getByLabel('Customer', { exact: true }).fill('Initech');
    const line = form.getByRole('group', { name: 'Line 1', exact: true });
    await line.getByLabel('Description', { exact: true }).fill('TPS report covers');
    await line.getByLabel('Quantity', { exact: true }).fill('2');
    await line.getByLabel('Unit price', { exact: true }).fill('4');
    await form.getByRole('button', { name: 'Generate invoice' }).click();
    await page.waitForURL(UUID);
    sent.invoice += 1;
    const id = requestIdOf(page);
    // Reload (the no-JavaScript way) until the page shows the reply. Between reloads the API's
    // long poll holds until the reply is there, so this is no busy loop.
    const deadline = Date.now() + REPLY_TIMEOUT;
    let reloads = 0;
    while ((await page.locator('#request-detail').getAttribute('data-status')) === 'pending') {
      assert.ok(Date.now() < deadline, `request ${id} still pending after ${reloads} reloads`);
      await apiState(noScript, id, Math.max(0, Math.min(5_000, deadline - Date.now())));
      await page.reload();
      reloads += 1;
    }
    assert.equal(await page.locator('#request-detail').getAttribute('data-status'), 'completed');
    assert.match((await page.locator('#request-detail .outcome').textContent()).trim(), /^Invoice #\d+, total 8\.80$/);
    await page.goto('/');
    const row = page.locator(`tr#req-${id}`);
    assert.equal(await row.getAttribute('data-status'), 'completed');
    assert.match(await row.locator('.outcome').textContent(), /Invoice #\d+, total 8\.80/);
    assert.equal(eventStreams, 0, 'no script ran, so nothing opened /events');
    console.log(`# without JavaScript: ${reloads} reload(s) until completed`);
    await noScript.close();
  });

  await step('a bad quantity and a price too high, found in one pass: each error next to its field, aria-invalid, summary links that focus them', async () => {
    const page = await desktop.newPage();
    await page.goto('/');
    const form = page.locator('#invoice-form');
    await form.getByLabel('Customer', { exact: true }).fill('Bad Input Ltd');
    const line = form.getByRole('group', { name: 'Line 1', exact: true });
    await line.getByLabel('Description', { exact: true }).fill('Gadget');
    await line.getByLabel('Quantity', { exact: true }).fill('lots');
    await line.getByLabel('Unit price', { exact: true }).fill('1.00');
    // A format error in one row does not hide a range error in the next.
    const line2 = form.getByRole('group', { name: 'Line 2', exact: true });
    await line2.getByLabel('Description', { exact: true }).fill('Gold bar');
    await line2.getByLabel('Quantity', { exact: true }).fill('1');
    await line2.getByLabel('Unit price', { exact: true }).fill('999999999999');
    expectedErrors.add('POST /invoices 400');
    const answer = page.waitForResponse((response) => response.request().method() === 'POST');
    await line.getByLabel('Quantity', { exact: true }).press('Enter');
    assert.equal((await answer).status(), 400, 'POST /invoices with a bad quantity');
    expectedErrors.delete('POST /invoices 400');
    await page.locator('#line-1-quantity-error').waitFor();
    assert.equal((await page.locator('#line-1-quantity-error').textContent()).trim(), 'must be a whole number');
    const quantity = page.locator('#line-1-quantity');
    assert.equal(await quantity.getAttribute('aria-invalid'), 'true');
    assert.equal(await quantity.getAttribute('aria-describedby'), 'line-1-quantity-error');
    assert.equal(await quantity.inputValue(), 'lots', 'what was typed is kept');
    assert.equal(await page.locator('#invoice-customer').inputValue(), 'Bad Input Ltd');
    // The message sits next to its field: right below it, in the same field box.
    const [inputBox, errorBox] = [await quantity.boundingBox(), await page.locator('#line-1-quantity-error').boundingBox()];
    assert.ok(errorBox.y >= inputBox.y + inputBox.height - 1 && errorBox.y - (inputBox.y + inputBox.height) < 40, 'the error is right below the field');
    const summary = page.getByRole('alert', { name: 'Problems with the invoice' });
    const link = summary.locator('a[href="#line-1-quantity"]');
    assert.match(await link.textContent(), /line 1 quantity: must be a whole number/);
    assert.deepEqual(
      (await summary.locator('a').allTextContents()).map((text) => text.trim()),
      ['line 1 quantity: must be a whole number', 'line 2 unit price: must be at most 10000000000'],
      'every problem at once, in the order of the fields');
    assert.equal((await page.locator('#line-2-unit_price-error').textContent()).trim(), 'must be at most 10000000000');
    assert.equal(await page.locator('#line-2-unit_price').inputValue(), '999999999999', 'what was typed is kept');
    await shot(page, 'desktop-form-error.png', { fullPage: false });
    // Following the link with the keyboard puts the focus on the field.
    await link.focus();
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => document.activeElement?.id === 'line-1-quantity', null, { timeout: 5_000 }).catch(async () => {
      const active = await page.evaluate(() => `${document.activeElement?.tagName}#${document.activeElement?.id}`);
      throw new Error(`following the summary link left the focus on ${active}, not on #line-1-quantity`);
    });
    // ... where it is visible.
    const outline = await quantity.evaluate((input) => getComputedStyle(input).outlineStyle);
    assert.notEqual(outline, 'none', 'the focused field shows a focus outline');
    await page.close();
  });

  await step('filters: /?kind=score shows only scores, and live updates keep to the filter', async () => {
    const page = await desktop.newPage();
    await page.goto('/');
    await page.getByRole('form', { name: 'Filter the requests' }).getByLabel('Kind').selectOption('score');
    const events = page.waitForResponse((response) => new URL(response.url()).pathname === '/events');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.waitForURL((url) => url.searchParams.get('kind') === 'score');
    await events;
    const rows = page.locator('#requests tbody tr');
    assert.ok((await rows.count()) >= 1, 'at least the score of step 2');
    for (const kind of await rows.evaluateAll((trs) => trs.map((tr) => tr.dataset.kind))) assert.equal(kind, 'score');
    await page.getByRole('link', { name: 'Show all' }).waitFor();
    // An invoice sent now stays out of this table; a score sent after it comes in.
    const post = async (apiPath, data) => {
      const response = await desktop.request.post(apiPath, { data });
      assert.equal(response.status(), 202, `POST ${apiPath}`);
      sent[apiPath === '/api/invoices' ? 'invoice' : 'score'] += 1;
      return (await response.json()).correlation_id;
    };
    const invoice = await post('/api/invoices', {
      customer: 'Stark Industries',
      lines: [{ description: 'Arc reactor', quantity: 1, unit_price_cents: 99900 }],
    });
    const score = await post('/api/scores', { customer: 'Umbrella Corp' });
    await page.locator(`tr#req-${score}[data-status="completed"]`).waitFor({ timeout: REPLY_TIMEOUT });
    assert.equal((await apiState(desktop, invoice, REPLY_TIMEOUT)).status, 'completed');
    assert.equal(await page.locator(`tr#req-${invoice}`).count(), 0, 'the invoice row stayed out of the score filter');
    for (const kind of await rows.evaluateAll((trs) => trs.map((tr) => tr.dataset.kind))) assert.equal(kind, 'score');
    // The same as a plain link, freshly rendered.
    await page.goto('/?kind=score');
    assert.equal(await page.getByLabel('Kind').inputValue(), 'score', 'the select shows the filter');
    const kinds = await rows.evaluateAll((trs) => trs.map((tr) => tr.dataset.kind));
    assert.ok(kinds.length >= 2 && kinds.every((kind) => kind === 'score'), `/?kind=score lists ${kinds}`);
    await page.close();
  });

  await step('phone (390 x 844): no horizontal scrolling, every form problem at once, and the score form works by touch', async () => {
    const phone = await newContext(PHONE);
    const page = await phone.newPage();
    await page.goto('/');
    await assertNoHorizontalOverflow(page, 'the home page on a phone');
    const width = page.viewportSize().width;
    const controls = page.locator('form input:not([type="hidden"]), form button, form select');
    for (const control of await controls.all()) {
      const box = await control.boundingBox();
      const name = await control.evaluate((element) => `${element.form.id || element.form.className} ${element.id || element.textContent.trim()}`);
      assert.ok(box && box.x >= 0 && box.x + box.width <= width, `${name} lies within the ${width}px screen`);
      assert.ok(box.height >= 24, `${name} is at least 24px tall (is ${box.height})`);
    }
    await shot(page, 'phone-home.png');
    // Every problem of a form at once, on a phone too.
    const invoice = page.locator('#invoice-form');
    await invoice.getByLabel('Customer', { exact: true }).tap();
    await page.keyboard.type('Small Screen Ltd');
    const phoneLine = invoice.getByRole('group', { name: 'Line 1', exact: true });
    await phoneLine.getByLabel('Description', { exact: true }).fill('Widget');
    await phoneLine.getByLabel('Quantity', { exact: true }).fill('lots');
    await phoneLine.getByLabel('Unit price', { exact: true }).fill('999999999999');
    expectedErrors.add('POST /invoices 400');
    const refused = page.waitForResponse((response) => response.request().method() === 'POST');
    await invoice.getByRole('button', { name: 'Generate invoice' }).tap();
    assert.equal((await refused).status(), 400, 'POST /invoices with two bad fields');
    expectedErrors.delete('POST /invoices 400');
    const problems = page.getByRole('alert', { name: 'Problems with the invoice' });
    await problems.waitFor();
    assert.deepEqual(
      (await problems.locator('a').allTextContents()).map((text) => text.trim()),
      ['line 1 quantity: must be a whole number', 'line 1 unit price: must be at most 10000000000'],
      'both problems of the row at once, on a phone');
    assert.ok(await page.locator('#line-1-unit_price-error').isVisible(), 'the second error shows next to its field');
    await assertNoHorizontalOverflow(page, 'a form with errors on a phone');
    await shot(page, 'phone-form-error.png');
    await page.goto('/');
    const form = page.getByRole('form', { name: 'Calculate a score' });
    await form.getByLabel('Customer', { exact: true }).tap();
    await page.keyboard.type('Hooli');
    await form.getByRole('button', { name: 'Calculate score' }).tap();
    await page.waitForURL(UUID);
    sent.score += 1;
    await waitForCompletedDetail(page, phone);
    assert.equal((await page.locator('#request-detail .outcome').textContent()).trim(), `Score ${expectedScore('Hooli')}`);
    // The journey on a small screen: every hop, its positions and times, readable without scrolling.
    const scoreWorker = await checkJourney(page, 'Hooli');
    assert.match(scoreWorker, /^\S+ in consumer group \S+ on host \S+/, 'the worker hop names the score worker');
    assert.ok(await page.locator('#journey table.journey').isVisible());
    await assertNoHorizontalOverflow(page, 'a request page on a phone');
    // The Kafka headers of request and reply keep their names on a small screen.
    const names = page.locator('table.headers tr', { hasText: 'kafka_correlationId' }).locator('td').first();
    assert.equal(await names.count(), 1);
    assert.ok(await names.isVisible(), 'the header names (the first column of the headers tables) are hidden on a phone');
    await shot(page, 'phone-request.png');
    await phone.close();
  });

  await step('dead letters: the header link leads to the page, which lists the bad request with its reason and source, on a phone too', async () => {
    assert.ok(deadLetterSource, 'browser.rs passes the dead letter\'s source position');
    const page = await desktop.newPage();
    await page.goto('/');
    await page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name: 'Dead letters' }).click();
    await page.waitForURL(/\/dead-letters$/);
    // The worker dead-letters it within moments; reload until the page lists it.
    const row = page.locator('section[data-kind="invoice"] table.dead-letters tbody tr', { hasText: deadLetterSource });
    const deadline = Date.now() + REPLY_TIMEOUT;
    while ((await row.count()) === 0) {
      assert.ok(Date.now() < deadline, `no dead letter from ${deadLetterSource} on the page`);
      await page.reload();
    }
    // The worker's own words for why (its parser's message), where the copy sits, what it held.
    assert.match(await row.locator('td.reason').textContent(), /payload is not valid JSON: /, 'the reason is shown');
    assert.match(await row.textContent(), /browser-dead-letter/, 'the correlation ID is shown');
    const [topic] = deadLetterSource.split('/');
    assert.match((await row.locator('td').nth(3).textContent()).trim(), new RegExp(`^${topic}\\.dlq/\\d+/\\d+$`), 'where the dead letter sits');
    assert.equal((await row.locator('td').nth(4).textContent()).trim(), '{not json', 'the payload browser.rs sent');
    assert.equal(await page.locator('section[data-kind="invoice"] table.dead-letters tbody tr').count(), 1, 'one invoice request was dead-lettered');
    assert.match(await page.locator('section[data-kind="score"]').textContent(), /No dead letters: every score request so far could be handled\./);
    await shot(page, 'desktop-dead-letters.png', { fullPage: false });
    await page.close();
    const phone = await newContext(PHONE);
    const small = await phone.newPage();
    await small.goto('/dead-letters');
    await small.locator('table.dead-letters tbody tr', { hasText: deadLetterSource }).waitFor();
    await assertNoHorizontalOverflow(small, 'the dead-letter page on a phone');
    await shot(small, 'phone-dead-letters.png');
    await phone.close();
  });

  await step('charts: the header link leads to them; their figures are what this script did; live with JavaScript, reloading itself without, and on a phone', async () => {
    // What the steps above sent through the dashboard (counted in `sent` as they did), each
    // answered. The bad form was refused before anything was sent, and browser.rs's dead letter
    // went to Kafka around the dashboard. The one duplicate is the reply browser.rs wrote.
    assert.deepEqual(sent, { invoice: 3, score: 3 }, 'what the steps above sent');
    const expected = {
      windowSeconds: '600',
      sentInvoice: String(sent.invoice),
      sentScore: String(sent.score),
      matched: String(sent.invoice + sent.score),
      late: '0',
      duplicates: '1',
      timeouts: '0',
      pending: '0',
    };
    const checkFigures = (data, where) => {
      for (const [key, value] of Object.entries(expected)) assert.equal(data[key], value, `${key} of the charts ${where}`);
    };
    const page = await desktop.newPage();
    await page.goto('/');
    // The round trips the dashboard measured, by the API, for the percentiles.
    const ids = await page.locator('#requests tbody tr[id^="req-"]').evaluateAll((trs) => trs.map((tr) => tr.id.slice('req-'.length)));
    assert.equal(ids.length, sent.invoice + sent.score, `the home page lists the requests sent (${ids})`);
    const roundTrips = [];
    for (const id of ids) {
      const response = await desktop.request.get(`/api/requests/${id}?payloads=false`);
      assert.equal(response.status(), 200, `GET /api/requests/${id}`);
      const state = await response.json();
      assert.equal(state.status, 'completed', `request ${id}`);
      roundTrips.push(state.round_trip_ms);
    }
    roundTrips.sort((a, b) => a - b);
    const nearestRank = (quantile) => roundTrips[Math.max(1, Math.ceil(quantile * roundTrips.length)) - 1];

    await page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name: 'Charts' }).click();
    await page.waitForURL(/\/charts$/);
    const navigations = countNavigations(page);
    const charts = page.locator('section#charts');
    const data = await charts.evaluate((section) => ({ ...section.dataset }));
    checkFigures(data, 'on the page');
    // The same figures written out for people, beside their charts.
    const written = charts.locator('dd[data-figure]');
    assert.equal(await written.count(), 7, 'figures written out');
    for (const figure of await written.all()) {
      const name = await figure.getAttribute('data-figure');
      const key = name.replace(/-(\w)/g, (_, letter) => letter.toUpperCase());
      assert.equal((await figure.textContent()).trim(), data[key], `the figure "${name}" as text`);
    }
    // A percentile is read off a histogram whose buckets are 2^(1/4) apart: within 9.1 %.
    for (const [key, quantile] of [['p50Ms', 0.5], ['p99Ms', 0.99]]) {
      const [shown, measured] = [Number(data[key]), nearestRank(quantile)];
      assert.ok(
        Math.abs(shown / measured - 1) <= 0.1,
        `${key}: the charts say ${shown} ms, the round trips (${roundTrips.join(', ')} ms) give ${measured} ms`,
      );
    }
    // Four charts are drawn, and the requests chart's bars add up to what was sent. Measured in one
    // go: the script swaps the block every 2 s.
    const boxes = await chartBoxes(page);
    assert.equal(boxes.length, 4, 'charts drawn');
    for (const box of boxes) assert.ok(box.width > 300 && box.height > 100, `a chart is drawn (${JSON.stringify(box)})`);
    const bars = await charts.locator('svg[aria-labelledby^="requests-"] rect title').allTextContents();
    const drawn = { invoices: 0, scores: 0 };
    for (const bar of bars) {
      const [, kind, rate] = /^(invoices|scores) ([\d.]+)\/s at \d\d:\d\d:\d\d$/.exec(bar) ?? [];
      assert.ok(kind, `a bar's tooltip: ${bar}`);
      drawn[kind] += Number(rate) * Number(data.bucketSeconds);
    }
    assert.deepEqual(drawn, { invoices: sent.invoice, scores: sent.score }, 'requests drawn as bars');

    // With JavaScript the block is fetched again and swapped in, the page itself never reloaded.
    assert.equal(await page.locator('meta[http-equiv="refresh"]').count(), 0, 'with JavaScript the page does not reload itself');
    const refreshed = page.locator('#charts-refreshed');
    await refreshed.waitFor();
    await page.waitForFunction((served) => document.querySelector('section#charts')?.dataset.generatedMs !== served, data.generatedMs);
    const note = await refreshed.textContent();
    assert.match(note, /^Live: refreshed at \d\d:\d\d:\d\d UTC/);
    await page.waitForFunction((before) => document.getElementById('charts-refreshed').textContent !== before, note);
    checkFigures(await charts.evaluate((section) => ({ ...section.dataset })), 'after a refresh');
    assert.equal(navigations.loads, 0, 'the charts page reloaded');
    const file = await shot(page, 'desktop-charts.png');
    if (process.env.UPDATE_README_SCREENSHOT === '1') {
      await mkdir(path.dirname(README_CHARTS_SCREENSHOT), { recursive: true });
      await copyFile(file, README_CHARTS_SCREENSHOT);
      console.log(`# wrote ${README_CHARTS_SCREENSHOT}`);
    }
    await page.close();

    // Without JavaScript: the same figures, and the page reloads itself.
    const noScript = await newContext({ ...DESKTOP, javaScriptEnabled: false });
    let fragments = 0;
    noScript.on('request', (request) => {
      if (new URL(request.url()).pathname === '/charts/live') fragments += 1;
    });
    const still = await noScript.newPage();
    await still.goto('/charts');
    // The refresh is due 5 s after the load.
    const reloaded = still.waitForEvent('framenavigated', { predicate: (frame) => frame === still.mainFrame(), timeout: 10_000 });
    reloaded.catch(() => {}); // judged where it is awaited
    assert.equal(await still.locator('noscript meta[http-equiv="refresh"]').getAttribute('content'), '5');
    assert.ok(await still.locator('#charts-refreshed').isHidden(), 'no note of live refreshes without JavaScript');
    const stillCharts = still.locator('section#charts');
    const served = await stillCharts.evaluate((section) => ({ ...section.dataset }));
    checkFigures(served, 'without JavaScript');
    assert.equal(await stillCharts.locator('svg').count(), 4, 'charts drawn without JavaScript');
    await reloaded;
    await still.waitForLoadState();
    assert.notEqual(await stillCharts.getAttribute('data-generated-ms'), served.generatedMs, 'the reloaded page has new figures');
    assert.equal(fragments, 0, 'no script ran, so nothing fetched /charts/live');
    await noScript.close();

    const phone = await newContext(PHONE);
    const small = await phone.newPage();
    await small.goto('/charts');
    await small.locator('#charts-refreshed').waitFor();
    checkFigures(await small.locator('section#charts').evaluate((section) => ({ ...section.dataset })), 'on a phone');
    await assertNoHorizontalOverflow(small, 'the charts page on a phone');
    const width = small.viewportSize().width;
    for (const box of await chartBoxes(small)) {
      assert.ok(box.x >= 0 && box.x + box.width <= width, `a chart lies within the ${width}px screen (${JSON.stringify(box)})`);
    }
    await shot(small, 'phone-charts.png');
    await phone.close();
  });

  await step('screenshots: the desktop home page with completed invoices and scores', async () => {
    const page = await desktop.newPage();
    await page.goto('/');
    await page.waitForFunction(() => !document.querySelector('#requests tr[data-status="pending"]'), null, { timeout: REPLY_TIMEOUT });
    const kinds = await page.locator('#requests tbody tr[data-status="completed"]').evaluateAll((trs) => trs.map((tr) => tr.dataset.kind));
    assert.ok(kinds.includes('invoice') && kinds.includes('score'), `completed rows of both kinds (${kinds})`);
    await assertNoHorizontalOverflow(page, 'the home page on a desktop');
    const file = await shot(page, 'desktop-home.png');
    if (process.env.UPDATE_README_SCREENSHOT === '1') {
      await mkdir(path.dirname(README_SCREENSHOT), { recursive: true });
      await copyFile(file, README_SCREENSHOT);
      console.log(`# wrote ${README_SCREENSHOT}`);
    }
    await page.close();
  });

  await step('system: worker groups and offsets match what was sent; a stopped worker shows as missing, and a request waiting for it says so; on a phone too', async () => {
    const page = await desktop.newPage();
    await page.goto('/');
    await page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name: 'System' }).click();
    await page.waitForURL(/\/system$/);
    const group = (kind) => page.locator(`section.worker-group[data-kind="${kind}"]`);
    const sum = async (kind, column) =>
      (await group(kind).locator(`table.offsets td.${column}`).allTextContents())
        // A partition no request went to has "nothing yet" committed.
        .map((text) => (text.trim() === 'nothing yet' ? 0 : Number(text)))
        .reduce((total, value) => total + value, 0);
    // Workers commit every second: reload until every request sent is committed (lag 0).
    const expected = { invoice: sent.invoice + 1, score: sent.score }; // + the dead-lettered request
    let deadline = Date.now() + REPLY_TIMEOUT;
    for (;;) {
      const settled = [];
      for (const kind of ['invoice', 'score']) {
        settled.push(
          (await group(kind).getAttribute('data-state')) === 'Stable' &&
            (await group(kind).getAttribute('data-members')) === '1' &&
            (await sum(kind, 'end')) === expected[kind] &&
            (await sum(kind, 'lag')) === 0,
        );
      }
      if (settled.every(Boolean)) break;
      assert.ok(Date.now() < deadline, `the groups did not settle at ${JSON.stringify(expected)} requests: ${await page.locator('main').innerText()}`);
      await page.reload();
    }
    for (const kind of ['invoice', 'score']) {
      assert.equal(await sum(kind, 'committed'), expected[kind], `${kind}: committed offsets`);
      assert.equal(await group(kind).locator('.waiting-because').count(), 0, `${kind} can answer`);
    }
    assert.equal(await group('invoice').getAttribute('data-group'), invoiceWorker.group, 'the group the journey named');
    assert.equal((await group('invoice').locator('table.members td code').first().textContent()).trim(), invoiceWorker.clientId, 'the worker the journey named');
    // Every topic's end offsets add up to what was written to it: the requests; their replies,
    // with the duplicate browser.rs wrote and the error reply to the dead-lettered request; that
    // request's dead-letter copy. Each partition has a leader, its one replica in sync.
    const topicEnd = async (suffix) =>
      (await page.locator(`table.partitions[data-topic$="${suffix}"] td.end`).allTextContents()).reduce((total, text) => total + Number(text), 0);
    const written = {
      'generate-invoice': expected.invoice,
      'invoice-generated': sent.invoice + 2,
      'generate-invoice.dlq': 1,
      'calculate-score': expected.score,
      'score-calculated': sent.score,
      'calculate-score.dlq': 0,
    };
    for (const [suffix, count] of Object.entries(written)) assert.equal(await topicEnd(suffix), count, `messages in the topic ending ${suffix}`);
    const partitions = await page.locator('table.partitions tbody tr').evaluateAll((trs) => trs.map((tr) => [...tr.cells].map((td) => td.textContent.trim())));
    assert.equal(partitions.length, 6 * 3, 'six topics of three partitions');
    for (const [partition, leader, replicas, inSync] of partitions) {
      assert.match(leader, /^\d+$/, `partition ${partition} has a leader`);
      assert.equal(inSync, replicas, `partition ${partition}: its replicas are in sync`);
    }
    // Each group's one member has every partition of its request topic, and is their consumer.
    for (const kind of ['invoice', 'score']) {
      const numbers = await group(kind).locator('table.offsets tbody tr').evaluateAll((trs) => trs.map((tr) => tr.dataset.partition));
      const assigned = (await group(kind).locator('table.members td').nth(2).textContent()).split(',').map((text) => text.trim()).sort();
      assert.deepEqual(assigned, numbers.sort(), `${kind}: the member's partitions`);
      const member = (await group(kind).locator('table.members td code').first().textContent()).trim();
      for (const consumer of await group(kind).locator('table.offsets td:last-child').allTextContents()) assert.equal(consumer.trim(), member, `${kind}: each partition's consumer`);
    }
    await page.locator('#broker-banner.ok').waitFor();
    await shot(page, 'desktop-system.png');

    assert.equal(await control('stop-worker score'), 'stopped');
    const scoreGroupName = await group('score').getAttribute('data-group');
    deadline = Date.now() + REPLY_TIMEOUT;
    while ((await group('score').getAttribute('data-members')) !== '0') {
      assert.ok(Date.now() < deadline, 'the stopped score worker is still a member of its group');
      await page.reload();
    }
    assert.match(await group('score').locator('.waiting-because').textContent(), new RegExp(`no consumer in group ${scoreGroupName}`));
    assert.equal(await group('score').locator('.no-members').count(), 1);
    assert.equal(await group('invoice').getAttribute('data-members'), '1', 'the invoice worker runs on');
    await shot(page, 'desktop-system-stopped.png');
    await readmeShot(group('score'), 'system-stopped-worker.png');

    // The banner turns from green to saying what is missing (the page updates it live).
    await page.goto('/');
    await page.waitForFunction(
      (name) => {
        const banner = document.getElementById('broker-banner');
        return !banner.classList.contains('ok') && banner.textContent.includes(`no consumer in group ${name}`);
      },
      scoreGroupName,
      { timeout: REPLY_TIMEOUT },
    );
    // A score sent now waits, and its page says why. A second page watches the home page live.
    const watcher = await desktop.newPage();
    await openLiveHome(watcher);
    const watcherLoads = countNavigations(watcher);
    const form = page.getByRole('form', { name: 'Calculate a score' });
    await form.getByLabel('Customer', { exact: true }).fill('Wayne Enterprises');
    await form.getByRole('button', { name: 'Calculate score' }).click();
    await page.waitForURL(UUID);
    sent.score += 1;
    const waitingId = requestIdOf(page);
    assert.equal(await page.locator('#request-detail').getAttribute('data-status'), 'pending');
    assert.match(await page.locator('#request-detail .waiting-because').textContent(), new RegExp(`no consumer in group ${scoreGroupName}`));
    const waitingRow = watcher.locator(`tr#req-${waitingId}[data-status="pending"]`);
    await waitingRow.waitFor();
    assert.match(await waitingRow.locator('.waiting-because').textContent(), new RegExp(`no consumer in group ${scoreGroupName}`));

    // The waiting request on the charts (one waiting now, every request sent counted) and on the
    // system page (the score group one behind: the request, not committed by anyone).
    const charts = await desktop.newPage();
    await charts.goto('/charts');
    const chartData = () => charts.locator('section#charts').evaluate((section) => ({ ...section.dataset }));
    deadline = Date.now() + REPLY_TIMEOUT;
    while ((await chartData()).pending !== '1') {
      assert.ok(Date.now() < deadline, `the charts never showed the waiting request: ${JSON.stringify(await chartData())}`);
      await charts.reload();
    }
    const waitingFigures = await chartData();
    assert.equal(waitingFigures.sentScore, String(sent.score), 'scores sent, on the charts');
    assert.equal(waitingFigures.sentInvoice, String(sent.invoice), 'invoices sent, on the charts');
    assert.equal(waitingFigures.timeouts, '0', 'nothing timed out yet');
    await charts.close();
    await page.goto('/system');
    assert.equal(await sum('score', 'end'), expected.score + 1, 'the waiting request is in the score request topic');
    assert.equal(await sum('score', 'committed'), expected.score, 'and not committed');
    assert.equal(await sum('score', 'lag'), 1, 'the score group is one request behind');

    // A consumer joins the score group and answers nothing (what a hung worker looks like): the
    // dashboard no longer knows why the request waits, and the watching page says so without a
    // reload, its row still pending.
    assert.equal(await control('join-silently score'), 'joined');
    await watcher.waitForFunction(
      (id) => {
        const row = document.getElementById(`req-${id}`);
        return row && row.dataset.status === 'pending' && !row.querySelector('.waiting-because');
      },
      waitingId,
      { timeout: REPLY_TIMEOUT },
    );
    assert.equal(watcherLoads.loads, 0, 'the watching page reloaded');
    await watcher.locator('#broker-banner.ok').waitFor({ timeout: REPLY_TIMEOUT });
    await watcher.close();
    await page.close();

    const phone = await newContext(PHONE);
    const small = await phone.newPage();
    await small.goto('/system');
    assert.equal(await small.locator('section.worker-group[data-kind="score"]').getAttribute('data-members'), '1', 'the silent member, on a phone');
    assert.equal(await small.locator('section.worker-group[data-kind="invoice"] .waiting-because').count(), 0);
    await assertNoHorizontalOverflow(small, 'the system page on a phone');
    await shot(small, 'phone-system.png');
    await phone.close();
  });

  await step('no page asked anything of a host other than 127.0.0.1, and no script failed', async () => {
    assert.deepEqual(problems, []);
  });
  console.log(`# screenshots in ${shotDir}`);
} catch (error) {
  failed = true;
  console.error(`not ok ${stepNumber} - ${stepName}`);
  console.error(error?.stack ?? error);
  if (error?.cause) console.error('caused by:', error.cause?.message ?? error.cause);
  if (problems.length) console.error(`also seen:\n  ${problems.join('\n  ')}`);
  let index = 0;
  for (const context of contexts) {
    for (const page of context.pages()) {
      index += 1;
      const file = path.join(shotDir, `failure-${stepNumber}-${index}.png`);
      await page.screenshot({ path: file, fullPage: true }).catch(() => {});
      console.error(`# ${page.url()} -> ${file}`);
    }
  }
} finally {
  await browser.close().catch(() => {});
  clearTimeout(overall);
}
process.exit(failed ? 1 : 0);
