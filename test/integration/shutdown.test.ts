// Graceful shutdown in-process (Gateway.close) and as a process (SIGTERM), and the CLI's exit codes.
import t from 'tap';
import { connect, createServer as createNetServer } from 'node:net';
import { call, configYaml, raw, startGatehouse, startUpstream, writeTempFile, type Upstream } from '../support/harness.js';
import { spawn } from 'node:child_process';
import { CLI, ensureBuilt, serveCli, type CliRun } from '../support/built-cli.js';
import { until } from '../support/until.js';
import { startWsEchoUpstream, wsConnect } from '../support/websocket.js';
import type { BucketRequest, Decision, RateLimitStore } from '../../src/rate-limit/store.js';

let upstream: Upstream;
let hangsCancelled = 0;
t.before(async () => {
  upstream = await startUpstream((req, res) => {
    if (req.url === '/slow') return void setTimeout(() => res.end('finally'), 300);
    // Never answers; counts the upstream connections gatehouse gives up on.
    if (req.url === '/hang') return void res.once('close', () => hangsCancelled++);
    res.end('ok');
  });
});
t.teardown(() => upstream.close());

/** Resolves with the connect error code, or 'connected'. */
function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
  });
}

/** Runs the built CLI without blocking this process (so several can run at once). */
function cli(args: string[], env: Record<string, string> = {}): Promise<CliRun> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c));
    child.stderr.on('data', (c: Buffer) => (stderr += c));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const seen = (path: string) => upstream.requests.filter((r) => r.url === path).length;

t.test('close() lets an in-flight request finish, refuses new connections, then resolves', async (t) => {
  const gw = await startGatehouse(configYaml(), { UPSTREAM: upstream.url });
  const before = seen('/slow');
  const inFlight = call(`${gw.url}/slow`);
  await until(() => seen('/slow') === before + 1, 2000, 'the upstream has the slow request');
  const started = Date.now();
  let closed = false;
  const closing = gw.close().then(() => (closed = true));
  t.equal(await tryConnect(gw.port), 'ECONNREFUSED', 'a new connection is refused while draining');
  t.notOk(closed, 'close() waits while a request is in flight');
  const answer = await inFlight;
  t.equal(answer.status, 200);
  t.equal(answer.text, 'finally');
  await closing;
  const took = Date.now() - started;
  t.ok(took >= 200 && took < 2000, `close() resolved after ${took} ms, once the upstream (300 ms) had answered`);
  t.match(gw.logs.find((l) => l.path === '/slow'), { status: 200, reason: null }, 'the request is logged as served');
});

t.test('/readyz answers 503 while draining, so load balancers stop sending here; /healthz stays 200', async (t) => {
  const gw = await startGatehouse(configYaml({ admin: true }), { UPSTREAM: upstream.url });
  t.equal((await call(`${gw.adminUrl}/readyz`)).status, 200, 'ready before');
  const before = seen('/slow');
  const inFlight = call(`${gw.url}/slow`);
  await until(() => seen('/slow') === before + 1, 2000, 'the upstream has the slow request');
  const closing = gw.close();
  const ready = await call(`${gw.adminUrl}/readyz`);
  t.equal(ready.status, 503, 'not ready while draining');
  t.match(ready.text, /shutting down/);
  t.equal((await call(`${gw.adminUrl}/healthz`)).status, 200, 'still alive');
  t.equal((await inFlight).status, 200, 'the in-flight request finishes');
  await closing;
});

t.test('with shutdownTimeout: 200ms a request hanging forever does not hold close() up', async (t) => {
  const gw = await startGatehouse(configYaml({ server: '  shutdownTimeout: 200ms\n' }), { UPSTREAM: upstream.url });
  const before = seen('/hang');
  const hanging = call(`${gw.url}/hang`).then(
    (answer) => `answered ${answer.status}`,
    (err: Error & { code?: string }) => `failed ${err.code ?? err.message}`,
  );
  await until(() => seen('/hang') === before + 1, 2000, 'the upstream has the hanging request');
  const started = Date.now();
  await gw.close();
  const took = Date.now() - started;
  t.ok(took >= 190 && took < 1000, `close() took ${took} ms (shutdownTimeout 200ms)`);
  t.match(await hanging, /^failed /, 'the hanging request is cut off');
  await until(() => gw.logs.some((l) => l.path === '/hang'), 1000, 'the cut-off request is logged');
  t.match(gw.logs.find((l) => l.path === '/hang'), { status: 499, reason: 'client_closed' });
});

t.test('a client that disconnects cancels its upstream request', async (t) => {
  const gw = await startGatehouse(configYaml(), { UPSTREAM: upstream.url });
  t.teardown(() => gw.close());
  const before = seen('/hang');
  const cancelled = hangsCancelled;
  const socket = connect(gw.port, '127.0.0.1');
  socket.on('error', () => undefined);
  socket.write('GET /hang HTTP/1.1\r\nHost: x\r\n\r\n');
  await until(() => seen('/hang') === before + 1, 2000, 'the upstream has the request');
  socket.destroy();
  // Without the cancel the upstream connection would stay open until the upstream timeout (5 s).
  await until(() => hangsCancelled === cancelled + 1, 2000, 'the upstream request is cancelled');
  await until(() => gw.logs.some((l) => l.path === '/hang'), 2000, 'the abandoned request is logged');
  t.match(gw.logs.find((l) => l.path === '/hang'), { status: 499, reason: 'client_closed' });
});

t.test('close() gives an open WebSocket tunnel up to shutdownTimeout, then cuts it off and resolves', async (t) => {
  const ws = await startWsEchoUpstream();
  t.teardown(() => ws.close());
  const gw = await startGatehouse(configYaml({ server: '  shutdownTimeout: 300ms\n' }), { UPSTREAM: ws.url });
  const client = await wsConnect(gw.port, '/chat');
  // Before the fix close() never resolved; ending the test's own socket lets the gateway go.
  t.teardown(() => client.socket.destroy());
  t.equal(client.status, 101);
  const server = await ws.nextConnection();
  t.equal(await client.inbox.next(), 'hello /chat');
  const started = Date.now();
  let took: number | null = null;
  void gw.close().then(() => (took = Date.now() - started));
  client.send('still there');
  t.equal(await client.inbox.next(), 'echo:still there', 'the tunnel carries data while gatehouse drains');
  t.equal(took, null, 'close() waits for the open tunnel');
  await until(() => took !== null, 3000, 'close() resolved');
  t.ok(took! >= 290 && took! < 2000, `close() resolved after ${took} ms (shutdownTimeout 300ms)`);
  let clientClosed = false;
  let serverClosed = false;
  void client.closed.then(() => (clientClosed = true));
  void server.closed.then(() => (serverClosed = true));
  await until(() => clientClosed, 1000, 'the client socket is closed');
  await until(() => serverClosed, 1000, 'the upstream side of the tunnel is closed');
  t.pass('both ends of the tunnel are closed');
});

t.test('close() resolves as soon as the last open tunnel closes, without waiting for shutdownTimeout', async (t) => {
  const ws = await startWsEchoUpstream();
  t.teardown(() => ws.close());
  const gw = await startGatehouse(configYaml({ server: '  shutdownTimeout: 10s\n' }), { UPSTREAM: ws.url });
  const client = await wsConnect(gw.port, '/chat');
  t.teardown(() => client.socket.destroy());
  t.equal(await client.inbox.next(), 'hello /chat');
  const started = Date.now();
  let took: number | null = null;
  void gw.close().then(() => (took = Date.now() - started));
  t.equal(took, null);
  client.close();
  await until(() => took !== null, 3000, 'close() resolved');
  t.ok(took! < 2000, `close() resolved ${took} ms after the client closed its tunnel (shutdownTimeout 10s)`);
});

t.test('an upgrade still being admitted when shutdown cuts it off never opens its upstream connection', async (t) => {
  // A store that holds every decision until told: the upgrade stays in admission past shutdownTimeout.
  const held: Array<() => void> = [];
  const store: RateLimitStore = {
    consume: (buckets: readonly BucketRequest[]) =>
      new Promise<Decision>((resolve) => held.push(() => resolve({ allowed: true, buckets: buckets.map(() => ({ remaining: 1, resetMs: 0, retryAfterMs: 0 })) }))),
    ready: () => true,
    close: async () => undefined,
  };
  const ws = await startWsEchoUpstream();
  t.teardown(() => ws.close());
  const yaml = configYaml({
    server: '  shutdownTimeout: 100ms\n',
    rateLimit: '  policies:\n    p: { limit: 5, window: 1m, by: ip }',
    routes: '  - { name: held, match: { path: /** }, auth: none, rateLimit: [p] }',
  });
  const gw = await startGatehouse(yaml, { UPSTREAM: ws.url }, { store });
  const answer = raw(gw.port, 'GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
  await until(() => held.length === 1, 2000, 'the upgrade waits for its rate-limit decision');
  await gw.close();
  t.equal(await answer, '', 'the client socket is cut off without an answer');
  held[0]();
  await until(() => gw.logs.some((l) => l.path === '/chat'), 1000, 'the cut-off upgrade is logged');
  t.match(gw.logs.find((l) => l.path === '/chat'), { status: 499, reason: 'client_closed' });
  t.equal(ws.connections.length, 0, 'the upstream never saw the upgrade');
});

t.test('close() twice resolves both times', async (t) => {
  const gw = await startGatehouse(configYaml(), { UPSTREAM: upstream.url });
  await Promise.all([gw.close(), gw.close()]);
  t.pass();
});

t.test('the CLI', async (t) => {
  await ensureBuilt();
  const yaml = configYaml().replace('server:\n  port: 0\n', 'server:\n  port: 0\n  host: 127.0.0.1\n');
  const good = writeTempFile('gatehouse.yaml', yaml);

  t.test('serve drains an in-flight request on SIGTERM and exits 0', async (t) => {
    const child = await serveCli(good, { UPSTREAM: upstream.url });
    t.equal((await call(`${child.url}/x`)).text, 'ok', 'it serves');
    const before = seen('/slow');
    const inFlight = call(`${child.url}/slow`);
    await until(() => seen('/slow') === before + 1, 2000, 'the upstream has the slow request');
    const code = child.stop();
    const answer = await inFlight;
    t.equal(answer.status, 200);
    t.equal(answer.text, 'finally');
    t.equal(await code, 0);
  });

  t.test('serve exits 0 on SIGTERM within shutdownTimeout while a WebSocket tunnel stays open', async (t) => {
    const ws = await startWsEchoUpstream();
    t.teardown(() => ws.close());
    const config = writeTempFile('gatehouse.yaml', configYaml({ server: '  host: 127.0.0.1\n  shutdownTimeout: 300ms\n' }));
    const child = await serveCli(config, { UPSTREAM: ws.url });
    t.teardown(() => child.child.kill('SIGKILL'));
    const client = await wsConnect(child.port, '/chat');
    t.teardown(() => client.socket.destroy());
    t.equal(client.status, 101);
    t.equal(await client.inbox.next(), 'hello /chat');
    const started = Date.now();
    let code: number | null | undefined = undefined;
    void child.stop().then((c) => (code = c));
    await until(() => code !== undefined, 5000, 'the process exited');
    t.equal(code, 0);
    t.ok(Date.now() - started < 3000, `exited ${Date.now() - started} ms after SIGTERM (shutdownTimeout 300ms)`);
    let clientClosed = false;
    void client.closed.then(() => (clientClosed = true));
    await until(() => clientClosed, 1000, 'the client socket is closed');
  });

  t.test('serve on a port already in use exits 1 with one line saying so, no stack trace', async (t) => {
    const taken = await new Promise<import('node:net').Server>((resolve) => {
      const server = createNetServer();
      server.listen(0, '127.0.0.1', () => resolve(server));
    });
    t.teardown(() => new Promise((resolve) => taken.close(resolve)));
    const port = (taken.address() as import('node:net').AddressInfo).port;
    const config = writeTempFile('gatehouse.yaml', configYaml().replace('server:\n  port: 0\n', `server:\n  port: ${port}\n  host: 127.0.0.1\n`));
    const run = await cli(['serve', '--config', config], { UPSTREAM: upstream.url });
    t.equal(run.code, 1);
    t.equal(run.stderr, `gatehouse: cannot listen on 127.0.0.1:${port}: the address is already in use\n`);
  });

  t.test('check exits 0 with a summary, 1 with every error as FILE:LINE:COL, 2 on a usage error', async (t) => {
    const bad = writeTempFile('bad.yaml', 'version: 1\nservr: {}\nupstreams:\n  default:\n    url: ftp://x\nroutes:\n  - name: a\n    match: { path: /a }\n    auth: none\n');
    const missing = `${good}.missing`;
    // In parallel: each run is a fresh node process.
    const [ok, invalid, unreadable, badOption, badCommand] = await Promise.all([
      cli(['check', '--config', good], { UPSTREAM: upstream.url }),
      cli(['check', '--config', bad]),
      cli(['check', '--config', missing]),
      cli(['check', '--bogus']),
      cli(['frobnicate']),
    ]);
    t.equal(ok.code, 0, ok.stderr);
    t.equal(ok.stderr, '');
    t.match(ok.stdout, /\ball\b/, 'the summary names the route');
    t.match(ok.stdout, /timeout \d+ms {2}connections 1024 \+ 1024 waiting/, 'the summary shows the upstream connection limits');
    t.equal(invalid.code, 1);
    t.equal(invalid.stdout, '');
    t.equal(
      invalid.stderr,
      `${bad}:5:10 upstreams.default.url: must be an http:// or https:// URL without query or credentials\n${bad}:2:1 servr: unknown key\n`,
    );
    t.equal(unreadable.code, 1);
    t.equal(unreadable.stderr, `${missing}:1:1 cannot read file (ENOENT)\n`);
    t.equal(badOption.code, 2);
    t.match(badOption.stderr, /^gatehouse: .*bogus/);
    t.equal(badCommand.code, 2);
    t.match(badCommand.stderr, /^gatehouse: unknown command frobnicate/);
  });
});
