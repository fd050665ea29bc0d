// The proxy end to end over real sockets: what reaches the upstream, what comes back, and how failures look.
import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { createServer as createNetServer, connect, type Server as NetServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { request as undiciRequest } from 'undici';
import { call, client, configYaml, raw, rawStatus, startGatehouse, startUpstream, type Answer, type Running, type Upstream } from '../support/harness.js';
import { until } from '../support/until.js';

const API_KEY = 'gh_test_4f1c2b9e7d6a5e3f8a0b1c2d3e4f5a6b';
const API_KEY_HASH = createHash('sha256').update(API_KEY).digest('hex');
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

const AUTH = `  apiKeys:
    keys:
      - id: ci
        hash: sha256:${API_KEY_HASH}
        tenant: acme
        subject: svc-ci
        role: admin
        scopes: [reports:read, reports:write]
`;
const ROUTES = `  - name: open
    match: { path: /open/** }
    auth: none
  - name: api
    match: { path: /api/** }
    auth: any
`;

/** Upstream answers chosen by path, so one upstream serves every test of this file. */
const behaviours: Record<string, Parameters<typeof startUpstream>[0]> = {
  '/open/slow': (_req, res) => {
    setTimeout(() => res.end('slow'), 150);
  },
  '/open/hang': () => {
    // never answers
  },
  '/open/reset': (req) => {
    req.socket.resetAndDestroy();
  },
  '/open/status': (_req, res) => {
    res.writeHead(201, { 'content-type': 'text/plain', 'x-upstream': 'yes', 'set-cookie': ['a=1', 'b=2'] });
    res.end('created');
  },
  '/open/hop': (_req, res) => {
    res.writeHead(200, {
      connection: 'x-secret-hop',
      'keep-alive': 'timeout=99, max=7',
      'x-secret-hop': 'must not pass',
      'proxy-connection': 'keep-alive',
      'proxy-authenticate': 'Basic realm="upstream"',
      upgrade: 'h2c',
      'x-end-to-end': 'kept',
    });
    res.end('hop');
  },
};

let upstream: Upstream;
let gw: Running;
t.before(async () => {
  upstream = await startUpstream((req, res, recorded) => {
    const behave = behaviours[(req.url ?? '').split('?')[0]];
    if (behave) return behave(req, res, recorded);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ method: recorded.method, url: recorded.url, headers: recorded.headers, body: recorded.body.toString('latin1') }));
  });
  gw = await startGatehouse(configYaml({ auth: AUTH, routes: ROUTES, server: '  headersTimeout: 500ms\n' }), { UPSTREAM: upstream.url, UPSTREAM_TIMEOUT: '300ms' });
});
t.teardown(async () => {
  await gw.close();
  await upstream.close();
});

/** The last request the upstream saw. */
const last = () => upstream.requests[upstream.requests.length - 1];
const accessLog = (requestId: string) => gw.logs.find((l) => l.request_id === requestId && 'status' in l);

function assertErrorBody(t: Test, answer: Answer, status: number, error: string): void {
  t.equal(answer.status, status, `status ${status}`);
  t.match(answer.headers['content-type'], /^application\/json/);
  t.strictSame(Object.keys(answer.json ?? {}), ['error', 'message', 'status', 'request_id']);
  t.equal(answer.json.error, error);
  t.equal(answer.json.status, status);
  t.type(answer.json.message, 'string');
  t.equal(answer.json.request_id, answer.headers['x-request-id']);
}

t.test('method, path, query and body reach the upstream unchanged', async (t) => {
  const cases: [method: string, path: string, body: string | undefined][] = [
    ['GET', '/open/items?x=1&y=%20z&x=2&empty=&flag', undefined],
    ['POST', '/open/items?a=b', '{"name":"widget","n":1}'],
    ['PUT', '/open/items/7', 'line1\nline2\r\n\u00e9'],
    ['PATCH', '/open/items/7?q=%2e%2e%2f', 'x'],
    ['DELETE', '/open/items/7', undefined],
    ['OPTIONS', '/open/', undefined],
    ['GET', '/open/a%20b/%C3%A9?redirect=http%3A%2F%2Fx%2F..%2F', undefined],
  ];
  for (const [method, path, body] of cases) {
    const before = upstream.requests.length;
    const answer = await call(gw.url + path, { method, body, headers: body ? { 'content-type': 'text/plain' } : {} });
    t.equal(answer.status, 200, `${method} ${path}`);
    t.equal(upstream.requests.length, before + 1, 'one upstream request');
    t.equal(last().method, method);
    t.equal(last().url, path);
    t.equal(last().body.toString('utf8'), body ?? '', `${method} body`);
    if (body) t.equal(last().headers['content-type'], 'text/plain');
  }
});

t.test('the upstream answer passes through: status, headers, repeated headers, body', async (t) => {
  const answer = await call(`${gw.url}/open/status`);
  t.equal(answer.status, 201);
  t.equal(answer.text, 'created');
  t.equal(answer.headers['x-upstream'], 'yes');
  t.strictSame(answer.headers['set-cookie'], ['a=1', 'b=2']);
  t.equal(answer.headers['content-type'], 'text/plain');
});

t.test("gatehouse's own answer headers replace the upstream's of the same name, and only those", async (t) => {
  const own = await startUpstream((_req, res) => {
    res.writeHead(200, {
      'x-request-id': 'from-the-upstream',
      'x-ratelimit-limit': '999',
      ratelimit: '"upstream";r=1;t=1',
      constructor: 'kept',
      'x-other': 'kept too',
    });
    res.end('own');
  });
  const limited = await startGatehouse(
    configYaml({
      auth: AUTH,
      rateLimit: '  policies:\n    p: { limit: 100, window: 1m, by: tenant }',
      routes: '  - name: api\n    match: { path: /api/** }\n    auth: any\n    rateLimit: [p]',
    }),
    { UPSTREAM: own.url },
  );
  t.teardown(async () => {
    await limited.close();
    await own.close();
  });
  const answer = await call(`${limited.url}/api/x`, { headers: { 'x-api-key': API_KEY } });
  t.equal(answer.status, 200);
  t.match(answer.headers['x-request-id'], UUID, "one X-Request-Id, gatehouse's");
  t.equal(answer.headers['x-ratelimit-limit'], '100', "gatehouse's limit, not the upstream's");
  t.equal(answer.headers.ratelimit, '"p";r=99;t=1');
  t.equal(answer.headers.constructor, 'kept', 'a header named like an Object.prototype member passes');
  t.equal(answer.headers['x-other'], 'kept too');
});

t.test('hop-by-hop response headers of the upstream are removed', async (t) => {
  const answer = await call(`${gw.url}/open/hop`);
  t.equal(answer.status, 200);
  t.equal(answer.text, 'hop');
  t.equal(answer.headers['x-end-to-end'], 'kept');
  t.equal(answer.headers['x-secret-hop'], undefined, 'a header named in Connection');
  t.equal(answer.headers['proxy-connection'], undefined);
  t.equal(answer.headers['proxy-authenticate'], undefined);
  t.equal(answer.headers['upgrade'], undefined);
  t.not(answer.headers['keep-alive'], 'timeout=99, max=7', "the upstream's Keep-Alive");
  t.not(answer.headers['connection'], 'x-secret-hop', "the upstream's Connection");
});

t.test('the upstream base path prefixes every forwarded path', async (t) => {
  const based = await startGatehouse(configYaml(), { UPSTREAM: `${upstream.url}/base/v2/` });
  t.teardown(() => based.close());
  for (const [path, expected] of [
    ['/open/x?q=1', '/base/v2/open/x?q=1'],
    ['/', '/base/v2/'],
    ['/a/', '/base/v2/a/'],
  ]) {
    const answer = await call(based.url + path);
    t.equal(answer.json?.url, expected, path);
  }
});

/** A body of `totalBytes` made on demand in 64 KiB chunks that differ, so a lost or repeated chunk changes the checksum. */
function generated(totalBytes: number): Readable & { produced: () => number } {
  const block = Buffer.alloc(64 * 1024);
  for (let i = 0; i < block.length; i++) block[i] = (i * 131 + 7) & 0xff;
  let sent = 0;
  let n = 0;
  const stream = new Readable({
    read() {
      if (sent >= totalBytes) return this.push(null);
      const chunk = Buffer.from(block.subarray(0, Math.min(block.length, totalBytes - sent)));
      chunk.writeUInt32BE(n++, 0);
      sent += chunk.length;
      this.push(chunk);
    },
  });
  return Object.assign(stream, { produced: () => sent });
}

t.test('a 50 MiB body streams both ways with backpressure, never held whole', async (t) => {
  const SIZE = 50 * 1024 * 1024;
  /** A reader that waits this long before reading: without backpressure the whole body would pile up meanwhile. */
  const STALL_MS = 300;
  const expected = await new Promise<string>((resolve) => {
    const h = createHash('sha256');
    generated(SIZE).on('data', (c: Buffer) => h.update(c)).on('end', () => resolve(h.digest('hex')));
  });
  const upload = generated(SIZE);
  let download: ReturnType<typeof generated> | null = null;
  /** Most bytes produced by one end and not yet consumed by the other, per direction. */
  const inFlight = { up: 0, down: 0 };
  // The upstream stalls, then hashes the request as it arrives, then streams a generated body of the same size back.
  const big = await startUpstream(
    (req, res) => {
      const h = createHash('sha256');
      let bytes = 0;
      setTimeout(() => {
        req.on('data', (c: Buffer) => {
          bytes += c.length;
          inFlight.up = Math.max(inFlight.up, upload.produced() - bytes);
          h.update(c);
        });
      }, STALL_MS);
      req.on('end', () => {
        res.writeHead(200, { 'x-received-sha256': h.digest('hex'), 'x-received-bytes': String(bytes), 'content-type': 'application/octet-stream' });
        download = generated(SIZE);
        download.pipe(res);
      });
    },
    { buffer: false },
  );
  const gateway = await startGatehouse(configYaml(), { UPSTREAM: big.url });
  t.teardown(async () => {
    await gateway.close();
    await big.close();
  });
  const rssBefore = process.memoryUsage().rss;
  let rssPeak = rssBefore;
  const sample = setInterval(() => (rssPeak = Math.max(rssPeak, process.memoryUsage().rss)), 10);
  try {
    const res = await undiciRequest(`${gateway.url}/upload`, { method: 'PUT', body: upload, dispatcher: client });
    t.equal(res.statusCode, 200);
    t.equal(res.headers['x-received-bytes'], String(SIZE));
    t.equal(res.headers['x-received-sha256'], expected, 'the upstream got every byte, in order');
    await new Promise((resolve) => setTimeout(resolve, STALL_MS));
    const h = createHash('sha256');
    let bytes = 0;
    for await (const chunk of res.body) {
      bytes += chunk.length;
      inFlight.down = Math.max(inFlight.down, download!.produced() - bytes);
      h.update(chunk);
    }
    t.equal(bytes, SIZE);
    t.equal(h.digest('hex'), expected, 'the client got every byte, in order');
  } finally {
    clearInterval(sample);
  }
  const mib = (bytes: number) => (bytes / 1024 / 1024).toFixed(1);
  // Socket buffers of three loopback connections hold a few MiB; a proxy that ignored backpressure would hold ~50.
  t.ok(inFlight.up < 20 * 1024 * 1024, `at most ${mib(inFlight.up)} MiB of the request was in flight`);
  t.ok(inFlight.down < 20 * 1024 * 1024, `at most ${mib(inFlight.down)} MiB of the response was in flight`);
  t.ok(rssPeak - rssBefore < 30 * 1024 * 1024, `RSS grew by ${mib(rssPeak - rssBefore)} MiB while 2 x 50 MiB went through`);
});

t.test('502 bad_gateway when the upstream port is closed', async (t) => {
  const port = await new Promise<number>((resolve) => {
    const s = createNetServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  const dead = await startGatehouse(configYaml(), { UPSTREAM: `http://127.0.0.1:${port}` });
  t.teardown(() => dead.close());
  const answer = await call(`${dead.url}/x`);
  assertErrorBody(t, answer, 502, 'bad_gateway');
  t.match(dead.logs.find((l) => l.request_id === answer.json.request_id), { status: 502, reason: 'upstream_error:ECONNREFUSED' });
});

t.test('502 bad_gateway when the upstream resets the connection', async (t) => {
  const answer = await call(`${gw.url}/open/reset`);
  assertErrorBody(t, answer, 502, 'bad_gateway');
});

/** gatehouse in front of a raw TCP upstream that answers every request with `answer` on its socket. */
async function inFrontOfRaw(t: Test, answer: (socket: Socket) => void): Promise<Running> {
  const upstream: NetServer = createNetServer((socket) => socket.once('data', () => answer(socket)));
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  const running = await startGatehouse(configYaml(), { UPSTREAM: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}` });
  t.teardown(async () => {
    await running.close();
    await new Promise((resolve) => upstream.close(resolve));
  });
  return running;
}

t.test('502 bad_gateway when the upstream answers garbage', async (t) => {
  const bad = await inFrontOfRaw(t, (socket) => socket.end('SMTP ready, not HTTP at all\r\n\r\n'));
  assertErrorBody(t, await call(`${bad.url}/x`), 502, 'bad_gateway');
});

t.test('502 bad_gateway when an upstream header holds a control character; the process keeps serving', async (t) => {
  const bad = await inFrontOfRaw(t, (socket) => socket.end('HTTP/1.1 200 OK\r\nX-Odd: a\x01b\r\nContent-Length: 2\r\n\r\nok'));
  for (let i = 0; i < 3; i++) {
    const answer = await call(`${bad.url}/x`);
    assertErrorBody(t, answer, 502, 'bad_gateway');
    t.match(bad.logs.find((l) => l.request_id === answer.json.request_id), { status: 502, reason: /^upstream_error:/ });
  }
});

t.test('an upstream that fails after its head but before any body byte still gets the client a 502', async (t) => {
  const answers = [
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nnot a chunk size\r\n',
    'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n',
  ];
  for (const [i, text] of answers.entries()) {
    const bad = await inFrontOfRaw(t, (socket) => {
      socket.write(text);
      setTimeout(() => socket.destroy(), 20);
    });
    const answer = await call(`${bad.url}/x`);
    assertErrorBody(t, answer, 502, 'bad_gateway');
    t.match(bad.logs.find((l) => l.request_id === answer.json.request_id), { status: 502, reason: /^upstream_error:/ }, `case ${i}: logged as what the client got`);
  }
});

t.test('an upstream that dies mid-body cuts the client connection; the log says upstream_aborted', async (t) => {
  const cut = await inFrontOfRaw(t, (socket) => {
    socket.write('HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\npartial body');
    setTimeout(() => socket.destroy(), 20);
  });
  const res = await undiciRequest(`${cut.url}/x`, { dispatcher: client });
  t.equal(res.statusCode, 200, 'the head had gone out');
  await t.rejects(res.body.text(), 'the body ends in a cut connection, not a short 200');
  const id = res.headers['x-request-id'] as string;
  await until(() => cut.logs.some((l) => l.request_id === id), 2_000, 'the access line is written');
  t.match(cut.logs.find((l) => l.request_id === id), { status: 200, reason: 'upstream_aborted' });
  const again = await undiciRequest(`${cut.url}/y`, { dispatcher: client });
  t.equal(again.statusCode, 200, 'the next request is handled the same way');
  await t.rejects(again.body.text());
});

/** Sends `count` GETs one after another on one kept-alive connection; resolves with each answer's head. */
function headsOnOneConnection(port: number, count: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const heads: string[] = [];
    let buffered = '';
    const ask = () => socket.write(`GET /x/${heads.length} HTTP/1.1\r\nHost: gatehouse.test\r\n\r\n`);
    socket.on('connect', ask);
    socket.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('latin1');
      const end = buffered.indexOf('\r\n\r\n');
      if (end === -1) return;
      heads.push(buffered.slice(0, end));
      buffered = buffered.slice(end + 4);
      if (heads.length === count) {
        socket.destroy();
        resolve(heads);
      } else ask();
    });
    socket.on('close', () => reject(new Error(`the connection closed after ${heads.length} answers`)));
    socket.on('error', () => {});
  });
}

t.test('a 304 or 204 whose head carries a Content-Length is answered whole, and the connection stays usable', async (t) => {
  for (const [status, text] of [[304, 'Not Modified'], [204, 'No Content']] as const) {
    const running = await inFrontOfRaw(t, (socket) => socket.write(`HTTP/1.1 ${status} ${text}\r\nETag: "v1"\r\nContent-Length: 5\r\n\r\n`));
    const heads = await headsOnOneConnection(running.port, 2);
    for (const head of heads) {
      t.match(head, new RegExp(`^HTTP/1.1 ${status} `), `${status}: the status`);
      t.match(head, /etag: "v1"/i, `${status}: the headers`);
      if (status === 204) t.notMatch(head, /content-length/i, '204: no Content-Length (RFC 9110 8.6)');
      else t.match(head, /content-length: 5/i, '304: the Content-Length of the representation, as sent');
    }
    await until(() => running.logs.filter((l) => 'status' in l && l.route !== undefined).length >= 2, 2_000, 'both logged');
    for (const line of running.logs.filter((l) => 'status' in l && l.route !== undefined)) t.match(line, { status, reason: null }, `${status}: logged as answered`);
  }
});

t.test('504 gateway_timeout when the upstream does not answer within timeout', async (t) => {
  const started = Date.now();
  const answer = await call(`${gw.url}/open/hang`);
  const took = Date.now() - started;
  assertErrorBody(t, answer, 504, 'gateway_timeout');
  t.ok(took >= 280 && took < 2000, `answered after ${took} ms (timeout 300ms)`);
  t.equal(accessLog(answer.json.request_id)?.reason, 'upstream_timeout');
});

t.test('an upstream slower than usual but within timeout is answered normally', async (t) => {
  const answer = await call(`${gw.url}/open/slow`);
  t.equal(answer.status, 200);
  t.equal(answer.text, 'slow');
});

t.test('X-Request-Id: kept when valid, replaced when invalid or absent; echoed to the client and sent upstream', async (t) => {
  const cases: [sent: string | undefined, kept: boolean][] = [
    ['abc-123', true],
    ['trace.id_1:2-3', true],
    ['x'.repeat(128), true],
    ['x'.repeat(129), false],
    ['bad id', false],
    ['bad/id', false],
    ['<script>', false],
    [undefined, false],
  ];
  for (const [sent, keptAsIs] of cases) {
    const answer = await call(`${gw.url}/open/rid`, { headers: sent === undefined ? {} : { 'x-request-id': sent } });
    const id = answer.headers['x-request-id'] as string;
    const label = sent === undefined ? 'absent' : JSON.stringify(sent.length > 20 ? `${sent.length} chars` : sent);
    if (keptAsIs) t.equal(id, sent, `${label} kept`);
    else t.match(id, UUID, `${label} replaced by a generated id`);
    t.equal(last().headers['x-request-id'], id, `${label}: the upstream got the same id`);
    t.equal(answer.json.headers['x-request-id'], id);
  }
});

t.test('gatehouse errors carry the request id too, and the JSON shape', async (t) => {
  const answer = await call(`${gw.url}/nothing-here`, { headers: { 'x-request-id': 'my-id-1' } });
  assertErrorBody(t, answer, 404, 'not_found');
  t.equal(answer.json.request_id, 'my-id-1');
  // Sent raw: a WHATWG URL client would resolve %2e%2e itself before sending.
  const ambiguous = await raw(gw.port, 'GET /open/%2e%2e/api HTTP/1.1\r\nHost: x\r\nX-Request-Id: my-id-2\r\n\r\n');
  t.equal(rawStatus(ambiguous), 400);
  t.match(ambiguous, /\r\ncontent-type: application\/json\r\n/);
  t.equal(ambiguous.slice(ambiguous.indexOf('\r\n\r\n') + 4), '{"error":"bad_request","message":"the request path contains an encoded /, \\\\, . or NUL","status":400,"request_id":"my-id-2"}');
});

t.test('a path with # or ; is refused before any route is matched, and never forwarded', async (t) => {
  // `/api#/x` is /api to WHATWG URL and url.parse; `/api;x` is /api to find-my-way, Tomcat and Spring.
  const paths = ['/open/a#/b', '/open#/x', '/api#/x', '/open/a;b', '/open;x/y', '/api;jsessionid=1/items'];
  const before = upstream.requests.length;
  for (const [i, path] of paths.entries()) {
    const answer = await raw(gw.port, `GET ${path} HTTP/1.1\r\nHost: x\r\nX-Request-Id: semi-${i}\r\n\r\n`);
    t.equal(rawStatus(answer), 400, path);
    t.match(answer.slice(answer.indexOf('\r\n\r\n') + 4), /^\{"error":"bad_request","message":"the request path contains [#;]/, path);
    t.match(accessLog(`semi-${i}`), { status: 400, reason: 'ambiguous_path', route: null }, path);
  }
  t.equal(upstream.requests.length, before, 'the upstream saw none of them');
});

t.test('X-Forwarded-*: with trustProxy false the client values are replaced', async (t) => {
  const answer = await call(`${gw.url}/open/xff`, {
    headers: { 'x-forwarded-for': '6.6.6.6', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'evil.example', forwarded: 'for=6.6.6.6', 'x-request-id': 'xff-false' },
  });
  t.equal(answer.status, 200);
  const h = last().headers;
  t.equal(h['x-forwarded-for'], '127.0.0.1');
  t.equal(h['x-forwarded-proto'], 'http');
  t.equal(h['x-forwarded-host'], `127.0.0.1:${gw.port}`);
  t.equal(h['forwarded'], undefined);
  t.equal(accessLog('xff-false')?.ip, '127.0.0.1');
});

t.test('X-Forwarded-*: trustProxy true, a hop count and a CIDR list pick the client ip and append the peer', async (t) => {
  const cases: [trust: string, xff: string, ip: string][] = [
    ['true', '6.6.6.6, 7.7.7.7', '6.6.6.6'],
    ['1', '6.6.6.6, 7.7.7.7', '7.7.7.7'],
    ['2', '6.6.6.6, 7.7.7.7', '6.6.6.6'],
    ['5', '6.6.6.6, 7.7.7.7', '6.6.6.6'],
    ['[127.0.0.1, 10.0.0.0/8]', '6.6.6.6, 10.1.2.3', '6.6.6.6'],
    ['[127.0.0.1, 10.0.0.0/8]', '6.6.6.6, 8.8.8.8, 10.1.2.3', '8.8.8.8'],
    ['[127.0.0.0/8, 10.0.0.0/8]', '10.0.0.9, 10.1.2.3', '10.0.0.9'],
  ];
  for (const [trust, xff, ip] of cases) {
    const trusting = await startGatehouse(configYaml({ server: `  trustProxy: ${trust}\n` }), { UPSTREAM: upstream.url });
    const id = `trust-${upstream.requests.length}`;
    const answer = await call(`${trusting.url}/open/xff`, { headers: { 'x-forwarded-for': xff, 'x-forwarded-proto': 'https', 'x-forwarded-host': 'api.example', 'x-request-id': id } });
    await trusting.close();
    t.equal(answer.status, 200);
    const h = last().headers;
    t.equal(h['x-forwarded-for'], `${xff}, 127.0.0.1`, `trustProxy ${trust}: XFF appended`);
    t.equal(h['x-forwarded-proto'], 'https', `trustProxy ${trust}: proto believed`);
    t.equal(h['x-forwarded-host'], 'api.example', `trustProxy ${trust}: host believed`);
    t.equal(trusting.logs.find((l) => l.request_id === id)?.ip, ip, `trustProxy ${trust}, XFF ${xff}: client ip`);
  }
});

t.test('X-Forwarded-*: a CIDR list does not believe a peer outside it', async (t) => {
  const trusting = await startGatehouse(configYaml({ server: '  trustProxy: [10.0.0.0/8]\n' }), { UPSTREAM: upstream.url });
  t.teardown(() => trusting.close());
  const answer = await call(`${trusting.url}/open/xff`, {
    headers: { 'x-forwarded-for': '6.6.6.6', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'evil.example', forwarded: 'for=6.6.6.6', 'x-request-id': 'cidr-outside' },
  });
  t.equal(answer.status, 200);
  const h = last().headers;
  t.equal(h['x-forwarded-for'], '127.0.0.1');
  t.equal(h['x-forwarded-proto'], 'http');
  t.equal(h['x-forwarded-host'], `127.0.0.1:${trusting.port}`);
  t.equal(h['forwarded'], undefined);
  t.equal(trusting.logs.find((l) => l.request_id === 'cidr-outside')?.ip, '127.0.0.1');
});

/** Every way a client might try to pass identity headers itself. */
const SPOOFS = [
  'X-Auth-Tenant', 'evil-1',
  'x-auth_tenant', 'evil-2',
  'X_AUTH_TENANT', 'evil-3',
  'X-AUTH-SUBJECT', 'evil-4',
  'X-Auth-Tenant', 'evil-5',
  'X-Auth-Role', 'evil-6',
  'x-auth-scopes', 'evil-7',
  'X-Auth-Method', 'evil-8',
  'X-Auth-Key-Id', 'evil-9',
  'X-Auth-Whatever', 'evil-10',
];

function assertNoSpoof(t: Test): void {
  const seen = last();
  const rawText = seen.rawHeaders.join('\n');
  t.notMatch(rawText, /evil/, 'no spoofed value reached the upstream');
  const names = seen.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase().replace(/_/g, '-'));
  t.equal(new Set(names).size, names.length, 'no header name (with _ read as -) arrives twice');
}

t.test('spoofed identity headers never reach the upstream on an auth: none route', async (t) => {
  const answer = await call(`${gw.url}/open/spoof`, { headers: [...SPOOFS, 'Connection', 'x-auth-tenant'] });
  t.equal(answer.status, 200);
  assertNoSpoof(t);
  const names = last().rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
  t.notOk(names.some((n) => n.replace(/_/g, '-').startsWith('x-auth-')), 'no identity header at all without a credential');
});

t.test('forwarding and credential headers spelled with _ never reach the upstream (CGI, WSGI and Rack read them as -)', async (t) => {
  const spoofs = ['X_Forwarded_For', '6.6.6.6', 'x_forwarded_host', 'evil.example', 'X_FORWARDED_PROTO', 'evil', 'x_request_id', 'evil-id', 'X_Api_Key', 'evil-key', 'Keep_Alive', 'evil'];
  const answer = await call(`${gw.url}/open/underscore`, { headers: [...spoofs, 'X-Request-Id', 'underscore-1'] });
  t.equal(answer.status, 200);
  assertNoSpoof(t);
  const h = last().headers;
  t.equal(h['x-forwarded-for'], '127.0.0.1');
  t.equal(h['x-forwarded-host'], `127.0.0.1:${gw.port}`);
  t.equal(h['x-forwarded-proto'], 'http');
  t.equal(h['x-request-id'], 'underscore-1');
  // On an authenticated route the real credential works and the look-alike is neither a second credential nor forwarded.
  const authed = await call(`${gw.url}/api/underscore`, { headers: ['X-API-Key', API_KEY, 'X_API_KEY', 'evil-key'] });
  t.equal(authed.status, 200);
  assertNoSpoof(t);
  t.equal(last().headers['x-auth-subject'], 'svc-ci');
});

t.test('spoofed identity headers never reach the upstream on an authenticated route; the injected ones do', async (t) => {
  const variants: [label: string, headers: string[]][] = [
    ['X-API-Key', ['X-API-Key', API_KEY]],
    ['Authorization: Bearer', ['Authorization', `Bearer ${API_KEY}`]],
    ['Authorization: Api-Key', ['authorization', `api-key ${API_KEY}`]],
  ];
  for (const [label, credential] of variants) {
    const answer = await call(`${gw.url}/api/reports`, { headers: [...SPOOFS, ...credential, 'Connection', 'X-Auth-Tenant, x-auth-subject'] });
    t.equal(answer.status, 200, label);
    assertNoSpoof(t);
    const h = last().headers;
    t.equal(h['x-auth-tenant'], 'acme', `${label}: tenant injected`);
    t.equal(h['x-auth-subject'], 'svc-ci');
    t.equal(h['x-auth-role'], 'admin');
    t.equal(h['x-auth-scopes'], 'reports:read reports:write');
    t.equal(h['x-auth-method'], 'api-key');
    t.equal(h['x-auth-key-id'], 'ci');
    t.equal(h['authorization'], undefined, `${label}: the credential is not forwarded`);
    t.equal(h['x-api-key'], undefined);
    t.notMatch(last().rawHeaders.join('\n'), API_KEY);
  }
});

t.test('a request without a credential on an authenticated route is 401 and never forwarded', async (t) => {
  const before = upstream.requests.length;
  const answer = await call(`${gw.url}/api/reports`, { headers: SPOOFS });
  assertErrorBody(t, answer, 401, 'missing_credentials');
  t.equal(answer.headers['www-authenticate'], 'Bearer realm="gatehouse"');
  t.equal(upstream.requests.length, before);
});

t.test('oversized request headers get 431 JSON', async (t) => {
  const answer = await raw(gw.port, `GET /open/x HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
  t.equal(rawStatus(answer), 431);
  t.match(answer, /\r\ncontent-type: application\/json\r\n/i);
  const body = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4));
  t.strictSame(Object.keys(body), ['error', 'message', 'status', 'request_id']);
  t.match(body, { error: 'request_header_fields_too_large', status: 431 });
});

t.test('a malformed request line gets 400 JSON', async (t) => {
  const lines = ['GARBAGE\r\n\r\n', 'GET /x HTTP/9.9\r\n\r\n', 'GET /a b c HTTP/1.1\r\nHost: x\r\n\r\n', '\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03', 'GET / HTTP/1.1\r\nBad Header\r\n\r\n'];
  for (const line of lines) {
    const answer = await raw(gw.port, line);
    t.equal(rawStatus(answer), 400, JSON.stringify(line.slice(0, 20)));
    t.match(answer.slice(answer.indexOf('\r\n\r\n') + 4), /^\{"error":"bad_request","message":"[^"]+","status":400,"request_id":"[^"]+"\}$/);
  }
});

t.test('a body in a transfer coding other than chunked (gzip, chunked) is 501 JSON and never forwarded', async (t) => {
  const before = upstream.requests.length;
  const answer = await raw(gw.port, 'POST /open/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n');
  t.equal(rawStatus(answer), 501);
  t.match(answer, /"error":"not_implemented"/);
  t.equal(upstream.requests.length, before, 'not forwarded');
  const chunked = await raw(gw.port, 'POST /open/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n');
  t.equal(rawStatus(chunked), 200, 'chunked alone is forwarded');
  t.equal(upstream.requests.at(-1)!.body.toString(), 'hello');
});

t.test('two Host headers are a 400', async (t) => {
  const answer = await raw(gw.port, 'GET /open/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n');
  t.equal(rawStatus(answer), 400);
});

t.test('slow headers: the socket is answered and closed within bounds, and the server keeps serving', async (t) => {
  const started = Date.now();
  const answer = await new Promise<{ text: string; closedAfter: number }>((resolve) => {
    const socket = connect(gw.port, '127.0.0.1');
    let text = '';
    socket.on('data', (c: Buffer) => (text += c.toString('latin1')));
    socket.on('close', () => resolve({ text, closedAfter: Date.now() - started }));
    socket.on('error', () => undefined);
    // Half a request head, then silence.
    socket.write('GET /open/x HTTP/1.1\r\nHost: x\r\nX-Slow: ');
  });
  t.ok(answer.closedAfter >= 450 && answer.closedAfter < 2500, `closed after ${answer.closedAfter} ms (headersTimeout 500ms)`);
  t.equal(rawStatus(answer.text), 408);
  t.equal((await call(`${gw.url}/open/after-slow`)).status, 200);
});

t.test('after all that garbage the process still serves', async (t) => {
  for (const junk of ['\r\n\r\n\r\n', 'GET', 'POST /open/x HTTP/1.1\r\nContent-Length: 10\r\n\r\nab', 'GET /open/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n']) {
    await raw(gw.port, junk, 300);
  }
  const answer = await call(`${gw.url}/open/alive`);
  t.equal(answer.status, 200);
  t.equal(answer.json.url, '/open/alive');
});

t.test('the access log line has the SPEC section 8 fields and never a credential', async (t) => {
  const ok = await call(`${gw.url}/api/reports?x=1`, { headers: { authorization: `Bearer ${API_KEY}`, 'x-request-id': 'log-ok' } });
  t.equal(ok.status, 200);
  const wrongKey = `${API_KEY}-wrong`;
  const bad = await call(`${gw.url}/api/reports`, { headers: { 'x-api-key': wrongKey, 'x-request-id': 'log-bad' } });
  t.equal(bad.status, 401);
  await until(() => !!accessLog('log-ok') && !!accessLog('log-bad'), 2000, 'both access lines are written');
  const line = accessLog('log-ok')!;
  t.match(line, {
    request_id: 'log-ok',
    method: 'GET',
    path: '/api/reports',
    route: 'api',
    status: 200,
    tenant: 'acme',
    subject: 'svc-ci',
    auth: 'api-key',
    key_id: 'ci',
    ip: '127.0.0.1',
    reason: null,
  });
  t.match(line.time, /^\d{4}-\d\d-\d\dT/);
  t.type(line.duration_ms, 'number');
  t.type(line.upstream_ms, 'number');
  t.match(accessLog('log-bad'), { status: 401, route: 'api', tenant: null, key_id: null, upstream_ms: null, reason: 'unknown_key' });
  const everything = gw.rawLogs.join('\n');
  for (const secret of [API_KEY, wrongKey, API_KEY_HASH, createHash('sha256').update(wrongKey).digest('hex'), `Bearer ${API_KEY}`]) {
    t.notOk(everything.includes(secret), 'no credential, and no key hash, in any log line');
  }
});

t.test('gatehouse_requests_in_flight counts the requests being handled when /metrics is scraped', async (t) => {
  const own = await startGatehouse(configYaml({ auth: AUTH, routes: ROUTES, admin: true }), { UPSTREAM: upstream.url });
  t.teardown(() => own.close());
  const gauge = async () => Number(/^gatehouse_requests_in_flight (\d+)$/m.exec((await call(`${own.adminUrl}/metrics`)).text)?.[1]);
  t.equal(await gauge(), 0, 'idle');
  const slow = [call(`${own.url}/open/slow`), call(`${own.url}/open/slow`)];
  await until(async () => (await gauge()) === 2, 2000, 'two slow requests in flight');
  await Promise.all(slow);
  t.equal(await gauge(), 0, 'both answered');
});

t.test('Expect: 100-continue is answered only once the request is admitted: a refused one never invites its body', async (t) => {
  const converse = (head: string, body: string) =>
    new Promise<string[]>((resolve) => {
      const socket = connect(gw.port, '127.0.0.1');
      const seen: string[] = [];
      let text = '';
      socket.on('data', (c: Buffer) => {
        text += c.toString('latin1');
        if (text.startsWith('HTTP/1.1 100 Continue\r\n\r\n')) {
          seen.push('100');
          text = text.slice('HTTP/1.1 100 Continue\r\n\r\n'.length);
          socket.write(body);
        }
        // The final answer: whole once its Content-Length is in, or its last chunk.
        if (/^HTTP\/1\.1 [2-5]\d\d/.test(text) && text.includes('\r\n\r\n')) {
          const len = Number(/content-length: (\d+)/i.exec(text)?.[1] ?? -1);
          const body = text.slice(text.indexOf('\r\n\r\n') + 4);
          if ((len >= 0 && body.length >= len) || body.endsWith('\r\n0\r\n\r\n')) {
            seen.push(text.slice(9, 12), body);
            socket.destroy();
            resolve(seen);
          }
        }
      });
      socket.on('error', () => resolve(seen));
      socket.write(head);
    });
  const refused = await converse('POST /api/upload HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n', 'hello');
  t.equal(refused[0], '401', 'refused before any 100 Continue');
  const before = upstream.requests.length;
  const admitted = await converse(`POST /api/upload HTTP/1.1\r\nHost: x\r\nX-API-Key: ${API_KEY}\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n`, 'hello');
  t.same(admitted.slice(0, 2), ['100', '200'], 'admitted: 100 Continue, then the body goes through');
  t.match(admitted[2], /"body":"hello"/);
  t.equal(upstream.requests.length, before + 1);
  t.equal(last().headers.expect, undefined, 'Expect itself is hop-by-hop: not forwarded');
  const listed = await converse(`POST /api/upload HTTP/1.1\r\nHost: x\r\nX-API-Key: ${API_KEY}\r\nContent-Length: 5\r\nExpect: 100-Continue, foo\r\n\r\n`, 'hello');
  t.same(listed.slice(0, 2), ['100', '200'], '100-continue among other expectations, in any case, is still answered');
});

t.test('an Expect other than 100-continue is ignored, not a bare 417', async (t) => {
  const answer = await raw(gw.port, 'GET /open/expect HTTP/1.1\r\nHost: x\r\nExpect: bananas\r\nConnection: close\r\n\r\n');
  t.equal(rawStatus(answer), 200);
});
