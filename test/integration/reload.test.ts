// Config reload over real sockets (SPEC section 9): valid, invalid, restart-only settings, the keys
// file watcher, and reloads under load.
import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { MemoryStore } from '../../src/rate-limit/memory-store.js';
import type { RateLimitStore } from '../../src/rate-limit/store.js';
import { loadConfig } from '../../src/config/load.js';
import { pendingRestart } from '../../src/http/server.js';
import { reloadFrom, watchConfig } from '../../src/reload.js';
import { call, rawStatus, startGatehouse, startUpstream, writeTempFile, type Running, type Upstream } from '../support/harness.js';
import { until } from '../support/until.js';

const sha = (key: string) => `sha256:${createHash('sha256').update(key).digest('hex')}`;

interface Shape {
  port?: number;
  /** Extra routes, before the catch-all. */
  routes?: string;
  /** Upstream timeout: a change gives the upstream a new connection pool. */
  timeout?: string;
  keysFile?: string;
  extraTopLevel?: string;
  /** Extra `server` settings, e.g. `, headersTimeout: 1s`. */
  server?: string;
  /** The `std` policy's limit (per hour). */
  limit?: number;
}

let upstream: Upstream;
t.before(async () => {
  upstream = await startUpstream();
});
t.teardown(() => upstream.close());

/** Literal values only: reloadFrom expands ${VAR} from process.env, not from the harness's env. */
function yaml(o: Shape = {}): string {
  return `version: 1
server: { host: 127.0.0.1, port: ${o.port ?? 0}${o.server ?? ''} }
admin: { host: 127.0.0.1, port: 0 }
upstreams:
  default: { url: "${upstream.url}", timeout: ${o.timeout ?? '5s'}, connectTimeout: 1s }
auth:
  apiKeys:
${o.keysFile ? `    file: ${o.keysFile}\n` : ''}    keys:
      - { id: main-key, hash: "${sha('key-main')}", tenant: acme, subject: s }
rateLimit:
  policies:
    std: { limit: ${o.limit ?? 1000000}, window: 1h, by: tenant }
${o.extraTopLevel ?? ''}routes:
${o.routes ?? ''}  - name: api
    match: { path: /api/** }
    auth: any
    rateLimit: [std]
`;
}

const newRoute = (name: string) => `  - name: ${name}\n    match: { path: /${name} }\n    auth: none\n`;

async function start(t: Test, shape: Shape = {}): Promise<Running> {
  const gh = await startGatehouse(yaml(shape));
  t.teardown(() => gh.close());
  return gh;
}

const rewrite = (gh: Running, shape: Shape) => writeFileSync(gh.configPath, yaml(shape));
const metric = async (gh: Running, outcome: string) => {
  const text = (await call(`${gh.adminUrl}/metrics`)).text;
  return Number(new RegExp(`^gatehouse_config_reloads_total\\{outcome="${outcome}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
};
const keyed = { headers: { 'x-api-key': 'key-main' } };

t.test('a valid new config is swapped in: its new route answers, the old ones still do', async (t) => {
  const gh = await start(t);
  t.equal((await call(`${gh.url}/added`)).status, 404);
  rewrite(gh, { routes: newRoute('added') });
  t.equal(reloadFrom(gh.gateway, gh.configPath), 'ok');
  t.equal((await call(`${gh.url}/added`)).status, 200);
  t.equal((await call(`${gh.url}/api/x`, keyed)).status, 200);
  t.equal(await metric(gh, 'ok'), 1);
  t.ok(gh.logs.some((l) => l.msg === 'config reloaded'));
});

t.test('a limit changed by reload keeps the units already used: raised from 3 to 5 after 3 requests, 2 more pass', async (t) => {
  const gh = await start(t, { limit: 3 });
  const statuses = async (n: number) => {
    const out = [];
    for (let i = 0; i < n; i++) out.push((await call(`${gh.url}/api/x`, keyed)).status);
    return out;
  };
  t.same(await statuses(4), [200, 200, 200, 429]);
  rewrite(gh, { limit: 5 });
  t.equal(reloadFrom(gh.gateway, gh.configPath), 'ok');
  const raised = await call(`${gh.url}/api/x`, keyed);
  t.equal(raised.headers['ratelimit'], '"std";r=1;t=2880', '4 of 5 used; full again in 4 x 720 s');
  t.same(await statuses(2), [200, 429]);
  rewrite(gh, { limit: 2 });
  t.equal(reloadFrom(gh.gateway, gh.configPath), 'ok');
  const lowered = await call(`${gh.url}/api/x`, keyed);
  t.equal(lowered.status, 429, 'lowered below what was used: refused');
  t.equal(lowered.headers['retry-after'], '7200', '5 owed of 2 at 1800 s each: (5 + 1 - 2) x 1800 s');
});

t.test('an invalid config is refused: the old plan keeps serving, the error names FILE:LINE:COL, the metric counts it', async (t) => {
  const gh = await start(t, { routes: newRoute('kept') });
  // A typo in a security setting on a known line: unknown keys are errors.
  const text = yaml({ routes: newRoute('kept') }).replace('    auth: any\n', '    auht: any\n');
  writeFileSync(gh.configPath, text);
  const line = text.split('\n').findIndex((l) => l.includes('auht')) + 1;
  t.equal(reloadFrom(gh.gateway, gh.configPath), 'invalid');
  t.equal((await call(`${gh.url}/kept`)).status, 200, 'the old routes still answer');
  t.equal((await call(`${gh.url}/api/x`)).status, 401, 'the old route still needs a credential');
  const refused = gh.logs.find((l) => l.msg === 'config reload refused; keeping the running config');
  t.ok(refused, 'the refusal is logged');
  t.equal(refused?.level, 50, 'at error level');
  const errors = (refused?.errors ?? []) as string[];
  t.ok(
    errors.some((e) => e.startsWith(`${gh.configPath}:${line}:5 `) && e.includes('auht')),
    `an error at ${gh.configPath}:${line}:5 naming the key (got ${JSON.stringify(errors)})`,
  );
  t.equal(await metric(gh, 'invalid'), 1);
  t.equal(await metric(gh, 'ok'), 0);

  // YAML that does not parse is refused the same way.
  writeFileSync(gh.configPath, 'version: 1\nroutes: [\n');
  t.equal(reloadFrom(gh.gateway, gh.configPath), 'invalid');
  t.equal((await call(`${gh.url}/kept`)).status, 200);
  t.equal(await metric(gh, 'invalid'), 2);
});

t.test('a reload applies the server timeouts and the log level to the running server', async (t) => {
  const gh = await start(t);
  rewrite(gh, { server: ', headersTimeout: 500ms, requestTimeout: 30s, keepAliveTimeout: 2s', extraTopLevel: 'log: { level: warn }\n' });
  t.equal(reloadFrom(gh.gateway, gh.configPath), 'ok');
  t.match(gh.gateway.server, { headersTimeout: 500, requestTimeout: 30_000, keepAliveTimeout: 2_000 });
  // A head that never ends is cut at the new headersTimeout (plus at most one sweep of the old interval, 1 s).
  const started = Date.now();
  const answer = await new Promise<{ text: string; closedAfter: number }>((resolve) => {
    const socket = connect(gh.port, '127.0.0.1');
    let text = '';
    socket.on('data', (c: Buffer) => (text += c.toString('latin1')));
    socket.on('close', () => resolve({ text, closedAfter: Date.now() - started }));
    socket.on('error', () => undefined);
    socket.write('GET /api/x HTTP/1.1\r\nHost: x\r\nX-Slow: ');
  });
  t.equal(rawStatus(answer.text), 408, `408 after ${answer.closedAfter} ms`);
  t.ok(answer.closedAfter < 2_500, 'well before the 10 s it started with');
  const lines = gh.logs.length;
  t.equal((await call(`${gh.url}/api/x`, keyed)).status, 200);
  t.equal(gh.logs.length, lines, 'log level warn: no access line');
});

t.test('a changed listen port waits for a restart; everything else in the file is applied', async (t) => {
  const gh = await start(t, { routes: newRoute('kept') });
  rewrite(gh, { port: 18_081, routes: newRoute('other') });
  t.equal(reloadFrom(gh.gateway, gh.configPath), 'restart_required');
  t.equal((await call(`${gh.url}/other`)).status, 200, 'the new routes are applied, on the port still listened on');
  t.equal((await call(`${gh.url}/kept`)).status, 404);
  t.equal(gh.gateway.plan.config.server.port, 0, 'the plan holds the running port');
  t.equal(await metric(gh, 'restart_required'), 1);
  const warning = gh.logs.find((l) => l.level === 40 && String(l.msg).includes('need a restart'));
  t.strictSame(warning?.settings, ['server.port'], 'the log names the setting left as running');
});

t.test('every restart-only setting changed at once: each is named, none is applied', async (t) => {
  const gh = await start(t);
  const running = gh.gateway.plan.config;
  writeFileSync(
    gh.configPath,
    yaml({ port: 18_082, server: ', maxHeaderBytes: 32768' })
      .replace('server: { host: 127.0.0.1', 'server: { host: 127.0.0.2')
      .replace('admin: { host: 127.0.0.1, port: 0 }', 'admin: { host: 127.0.0.1, port: 19901 }')
      .replace('rateLimit:\n', 'rateLimit:\n  store: redis\n  maxKeys: 5\n  redis: { url: "redis://127.0.0.1:1", keyPrefix: "other:", commandTimeout: 1s, onError: deny }\n'),
  );
  const next = loadConfig(gh.configPath);
  t.strictSame(pendingRestart(next, running), [
    'server.host',
    'server.port',
    'server.maxHeaderBytes',
    'admin',
    'rateLimit.store',
    'rateLimit.maxKeys',
    'rateLimit.redis.url',
    'rateLimit.redis.keyPrefix',
    'rateLimit.redis.commandTimeout',
  ]);
  t.equal(gh.gateway.reload(next), 'restart_required');
  t.strictSame(pendingRestart(gh.gateway.plan.config, running), [], 'the plan keeps every running value');
  t.equal(gh.gateway.plan.config.rateLimit.redis.onError, 'deny', 'onError is applied');
});

t.test('a setting waiting for a restart never holds back a key revoked in the keys file', async (t) => {
  const keysEntry = (disabled: boolean) => `keys:\n  - { id: file-key, hash: "${sha('key-from-file')}", tenant: globex, subject: s, disabled: ${disabled} }\n`;
  const keysFile = writeTempFile('keys.yaml', keysEntry(false));
  const gh = await start(t, { keysFile });
  const withFileKey = { headers: { 'x-api-key': 'key-from-file' } };
  t.equal((await call(`${gh.url}/api/x`, withFileKey)).status, 200);
  rewrite(gh, { keysFile, server: ', maxHeaderBytes: 32768' });
  t.equal(reloadFrom(gh.gateway, gh.configPath), 'restart_required');
  writeFileSync(keysFile, keysEntry(true));
  t.equal(reloadFrom(gh.gateway, gh.configPath), 'restart_required', 'the header limit still waits for a restart');
  t.equal((await call(`${gh.url}/api/x`, withFileKey)).status, 401, 'the revocation is applied at once');
});

t.test('the watcher revokes a key disabled in the keys file, and reloads a changed config file', async (t) => {
  const keysEntry = (disabled: boolean) =>
    `keys:\n  - { id: file-key, hash: "${sha('key-from-file')}", tenant: globex, subject: s, disabled: ${disabled} }\n`;
  // Its own folder, apart from the config's: both folders must be watched.
  const keysFile = writeTempFile('keys.yaml', keysEntry(false));
  const gh = await start(t, { keysFile });
  const stop = watchConfig(gh.gateway, gh.configPath);
  t.teardown(stop);
  const withFileKey = { headers: { 'x-api-key': 'key-from-file' } };
  t.equal((await call(`${gh.url}/api/x`, withFileKey)).status, 200);

  writeFileSync(keysFile, keysEntry(true));
  const started = Date.now();
  await until(async () => (await call(`${gh.url}/api/x`, withFileKey)).status === 401, 5000, 'the disabled key is refused');
  t.comment(`key revoked ${Date.now() - started} ms after the keys file changed`);
  const refused = await call(`${gh.url}/api/x`, withFileKey);
  t.equal(refused.json.error, 'invalid_token');
  t.equal((await call(`${gh.url}/api/x`, keyed)).status, 200, 'the keys of the main file still work');

  rewrite(gh, { keysFile, routes: newRoute('watched') });
  await until(async () => (await call(`${gh.url}/watched`)).status === 200, 5000, 'the changed config file is reloaded');
});

t.test('reload under load: 4 keep-alive client loops see no error across 20 reloads', async (t) => {
  // A store that answers after a network-like delay (as Redis does), so requests are still between
  // admission and forwarding on the old plan when a reload swaps it out.
  const memory = new MemoryStore({ maxKeys: 1000 });
  const store: RateLimitStore = {
    consume: async (buckets) => {
      await delay(1);
      return memory.consume(buckets);
    },
    ready: () => true,
    close: () => memory.close(),
  };
  const gh = await startGatehouse(yaml(), {}, { store });
  t.teardown(() => gh.close());
  let running = true;
  let done = 0;
  const failures: string[] = [];
  const loop = async () => {
    while (running) {
      try {
        const answer = await call(`${gh.url}/api/x`, keyed);
        if (answer.status !== 200) failures.push(`${answer.status} ${answer.text}`);
      } catch (err) {
        failures.push(String(err));
      }
      done++;
    }
  };
  const loops = Array.from({ length: 4 }, loop);
  await until(() => done >= 20, 5000, 'the loops are running');
  const outcomes: string[] = [];
  const pools = new Set([gh.gateway.plan.upstreams.get('default')!.pool]);
  for (let i = 0; i < 20; i++) {
    // Every reload adds or drops a route and changes the upstream settings, so the old upstream
    // pool is retired while requests that started on the old plan may still be using it.
    rewrite(gh, { routes: i % 2 ? '' : newRoute(`r${i}`), timeout: i % 2 ? '5s' : '6s' });
    outcomes.push(reloadFrom(gh.gateway, gh.configPath));
    pools.add(gh.gateway.plan.upstreams.get('default')!.pool);
    const before = done;
    await until(() => done >= before + 5, 5000, 'requests go on between reloads');
  }
  running = false;
  await Promise.all(loops);
  t.same([...new Set(outcomes)], ['ok'], 'all 20 reloads applied');
  t.same(failures.slice(0, 5), [], 'no request failed or got a non-200');
  t.equal(failures.length, 0);
  t.ok(done >= 100);
  // Once their last request is done, the replaced plans' pools are closed: nothing leaks.
  const current = gh.gateway.plan.upstreams.get('default')!.pool;
  await until(() => [...pools].every((p) => p === current || p.closed), 2000, 'the retired pools are closed');
  t.equal(pools.size, 21, 'every reload built a new pool');
  t.equal(current.closed, false);
  t.comment(`reload under load: ${done} requests, ${failures.length} errors, 20 reloads`);
});
