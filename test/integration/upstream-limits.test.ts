// upstreams.NAME.maxConnections and maxPending: how many connections gatehouse opens to an upstream at most,
// how many requests wait for one, and what a request that finds both full, or waits too long, gets.
import t, { type Test } from 'tap';
import type { Socket } from 'node:net';
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { Readable } from 'node:stream';
import { request as undiciRequest } from 'undici';
import { reloadFrom } from '../../src/reload.js';
import { call, client, startGatehouse, startUpstream, type Running, type Upstream } from '../support/harness.js';
import { blackhole } from '../support/blackhole.js';
import { until } from '../support/until.js';

const yaml = (limits: string) => `version: 1
server:
  host: 127.0.0.1
  port: 0
admin:
  host: 127.0.0.1
  port: 0
upstreams:
  default:
    url: \${UPSTREAM}
    timeout: \${UPSTREAM_TIMEOUT:-5s}
    connectTimeout: 1s
${limits}
routes:
  - name: all
    match: { path: /** }
    auth: none
`;

/**
 * An upstream whose answers to /hold/... wait until the test releases them. It counts the connections it accepted,
 * the most it had open at once, and the most requests it was answering at once.
 */
async function heldUpstream(): Promise<{ upstream: Upstream; release(): void; held: number; accepted: number; peakConnections: number; peakRequests: number }> {
  const waiting: Array<() => void> = [];
  let open = 0;
  let answering = 0;
  const state = {
    upstream: null as unknown as Upstream,
    release: () => {
      for (const answer of waiting.splice(0)) answer();
    },
    get held() {
      return waiting.length;
    },
    accepted: 0,
    peakConnections: 0,
    peakRequests: 0,
  };
  state.upstream = await startUpstream((req, res) => {
    state.peakRequests = Math.max(state.peakRequests, ++answering);
    res.on('close', () => answering--);
    const answer = () => res.end(`answered ${req.url}`);
    if (req.url?.startsWith('/hold')) waiting.push(answer);
    else answer();
  });
  state.upstream.server.on('connection', (socket: Socket) => {
    state.accepted++;
    state.peakConnections = Math.max(state.peakConnections, ++open);
    socket.on('close', () => open--);
  });
  return state;
}

/** gatehouse with these upstream limits in front of a held upstream, both closed when the test ends. */
async function heldGateway(
  t: Test,
  limits: string,
  more: { config?: (yaml: string) => string; env?: Record<string, string>; options?: Parameters<typeof startGatehouse>[2] } = {},
): Promise<{ gw: Running; held: Awaited<ReturnType<typeof heldUpstream>> }> {
  const held = await heldUpstream();
  const gw = await startGatehouse((more.config ?? ((y) => y))(yaml(limits)), { UPSTREAM: held.upstream.url, ...more.env }, more.options);
  t.teardown(async () => {
    await gw.close();
    await held.upstream.close();
  });
  return { gw, held };
}

/** Requests forwarded and not settled, sent to the upstream or waiting in line, as gatehouse counts them. */
const active = (gw: Running) => {
  const { queue } = gw.gateway.plan.upstreams.get('default')!;
  return queue.active + queue.waiting;
};
/** The upstream gauges of /metrics: [active, waiting]. */
async function gauges(gw: Running): Promise<[number, number]> {
  const text = (await call(`${gw.adminUrl}/metrics`)).text;
  const read = (name: string) => Number(new RegExp(`^${name}\\{upstream="default"\\} (\\d+)$`, 'm').exec(text)?.[1]);
  return [read('gatehouse_upstream_requests_active'), read('gatehouse_upstream_requests_waiting')];
}
const logOf = (gw: Running, path: string) => gw.logs.find((l) => l.path === path && 'status' in l);

t.test('past maxConnections requests wait; past maxPending they get 503 upstream_busy at once; the counts come back', async (t) => {
  const { gw, held } = await heldGateway(t, '    maxConnections: 2\n    maxPending: 1');
  const first = [call(`${gw.url}/hold/1`), call(`${gw.url}/hold/2`)];
  await until(() => held.held === 2, 2_000, 'two requests at the upstream');
  const queued = call(`${gw.url}/hold/3`);
  await until(() => active(gw) === 3, 2_000, 'the third waits for a connection');
  const started = Date.now();
  const refused = await call(`${gw.url}/refused`);
  t.ok(Date.now() - started < 1_000, 'refused at once, not after a wait');
  t.equal(refused.status, 503);
  t.match(refused.json, { error: 'service_unavailable', message: /connection limit/, request_id: String });
  t.match(logOf(gw, '/refused'), { status: 503, reason: 'upstream_busy' });
  t.equal(held.upstream.requests.length, 2, 'the refused request never reached the upstream, nor did the queued one yet');
  t.equal(active(gw), 3, 'the refused request holds no place');
  t.same(await gauges(gw), [2, 1], '/metrics: two requests sent, one waiting for a connection');
  held.release();
  await until(() => held.held === 1, 2_000, 'the queued request reaches the upstream once a connection frees');
  held.release();
  const answers = await Promise.all([...first, queued]);
  t.same(
    answers.map((a) => a.status),
    [200, 200, 200],
  );
  t.equal(held.peakConnections, 2, 'never more than maxConnections connections to the upstream');
  // Every slot was given back: the same burst gets the same treatment again.
  const again = [call(`${gw.url}/hold/4`), call(`${gw.url}/hold/5`)];
  await until(() => held.held === 2, 2_000, 'two requests at the upstream again');
  const queuedAgain = call(`${gw.url}/hold/6`);
  await until(() => active(gw) === 3, 2_000, 'the third waits again');
  t.equal((await call(`${gw.url}/refused-again`)).status, 503, 'one past the queue is refused again');
  held.release();
  await until(() => held.held === 1, 2_000, 'the queued one reaches the upstream');
  held.release();
  t.same((await Promise.all([...again, queuedAgain])).map((a) => a.status), [200, 200, 200]);
  await until(() => active(gw) === 0, 2_000, 'nothing left counted once all are answered');
  t.same(await gauges(gw), [0, 0], '/metrics: nothing active or waiting');
});

t.test('maxPending 0: every connection busy means 503 at once, and a free one means the request goes', async (t) => {
  const { gw, held } = await heldGateway(t, '    maxConnections: 1\n    maxPending: 0');
  for (let round = 0; round < 3; round++) {
    const busy = call(`${gw.url}/hold/${round}`);
    await until(() => held.held === 1, 2_000, 'the one connection is busy');
    t.equal((await call(`${gw.url}/other/${round}`)).status, 503, `round ${round}: refused while the one connection is busy`);
    held.release();
    t.equal((await busy).status, 200);
    t.equal((await call(`${gw.url}/free/${round}`)).status, 200, `round ${round}: forwarded once it is free`);
  }
  t.equal(active(gw), 0);
});

t.test('a request that waits for a connection past `timeout` gets 504 and never reaches the upstream', async (t) => {
  // The answer's head comes at once and its body only when released: the connection stays busy with no timeout running.
  const waiting: Array<() => void> = [];
  const upstream = await startUpstream((req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('head ');
    if (req.url === '/stream') waiting.push(() => res.end('tail'));
    else res.end('quick');
  });
  const gw = await startGatehouse(yaml('    maxConnections: 1\n    maxPending: 4'), { UPSTREAM: upstream.url, UPSTREAM_TIMEOUT: '300ms' });
  t.teardown(async () => {
    await gw.close();
    await upstream.close();
  });
  const streaming = call(`${gw.url}/stream`);
  await until(() => waiting.length === 1, 2_000, 'the first request holds the connection');
  const started = Date.now();
  const queued = await call(`${gw.url}/queued`);
  const took = Date.now() - started;
  t.equal(queued.status, 504);
  t.match(queued.json, { error: 'gateway_timeout', message: /no connection to the upstream was free in time/ });
  t.ok(took >= 280 && took < 1_500, `answered after ${took} ms (timeout 300ms)`);
  t.match(logOf(gw, '/queued'), { status: 504, reason: 'upstream_timeout' });
  waiting[0]();
  t.equal((await streaming).text, 'head tail');
  // The given-up request is dropped when its turn comes: the upstream never sees it, and the next one goes through.
  t.equal((await call(`${gw.url}/after`)).text, 'head quick');
  t.same(
    upstream.requests.map((r) => r.url),
    ['/stream', '/after'],
  );
  t.equal(active(gw), 0, 'the given-up request released its place');
});

t.test('`timeout` bounds the wait for a connection; once sent, a request gets the whole `timeout` and an upload is not cut', async (t) => {
  // Each answer takes 250 ms: the second request waits about 250 ms for the connection, then 250 ms for its answer.
  const upstream = await startUpstream((_req, res) => {
    setTimeout(() => res.end('answered'), 250);
  });
  const gw = await startGatehouse(yaml('    maxConnections: 1'), { UPSTREAM: upstream.url, UPSTREAM_TIMEOUT: '400ms' });
  t.teardown(async () => {
    await gw.close();
    await upstream.close();
  });
  const first = call(`${gw.url}/first`);
  await until(() => active(gw) === 1, 2_000, 'the first request holds the connection');
  t.same(
    (await Promise.all([first, call(`${gw.url}/second`)])).map((a) => a.status),
    [200, 200],
    'the second waited less than timeout for the connection and was answered within timeout of being sent',
  );
  // An upload that takes longer than timeout, sent by a request that waited for its connection: the upstream's
  // answer comes when the body is in (the upstream harness reads it all first), and nothing cuts it short.
  const busy = call(`${gw.url}/busy`);
  await until(() => active(gw) === 1, 2_000, 'the connection is busy again');
  const slowBody = Readable.from(
    (async function* () {
      for (let i = 0; i < 6; i++) {
        yield Buffer.alloc(100, 120);
        await new Promise((r) => setTimeout(r, 100));
      }
    })(),
  );
  const upload = await undiciRequest(`${gw.url}/upload`, { method: 'POST', body: slowBody, dispatcher: client });
  t.equal(upload.statusCode, 200, 'a 600 ms upload after a wait for the connection, timeout 400ms: answered');
  t.equal(await upload.body.text(), 'answered');
  t.equal((await busy).status, 200);
  t.equal(upstream.requests.find((r) => r.url === '/upload')?.body.length, 600, 'the whole body reached the upstream');
});

t.test('a client that leaves while its request waits for a connection is logged 499 at once and never forwarded', async (t) => {
  const { gw, held } = await heldGateway(t, '    maxConnections: 1');
  const busy = call(`${gw.url}/hold/busy`);
  await until(() => held.held === 1, 2_000, 'the connection is busy');
  const socket = connect(gw.port, '127.0.0.1');
  socket.on('error', () => {});
  socket.write('GET /gone HTTP/1.1\r\nHost: x\r\n\r\n');
  await until(() => active(gw) === 2, 2_000, 'the second request waits for the connection');
  socket.destroy();
  await until(() => logOf(gw, '/gone') !== undefined, 2_000, 'logged while the first request still holds the connection');
  t.match(logOf(gw, '/gone'), { status: 499, reason: 'client_closed' });
  t.equal(held.held, 1, 'the first request is still held');
  held.release();
  t.equal((await busy).status, 200);
  t.equal((await call(`${gw.url}/next`)).status, 200);
  t.same(
    held.upstream.requests.map((r) => r.url),
    ['/hold/busy', '/next'],
  );
  t.equal(active(gw), 0);
});

t.test('a reload that changes the limits keeps the count: requests still running on the old pool count against the new limit', async (t) => {
  const { gw, held } = await heldGateway(t, '    maxConnections: 2\n    maxPending: 1');
  const old = [call(`${gw.url}/hold/old-1`), call(`${gw.url}/hold/old-2`)];
  await until(() => held.held === 2, 2_000, 'the old pool holds two connections');
  // Literal values: reloadFrom expands ${VAR} from process.env, not from the harness's env.
  const reload = (limits: string) => {
    writeFileSync(gw.configPath, yaml(limits).replace('${UPSTREAM}', held.upstream.url).replace('${UPSTREAM_TIMEOUT:-5s}', '5s'));
    t.equal(reloadFrom(gw.gateway, gw.configPath), 'ok');
  };
  reload('    maxConnections: 1\n    maxPending: 1');
  const lowered = call(`${gw.url}/hold/new`);
  await until(() => active(gw) === 3, 2_000, 'the new request waits: two of the old pool still run, the new limit is one');
  t.same(await gauges(gw), [2, 1], '/metrics: the two old requests, one waiting');
  t.equal((await call(`${gw.url}/refused`)).status, 503, 'and the line (1) is full');
  held.release();
  t.same((await Promise.all(old)).map((a) => a.status), [200, 200]);
  await until(() => held.held === 1, 2_000, 'sent once both old requests are done');
  t.equal(held.peakRequests, 2, 'the upstream never had more than the larger limit at once');
  reload('    maxConnections: 3\n    maxPending: 0');
  const raised = [call(`${gw.url}/hold/raised-1`), call(`${gw.url}/hold/raised-2`)];
  await until(() => held.held === 3, 2_000, 'a raised limit lets two more go next to the one running');
  t.equal((await call(`${gw.url}/refused-again`)).status, 503, 'three running, no line');
  held.release();
  t.same((await Promise.all([lowered, ...raised])).map((a) => a.status), [200, 200, 200]);
  t.equal(held.peakRequests, 3);
  await until(async () => (await gauges(gw))[0] === 0, 2_000, 'nothing active once all are answered');
});

t.test('a request given up in line costs no upstream connection: the next request reuses the kept-alive one', async (t) => {
  const { gw, held } = await heldGateway(t, '    maxConnections: 1\n    maxPending: 10');
  const busy = call(`${gw.url}/hold/busy`);
  await until(() => held.held === 1, 2_000, 'the connection is busy');
  const clients = Array.from({ length: 5 }, (_, i) => {
    const socket = connect(gw.port, '127.0.0.1');
    socket.on('error', () => {});
    socket.write(`GET /gone/${i} HTTP/1.1\r\nHost: x\r\n\r\n`);
    return socket;
  });
  await until(() => active(gw) === 6, 2_000, 'five requests wait in line');
  for (const socket of clients) socket.destroy();
  await until(() => active(gw) === 1, 2_000, 'the five left the line as their clients left');
  held.release();
  t.equal((await busy).status, 200);
  t.equal((await call(`${gw.url}/next`)).status, 200);
  t.equal(held.accepted, 1, 'one upstream connection in all: none opened for the requests given up');
  t.same(
    held.upstream.requests.map((r) => r.url),
    ['/hold/busy', '/next'],
  );
});

t.test('Expect: 100-continue waiting in line is invited to upload only when its request is sent', async (t) => {
  const { gw, held } = await heldGateway(t, '    maxConnections: 1');
  const busy = call(`${gw.url}/hold/busy`);
  await until(() => held.held === 1, 2_000, 'the connection is busy');
  const socket = connect(gw.port, '127.0.0.1');
  t.teardown(() => socket.destroy());
  let received = '';
  socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
  socket.write('POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n');
  await until(() => active(gw) === 2, 2_000, 'the upload waits in line');
  // A negative can only be waited for: had 100 Continue gone out on arrival, 100 ms is ample for it to arrive.
  await delay(100);
  t.equal(received, '', 'no 100 Continue while waiting');
  held.release();
  await until(() => received.startsWith('HTTP/1.1 100 Continue\r\n\r\n'), 2_000, 'invited once the request is sent');
  socket.write('hello');
  await until(() => /HTTP\/1\.1 200 /.test(received.slice(25)), 2_000, 'answered');
  t.equal((await busy).status, 200);
  t.equal(held.upstream.requests.find((r) => r.url === '/upload')?.body.toString(), 'hello');
});

t.test('timeout 0 (no timeout): a request waits in line as long as it takes, and still leaves it when its client does', async (t) => {
  const { gw, held } = await heldGateway(t, '    maxConnections: 1', { env: { UPSTREAM_TIMEOUT: '0' } });
  const busy = call(`${gw.url}/hold/busy`);
  await until(() => held.held === 1, 2_000, 'the connection is busy');
  const waiting = call(`${gw.url}/waits`);
  const socket = connect(gw.port, '127.0.0.1');
  socket.on('error', () => {});
  socket.write('GET /gone HTTP/1.1\r\nHost: x\r\n\r\n');
  await until(() => active(gw) === 3, 2_000, 'two requests wait in line');
  socket.destroy();
  await until(() => logOf(gw, '/gone') !== undefined, 2_000, 'the one whose client left is logged');
  t.match(logOf(gw, '/gone'), { status: 499, reason: 'client_closed' });
  await delay(100);
  t.equal(active(gw), 2, 'the other still waits: not given up at once for a timeout of 0');
  held.release();
  t.same((await Promise.all([busy, waiting])).map((a) => a.status), [200, 200]);
  t.same(
    held.upstream.requests.map((r) => r.url),
    ['/hold/busy', '/waits'],
  );
});

t.test('a request node answers 408 while it waits in line is given up: never sent, one access line', async (t) => {
  const { gw, held } = await heldGateway(t, '    maxConnections: 1', { config: (y) => y.replace('  port: 0\nadmin', '  port: 0\n  requestTimeout: 600ms\nadmin') });
  const busy = call(`${gw.url}/hold/busy`);
  await until(() => held.held === 1, 2_000, 'the connection is busy');
  // allowHalfOpen: the client keeps its side open after the 408 (as one still uploading would), so no 'close'
  // tells gatehouse to give the request up.
  const socket = connect({ port: gw.port, host: '127.0.0.1', allowHalfOpen: true });
  t.teardown(() => socket.destroy());
  let received = '';
  socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
  socket.on('error', () => {});
  // Half the body now, the rest never: the request waits in line, unread, until node's requestTimeout.
  socket.write('POST /slow-upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello');
  await until(() => received.startsWith('HTTP/1.1 408 '), 3_000, 'node answers 408');
  await until(() => logOf(gw, '/slow-upload') !== undefined, 2_000, 'logged');
  t.match(logOf(gw, '/slow-upload'), { status: 408, reason: 'request_timeout' });
  t.equal(active(gw), 1, 'it left the line');
  held.release();
  t.equal((await busy).status, 200);
  t.equal((await call(`${gw.url}/after`)).status, 200);
  t.same(
    held.upstream.requests.map((r) => r.url),
    ['/hold/busy', '/after'],
    'the request answered 408 never reached the upstream',
  );
  t.equal(gw.logs.filter((l) => l.path === '/slow-upload' && 'status' in l).length, 1);
});

t.test('a client that half-closes in the middle of its body gets one answer and one access line, and the upstream request ends', async (t) => {
  const { gw, held } = await heldGateway(t, '');
  const socket = connect(gw.port, '127.0.0.1');
  t.teardown(() => socket.destroy());
  socket.on('error', () => {});
  let received = '';
  socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
  socket.write('POST /hold/cut HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhel');
  await until(() => held.upstream.requests.length === 1, 2_000, 'forwarded while its body streams');
  socket.end();
  await until(() => gw.logs.some((l) => 'status' in l), 2_000, 'logged');
  await until(() => active(gw) === 0, 2_000, 'the upstream request ended');
  const lines = gw.logs.filter((l) => 'status' in l);
  t.equal(lines.length, 1, 'one access line');
  t.match(lines[0], { path: '/hold/cut', status: 400, reason: 'unparsable_request' });
  t.match(received, /^HTTP\/1\.1 400 /, 'answered 400 on the half-open connection');
});

t.test('shutdown does not wait a connectTimeout for a connect in progress, and logs its request', async (t) => {
  const hole = await blackhole();
  t.teardown(() => hole.close());
  const gw = await startGatehouse(yaml('').replace('  port: 0\nadmin', '  port: 0\n  shutdownTimeout: 200ms\nadmin').replace('connectTimeout: 1s', 'connectTimeout: 20s'), {
    UPSTREAM: `http://127.0.0.1:${hole.port}`,
  });
  const pending = call(`${gw.url}/connecting`).catch((err: Error) => err);
  await until(() => active(gw) === 1, 2_000, 'the request is connecting');
  const started = Date.now();
  await gw.close();
  const took = Date.now() - started;
  t.ok(took < 5_000, `closed in ${took} ms (shutdownTimeout 200ms, connectTimeout 20s)`);
  t.ok((await pending) instanceof Error, 'the client was cut off');
  t.match(logOf(gw, '/connecting'), { status: 499, reason: 'client_closed' });
});

t.test('a request whose client leaves, or that node answers 408, while it is being authenticated is never sent', async (t) => {
  const { JwksServer, makeKey, newClock, sign } = await import('../support/jwt-fixtures.js');
  const clock = newClock();
  const [known, later, third] = await Promise.all([makeKey('ES256', 'known'), makeKey('ES256', 'later'), makeKey('ES256', 'third')]);
  const jwks = await JwksServer.start([known.jwk]);
  t.teardown(() => jwks.close());
  const auth = `auth:
  jwt:
    providers:
      - { name: sso, issuer: "https://auth.example.com/", audience: [api], algorithms: [ES256], jwksUrl: "${jwks.url}", claims: { tenant: org_id } }
routes:`;
  const { gw, held } = await heldGateway(t, '', {
    config: (y) => y.replace('routes:', auth).replace('auth: none', 'auth: any').replace('  port: 0\nadmin', '  port: 0\n  requestTimeout: 600ms\nadmin'),
    options: { clock },
  });
  t.equal((await call(`${gw.url}/warm`, { headers: { authorization: `Bearer ${await sign(known, clock)}` } })).status, 200);
  t.equal(held.accepted, 1);
  // A token of a key the IdP just published: verifying it waits for the JWKS, which the test holds.
  jwks.publish([known.jwk, later.jwk]);
  clock.advance(60_000); // past the unknown-kid cooldown
  jwks.mode = 'slow';
  const before = jwks.requests;
  const socket = connect(gw.port, '127.0.0.1');
  socket.on('error', () => {});
  socket.write(`GET /left HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${await sign(later, clock)}\r\n\r\n`);
  await until(() => jwks.requests > before, 2_000, 'the JWKS is being fetched');
  socket.destroy();
  await delay(50);
  jwks.release();
  jwks.mode = 'ok';
  await until(() => logOf(gw, '/left') !== undefined, 2_000, 'logged');
  t.match(logOf(gw, '/left'), { status: 499, reason: 'client_closed' });
  t.equal((await call(`${gw.url}/next`, { headers: { authorization: `Bearer ${await sign(known, clock)}` } })).status, 200);
  t.equal(held.accepted, 1, 'the kept-alive connection was neither spent on it nor destroyed');
  t.same(
    held.upstream.requests.map((r) => r.url),
    ['/warm', '/next'],
  );
  // The same wait with a body that stops coming: node answers 408 while the request is still being authenticated.
  jwks.publish([known.jwk, later.jwk, third.jwk]);
  clock.advance(60_000);
  jwks.mode = 'slow';
  const again = jwks.requests;
  const slow = connect({ port: gw.port, host: '127.0.0.1', allowHalfOpen: true });
  t.teardown(() => slow.destroy());
  slow.on('error', () => {});
  let received = '';
  slow.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
  slow.write(`POST /slow-body HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nAuthorization: Bearer ${await sign(third, clock)}\r\n\r\nhello`);
  await until(() => jwks.requests > again, 2_000, 'the JWKS is being fetched again');
  await until(() => received.startsWith('HTTP/1.1 408 '), 3_000, 'node answers 408');
  jwks.release();
  jwks.mode = 'ok';
  await until(() => logOf(gw, '/slow-body') !== undefined, 2_000, 'logged');
  t.match(logOf(gw, '/slow-body'), { status: 408, reason: 'request_timeout' });
  t.equal((await call(`${gw.url}/last`, { headers: { authorization: `Bearer ${await sign(known, clock)}` } })).status, 200);
  t.same(
    held.upstream.requests.map((r) => r.url),
    ['/warm', '/next', '/last'],
    'the request answered 408 never reached the upstream',
  );
  t.equal(gw.logs.filter((l) => l.path === '/slow-body' && 'status' in l).length, 1);
});

t.test('an upstream dropped by a reload and brought back by the next keeps its count', async (t) => {
  const { gw, held } = await heldGateway(t, '    maxConnections: 1\n    maxPending: 1');
  const old = call(`${gw.url}/hold/old`);
  await until(() => held.held === 1, 2_000, 'the first plan holds the connection');
  const literal = (text: string) => text.replace('${UPSTREAM}', held.upstream.url).replace('${UPSTREAM_TIMEOUT:-5s}', '5s');
  const other = literal(yaml('    maxConnections: 1\n    maxPending: 1')).replace('  default:', '  other:').replace('auth: none', 'auth: none\n    upstream: other');
  writeFileSync(gw.configPath, other);
  t.equal(reloadFrom(gw.gateway, gw.configPath), 'ok');
  writeFileSync(gw.configPath, literal(yaml('    maxConnections: 1\n    maxPending: 1')));
  t.equal(reloadFrom(gw.gateway, gw.configPath), 'ok');
  const back = call(`${gw.url}/hold/back`);
  await until(async () => (await gauges(gw))[1] === 1, 2_000, 'the request waits: the first plan still runs one');
  t.same(await gauges(gw), [1, 1]);
  t.equal(held.peakRequests, 1);
  held.release();
  await until(() => held.held === 1, 2_000, 'sent once the old one is done');
  held.release();
  t.same((await Promise.all([old, back])).map((a) => a.status), [200, 200]);
  t.equal(held.peakRequests, 1, 'never two at once');
});

t.test('shutdown logs a request that was sent from the line and is still connecting when shutdownTimeout ends', async (t) => {
  const hole = await blackhole();
  t.teardown(() => hole.close());
  // A's connect times out (undici fires a 400 ms connect timeout after about a second) and B, waiting behind it, is
  // sent; at 1.5 s the drain ends with B still connecting.
  const gw = await startGatehouse(
    yaml('    maxConnections: 1').replace('  port: 0\nadmin', '  port: 0\n  shutdownTimeout: 1500ms\nadmin').replace('connectTimeout: 1s', 'connectTimeout: 400ms'),
    { UPSTREAM: `http://127.0.0.1:${hole.port}` },
  );
  const a = call(`${gw.url}/a`);
  await until(() => active(gw) === 1, 2_000, 'A is connecting');
  const b = call(`${gw.url}/b`).catch((err: Error) => err);
  await until(() => active(gw) === 2, 2_000, 'B waits behind it');
  await gw.close();
  t.equal((await a).status, 504, 'A: the connect timed out');
  t.ok((await b) instanceof Error, 'B: cut off');
  t.match(logOf(gw, '/a'), { status: 504 });
  t.match(logOf(gw, '/b'), { status: 499, reason: 'client_closed' }, 'B has its access line');
});

t.test('an upstream a reload drops leaves /metrics once it has nothing running', async (t) => {
  const { gw, held } = await heldGateway(t, '    maxConnections: 1');
  const literal = (text: string) => text.replace('${UPSTREAM}', held.upstream.url).replace('${UPSTREAM_TIMEOUT:-5s}', '5s');
  const withExtra = literal(yaml('    maxConnections: 1')).replace('upstreams:\n', `upstreams:\n  extra:\n    url: ${held.upstream.url}\n`);
  writeFileSync(gw.configPath, withExtra);
  t.equal(reloadFrom(gw.gateway, gw.configPath), 'ok');
  const names = async () => [...(await call(`${gw.adminUrl}/metrics`)).text.matchAll(/^gatehouse_upstream_requests_active\{upstream="([^"]+)"\}/gm)].map((m) => m[1]).sort();
  t.same(await names(), ['default', 'extra']);
  writeFileSync(gw.configPath, literal(yaml('    maxConnections: 1')));
  t.equal(reloadFrom(gw.gateway, gw.configPath), 'ok');
  t.same(await names(), ['default'], 'extra is gone');
  t.same([...gw.gateway.plan.runtime.upstreamQueues.keys()], ['default'], 'and so is its line');
});
