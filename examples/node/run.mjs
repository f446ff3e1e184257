// Runs the Alipay payment component from Node (jco transpile) against a running `payhost sandbox`:
// describe, validate-settings, a WAP payment (start-payment, the create call sent here,
// resume-payment), the sandbox cashier's payment, the signed notification received on this
// script's own HTTP server, verify-notification (its notify_verify request sent here), resume,
// match-order, and the reply the provider expects; the buyer's signed return (verify-return).
// Before any of it, the component is checked against its manifest (plugin.toml: its sha256, the
// contract version, id, version and settings), as payhost does. Then it times the calls on the
// same instance.
//
//   node run.mjs --sandbox http://127.0.0.1:8090/sandbox [--component X.wasm] [--manifest plugin.toml]
//                [--iterations 2000]
//
// The component's path defaults to target/wasm32-wasip2/release/alipay_wap_plugin.wasm at the
// repository's root, or $PAYHOST_COMPONENT. The merchant (--partner, --key) must be one the
// sandbox knows (`payhost sandbox --md5-merchant PARTNER:KEY`). Exits non-zero on any failure.
// See docs/EMBEDDING.md for the type mapping and the imports.

import { transpile } from '@bytecodealliance/jco';
import { createHash } from 'node:crypto';
import { _setArgs, _setEnv, environment } from '@bytecodealliance/preview2-shim/cli';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { rmSync } from 'node:fs';
import { createServer, request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
// The newest contract first: the flow code below works with both (it never looks inside a
// continuation, whether bytes in 0.2.0 or a string since 0.3.0; 0.4.0 adds refunds, close and
// bills, which this payment flow does not call).
const CONTRACTS = ['0.4.0', '0.3.0', '0.2.0'];

class Failure extends Error {}
function check(ok, what) {
  if (!ok) throw new Failure(what);
}

const { values: args } = parseArgs({
  options: {
    component: {
      type: 'string',
      default: process.env.PAYHOST_COMPONENT ?? join(root, 'target/wasm32-wasip2/release/alipay_wap_plugin.wasm'),
    },
    manifest: { type: 'string', default: process.env.PAYHOST_MANIFEST ?? join(root, 'plugin.toml') },
    sandbox: { type: 'string', default: process.env.PAYHOST_SANDBOX },
    partner: { type: 'string', default: '2088000000009999' },
    key: { type: 'string', default: 'abcdefghijklmnopqrstuvwxyz012345' },
    iterations: { type: 'string', default: process.env.PAYHOST_ITERATIONS ?? '2000' },
  },
});

/**
 * Transpiles the component (core wasm + JS glue) into a directory of its own under out/ (beside
 * node_modules, where the glue finds the WASI shim; one per run, so runs side by side do not
 * overwrite each other's files) and imports its `plugin` export. The directory is removed at exit.
 */
async function load(path) {
  const bytes = await readFile(path).catch((e) => {
    throw new Failure(`cannot read the component ${path} (${e.code ?? e.message}): build it (cargo build --release --target wasm32-wasip2 -p alipay-wap-plugin) or pass --component PATH`);
  });
  const { files, exports } = await transpile(bytes, { name: 'plugin', noTypescript: true, quiet: true });
  await mkdir(join(here, 'out'), { recursive: true });
  const out = await mkdtemp(join(here, 'out', 'run-'));
  process.on('exit', () => rmSync(out, { recursive: true, force: true }));
  for (const [name, data] of Object.entries(files)) {
    await mkdir(dirname(join(out, name)), { recursive: true });
    await writeFile(join(out, name), data);
  }
  // The glue imports the WASI interfaces from @bytecodealliance/preview2-shim (cli, clocks, io,
  // random): nothing else is needed, the component performs no I/O. But the shim hands it this
  // process's own environment (process.env, with any secret in it) and arguments: give it none.
  // The shim is one module per process, so this holds for every component this process runs.
  _setEnv({});
  _setArgs([]);
  check(environment.getEnvironment().length === 0 && environment.getArguments().length === 0, 'the component would see this process\'s environment');
  const module = await import(pathToFileURL(join(out, 'plugin.js')).href);
  const contract = CONTRACTS.find((v) => exports.some(([name]) => name === `payhost:payment/plugin@${v}`));
  check(contract, 'the component exports no payhost:payment/plugin this example knows');
  return { plugin: module[`payhost:payment/plugin@${contract}`], contract, bytes };
}

/**
 * The pins of a manifest (plugin.toml) that an embedder checks: top-level `id` and `version`,
 * `[wit] version`, `[component] sha256` and each `[[settings]]` `name`. A reader for those keys
 * only (one `key = "value"` per line, as plugin.toml writes them); use a TOML library for more.
 */
async function readManifest(path) {
  const text = await readFile(path, 'utf8').catch((e) => {
    throw new Failure(`cannot read the manifest ${path} (${e.code ?? e.message}): pass --manifest PATH (plugin.toml, shipped with the component)`);
  });
  const m = { settings: [] };
  let section = '';
  for (const line of text.split(/\r?\n/)) {
    const header = line.match(/^\s*\[\[?([A-Za-z0-9_.-]+)\]\]?\s*(#.*)?$/);
    if (header) {
      section = header[1];
      continue;
    }
    const kv = line.match(/^\s*([A-Za-z0-9_-]+)\s*=\s*"([^"\\]*)"\s*(#.*)?$/);
    if (!kv) continue;
    const [, key, value] = kv;
    if (section === '' && (key === 'id' || key === 'version')) m[key] = value;
    if (section === 'wit' && key === 'version') m.contract = value;
    if (section === 'component' && key === 'sha256') m.sha256 = value.toLowerCase();
    if (section === 'settings' && key === 'name') m.settings.push(value);
  }
  return m;
}

/** Refuses a component its manifest does not describe, naming what differs (payhost refuses to
 * start on the same checks). */
function checkManifest(path, m, bytes, contract, info) {
  const sha = createHash('sha256').update(bytes).digest('hex');
  check(m.sha256 === sha, `manifest ${path}: the component's sha256 is ${sha}, the manifest pins ${m.sha256}: another build than the one the manifest was made for`);
  check(m.contract === contract, `manifest ${path}: [wit] version ${m.contract}, the component exports payhost:payment/plugin@${contract}`);
  check(m.id === info.id && m.version === info.version, `manifest ${path}: ${m.id} ${m.version}, the component describes itself as ${info.id} ${info.version}`);
  // The same names, in any order (payhost's check ignores the order).
  const described = info.settings.map((f) => f.name);
  check(JSON.stringify([...m.settings].sort()) === JSON.stringify([...described].sort()), `manifest ${path}: settings ${m.settings.join(', ')}; the component's: ${described.join(', ')}`);
}

/** Settings, a form or a query as the contract takes them: since 0.3.0 one form-encoded string
 * (`form-pairs`, one copy), 0.2.0 an array of `{key, value}` pairs. */
function kvFor(contract) {
  return (pairs) => (contract === '0.2.0' ? pairs : new URLSearchParams(pairs.map((p) => [p.key, p.value])).toString());
}

/** A top-level `result` error is thrown as a ComponentError whose `payload` is the WIT error. */
function errorOf(e) {
  if (e instanceof Failure || e?.payload === undefined) throw e;
  return e.payload;
}

function describeError(p) {
  if (Array.isArray(p)) return p.map((e) => `${e.field}: ${e.reason}`).join('; ');
  if (p && typeof p === 'object') return `${p.tag}: ${typeof p.val === 'object' ? JSON.stringify(p.val) : p.val}`;
  return String(p);
}

function call(what, fn) {
  try {
    return fn();
  } catch (e) {
    throw new Failure(`${what}: ${describeError(errorOf(e))}`);
  }
}

/** Sends a request the component asked for, as an embedder must: the component's method, URL,
 * headers and body, plus Content-Length and Host. Returns the `result<incoming-response,
 * send-failure>` value to resume with ({tag: 'ok'|'err', val}). */
function send(req, timeoutMs = 10_000) {
  return new Promise((done) => {
    const url = new URL(req.url);
    const headers = Object.fromEntries(req.headers.map((p) => [p.key, p.value]));
    const body = Buffer.from(req.body);
    if (body.length > 0 || req.method === 'post') headers['content-length'] = String(body.length);
    const r = (url.protocol === 'https:' ? httpsRequest : httpRequest)(
      url,
      { method: req.method.toUpperCase(), headers, timeout: timeoutMs },
      (res) => {
        const chunks = [];
        let size = 0;
        res.on('data', (c) => {
          size += c.length;
          if (size > 1 << 20) {
            res.destroy();
            done({ tag: 'err', val: { tag: 'failed', val: 'the answer is larger than 1 MiB' } });
          } else chunks.push(c);
        });
        res.on('end', () => {
          const pairs = [];
          for (let i = 0; i < res.rawHeaders.length; i += 2) pairs.push({ key: res.rawHeaders[i], value: res.rawHeaders[i + 1] });
          done({ tag: 'ok', val: { status: res.statusCode, headers: pairs, body: new Uint8Array(Buffer.concat(chunks)) } });
        });
      },
    );
    r.on('timeout', () => {
      r.destroy();
      done({ tag: 'err', val: { tag: 'timeout', val: `${req.url}: no answer within ${timeoutMs} ms` } });
    });
    r.on('error', (e) => done({ tag: 'err', val: { tag: 'failed', val: `${req.url}: ${e.message}` } }));
    r.end(body);
  });
}

/** Runs a flow to `done`: every `send` is sent here and resumed with the answer. */
async function drive(flow, first, resume) {
  let step = call(flow, first);
  for (let sent = 1; step.tag === 'send'; sent++) {
    check(sent <= 4, `${flow}: the component keeps asking for requests`);
    const { request, continuation } = step.val;
    const answer = await send(request);
    // The continuation goes back exactly as received (bytes in 0.2.0, a string since 0.3.0).
    step = call(flow, () => resume(continuation, answer));
  }
  check(step.tag === 'done', `${flow}: unexpected step ${step.tag}`);
  return step.val;
}

/** The largest notification body read, as payhost's (`MAX_NOTIFY_BODY`, host/src/http/body.rs):
 * the component takes any size, so the embedder bounds what it passes in (docs/EMBEDDING.md). */
const MAX_NOTIFY_BODY = 32 * 1024;

/** The shop's notify_url: each notification's form goes to `next()`, and the provider gets the
 * body passed to its `reply` (the component's `reply`). A body over MAX_NOTIFY_BODY is answered
 * 413 `fail` unread, as payhost does. */
function notifyReceiver() {
  const waiting = [];
  const server = createServer((req, res) => {
    const tooLarge = () => {
      res.writeHead(413, { 'content-type': 'text/plain', 'content-length': 4, connection: 'close' });
      res.end('fail', () => req.destroy());
    };
    if (Number(req.headers['content-length'] ?? 0) > MAX_NOTIFY_BODY) return tooLarge();
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size <= MAX_NOTIFY_BODY) chunks.push(c);
      else if (size - c.length <= MAX_NOTIFY_BODY) tooLarge();
    });
    req.on('end', () => {
      if (size > MAX_NOTIFY_BODY) return;
      // Received order matters: the provider signs in wire order.
      const form = [...new URLSearchParams(Buffer.concat(chunks).toString('utf8'))].map(([key, value]) => ({ key, value }));
      const answer = (body) => {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
        res.end(body);
      };
      const timer = setTimeout(() => answer('fail'), 10_000);
      waiting.shift()?.({ form, reply: (body) => (clearTimeout(timer), answer(body)) });
    });
  });
  return new Promise((ready) =>
    server.listen(0, '127.0.0.1', () =>
      ready({
        url: `http://127.0.0.1:${server.address().port}/notify`,
        next: (ms) =>
          new Promise((got, fail) => {
            const t = setTimeout(() => fail(new Failure(`the sandbox sent no notification within ${ms} ms`)), ms);
            waiting.push((n) => (clearTimeout(t), got(n)));
          }),
        close: () => server.close(),
      }),
    ),
  );
}

async function postForm(url, fields) {
  const body = new URLSearchParams(fields).toString();
  const r = await send({
    method: 'post',
    url,
    headers: [{ key: 'content-type', value: 'application/x-www-form-urlencoded' }],
    body: new TextEncoder().encode(body),
  });
  check(r.tag === 'ok', `POST ${url}: ${r.val?.val}`);
  return r.val;
}

/** Median, p10 and p90 wall time of `fn` in microseconds over n calls (after warm-ups). */
function timed(n, fn) {
  for (let i = 0; i < Math.min(200, n); i++) fn();
  const samples = [];
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    fn();
    samples.push(Number(process.hrtime.bigint() - t) / 1000);
  }
  samples.sort((a, b) => a - b);
  const median = n % 2 ? samples[(n - 1) / 2] : (samples[n / 2 - 1] + samples[n / 2]) / 2;
  return { median, p10: samples[Math.floor(n / 10)], p90: samples[Math.floor((9 * n) / 10)] };
}

async function main() {
  check(args.sandbox, '--sandbox (or PAYHOST_SANDBOX) is required');
  const sandbox = args.sandbox.replace(/\/+$/, '');
  const t0 = performance.now();
  const manifest = await readManifest(args.manifest);
  const { plugin, contract, bytes } = await load(args.component);
  const kv = kvFor(contract);
  const info = plugin.describe();
  console.log(`node: ${info.id} ${info.version}, contract payhost:payment@${contract}, loaded in ${(performance.now() - t0).toFixed(0)} ms`);
  check(info.id === 'alipay-wap', `describe: id ${info.id}`);
  checkManifest(args.manifest, manifest, bytes, contract, info);
  console.log(`node: the component is the one its manifest pins (sha256, contract ${contract}, ${info.settings.length} settings)`);

  // validate-settings returns the settings to store: trimmed, select values spelled as the schema
  // does, every setting that has a default present with it (paychannel_url is left out here, so it
  // comes back with its default).
  const entered = [
    ['partner', `  ${args.partner}\n`],
    ['key', ` ${args.key} `],
    ['seller_email', 'seller@example.com'],
    ['sign_type', 'md5'],
    ['gateway_url', `${sandbox}/gateway`],
    ['notify_verify_url', `${sandbox}/mapi`],
    ['mapi_url', `${sandbox}/mapi`],
  ].map(([key, value]) => ({ key, value }));
  const stored = call('validate-settings', () => plugin.validateSettings(kv(entered)));
  const got = Object.fromEntries(stored.map((p) => [p.key, p.value]));
  const defaults = Object.fromEntries(info.settings.filter((f) => f.defaultValue !== undefined).map((f) => [f.name, f.defaultValue]));
  check(got.partner === args.partner, `validate-settings: partner not trimmed: ${JSON.stringify(got.partner)}`);
  check(got.key === args.key, 'validate-settings: key not trimmed');
  check(got.sign_type === 'MD5', `validate-settings: sign_type ${got.sign_type}`);
  check(got.mode === 'b2c' && defaults.mode === 'b2c', `validate-settings: mode ${got.mode}`);
  check(got.paychannel_url === defaults.paychannel_url, `validate-settings: paychannel_url ${got.paychannel_url} is not its default`);
  check(got.gateway_url === `${sandbox}/gateway`, 'validate-settings: gateway_url changed');
  const again = call('validate-settings', () => plugin.validateSettings(kv(stored)));
  check(JSON.stringify(again) === JSON.stringify(stored), 'validate-settings: normalising twice changed the settings');
  let refused = null;
  try {
    plugin.validateSettings(kv([{ key: 'partner', value: '12' }, { key: 'colour', value: 'red' }]));
  } catch (e) {
    refused = errorOf(e);
  }
  check(refused && ['partner', 'colour'].every((f) => refused.some((e) => e.field === f)), 'validate-settings: bad settings not refused by field');
  console.log(`node: validate-settings ok (${stored.length} settings, defaults applied)`);
  const settings = kv(stored);

  const receiver = await notifyReceiver();
  try {
    const outTradeNo = `NODEEX${Date.now()}`;
    const order = {
      product: 'wap',
      outTradeNo,
      subject: 'Node 示例 & <test>',
      totalFee: '0.01',
      seller: undefined,
      returnUrl: 'http://127.0.0.1/shop/return',
      notifyUrl: receiver.url,
      merchantUrl: undefined,
      payExpire: undefined,
      outUser: undefined,
      cashierCode: undefined,
      requestId: `node${Date.now()}`,
    };
    const started = await drive('start-payment', () => plugin.startPayment(settings, order), (c, r) => plugin.resumePayment(settings, c, r));
    check(started.token && started.redirect.url.startsWith(`${sandbox}/gateway`), `start-payment: redirect ${started.redirect.url}`);
    console.log(`node: start-payment ok (token ${started.token.slice(0, 12)}…, redirect to the cashier)`);

    const notified = receiver.next(10_000);
    const paid = await postForm(`${sandbox}/cashier/pay`, { token: started.token });
    check(paid.status === 302, `cashier pay: HTTP ${paid.status}`);
    const { form: received, reply } = await notified;
    const form = kv(received);

    let notification, expectation;
    try {
      notification = await drive('verify-notification', () => plugin.verifyNotification(settings, form), (c, r) => plugin.resumeNotification(settings, c, r));
      check(notification.outTradeNo === outTradeNo, 'verify-notification: another order');
      check(notification.event === 'paid' && notification.paid, `verify-notification: event ${notification.event}`);
      expectation = { outTradeNo, totalFee: started.totalFee, seller: started.seller };
      call('match-order', () => plugin.matchOrder(notification, expectation));
      let mismatch = null;
      try {
        plugin.matchOrder(notification, { ...expectation, totalFee: '0.02' });
      } catch (e) {
        mismatch = errorOf(e);
      }
      check(mismatch?.some((e) => e.field === 'total_fee'), 'match-order: a wrong amount was not refused');
      reply(notification.reply);
    } catch (e) {
      reply('fail');
      throw e;
    }
    console.log(`node: notification verified and confirmed (trade ${notification.tradeNo}, ${notification.tradeStatus}), order matched, replied ${JSON.stringify(notification.reply)}`);

    // The buyer's return: the cashier sends the browser to return_url with a signed query. Its
    // request_token is not compared with start-payment's token: Alipay's real returns carry the
    // literal `requestToken` (docs/protocol/WAP.md), and so does the sandbox.
    const location = paid.headers.find((h) => h.key.toLowerCase() === 'location')?.value ?? '';
    check(location.startsWith(order.returnUrl), `cashier pay: the buyer is sent to ${location}, not the return_url`);
    const query = [...new URL(location).searchParams].map(([key, value]) => ({ key, value }));
    const returned = call('verify-return', () => plugin.verifyReturn(settings, kv(query)));
    check(returned.outTradeNo === outTradeNo && returned.result === 'success' && returned.tradeNo === notification.tradeNo, `verify-return: ${JSON.stringify(returned)}`);
    let forgedReturn = null;
    try {
      plugin.verifyReturn(settings, kv(query.map((p) => (p.key === 'out_trade_no' ? { ...p, value: `${p.value}9` } : p))));
    } catch (e) {
      forgedReturn = errorOf(e);
    }
    check(forgedReturn?.tag === 'bad-signature', `verify-return: a changed return was not refused: ${JSON.stringify(forgedReturn)}`);
    console.log('node: the buyer\'s return verified; a changed one refused (bad-signature)');

    const forged = kv(received.map((p) => (p.key === 'notify_data' ? { ...p, value: p.value.replace('0.01', '9.99') } : p)));
    let forgedError = null;
    try {
      plugin.verifyNotification(settings, forged);
    } catch (e) {
      forgedError = errorOf(e);
    }
    check(forgedError?.tag === 'bad-signature', `verify-notification: a forged amount was not refused: ${JSON.stringify(forgedError)}`);
    console.log('node: a forged notification is refused (bad-signature)');

    // Alipay does not confirm it (`notify_verify` answers `false`: a replayed or made-up
    // notify_id): the same well-signed notification is refused, never taken as paid.
    const asked = call('verify-notification', () => plugin.verifyNotification(settings, form));
    check(asked.tag === 'send', 'verify-notification: no notify_verify request');
    const denied = { tag: 'ok', val: { status: 200, headers: [], body: new TextEncoder().encode('false') } };
    let unconfirmed = null;
    try {
      plugin.resumeNotification(settings, asked.val.continuation, denied);
    } catch (e) {
      unconfirmed = errorOf(e);
    }
    check(unconfirmed?.tag === 'notify-not-confirmed', `resume-notification: a notification Alipay did not confirm was not refused: ${JSON.stringify(unconfirmed)}`);
    console.log('node: a notification Alipay does not confirm is refused (notify-not-confirmed)');

    // Per-call cost on this one instance: the calls a notification costs an embedder, the
    // notify_verify answer replayed (no network in the loop).
    const first = plugin.verifyNotification(settings, form);
    check(first.tag === 'send', 'verify-notification: no notify_verify request');
    const { continuation } = first.val;
    const confirmed = { tag: 'ok', val: { status: 200, headers: [], body: new TextEncoder().encode('true') } };
    const n = Number(args.iterations);
    const results = [
      ['verify-notification', timed(n, () => plugin.verifyNotification(settings, form))],
      ['resume-notification', timed(n, () => plugin.resumeNotification(settings, continuation, confirmed))],
      ['match-order', timed(n, () => plugin.matchOrder(notification, expectation))],
    ];
    const unit = typeof continuation === 'string' ? 'characters' : 'bytes';
    console.log(`node timings (same instance, ${n} iterations; continuation ${continuation.length} ${unit}):`);
    for (const [name, { median, p10, p90 }] of results) {
      console.log(`  ${name.padEnd(22)} median ${median.toFixed(1).padStart(8)} µs   p10 ${p10.toFixed(1).padStart(8)}   p90 ${p90.toFixed(1).padStart(8)}`);
    }
    console.log('node: OK');
  } finally {
    receiver.close();
  }
}

main().catch((e) => {
  console.error(`node: FAILED: ${e instanceof Failure ? e.message : e?.stack ?? e}`);
  process.exit(1);
});
