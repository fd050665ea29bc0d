// Answers node:http gives outside the pipeline (SPEC section 8: one access line per request): a request it cannot
// parse, headers too large, a request too slow to arrive, a request refused while draining. Each is logged and
// counted like any request, with the request id the client got; an answer already under way is cut, never
// followed by a second head.
import t, { type Test } from 'tap';
import { connect } from 'node:net';
import { call, raw, rawStatus, startGatehouse, startUpstream, type Running, type Upstream } from '../support/harness.js';
import { until } from '../support/until.js';

let upstream: Upstream;
/** Answers with a head and part of a body at once, then waits for the whole request body before ending. */
let early: Upstream;
/** Streams a large answer for as long as the connection lasts; counts the answers still streaming. */
let endless: Upstream & { open: () => number };
let gw: Running;

t.before(async () => {
  upstream = await startUpstream();
  early = await startUpstream(
    (req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('partial answer ');
      req.resume();
      req.on('end', () => res.end('done'));
    },
    { buffer: false },
  );
  let open = 0;
  const streaming = await startUpstream(
    (_req, res) => {
      open++;
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      const chunk = Buffer.alloc(64 * 1024, 120);
      const timer = setInterval(() => res.write(chunk), 5);
      res.on('close', () => {
        open--;
        clearInterval(timer);
      });
    },
    { buffer: false },
  );
  endless = Object.assign(streaming, { open: () => open });
  gw = await startGatehouse(`version: 1
server: { port: 0, headersTimeout: 500ms, requestTimeout: 1s }
admin: { port: 0 }
upstreams:
  default: { url: "${upstream.url}", timeout: 5s, connectTimeout: 1s }
  early: { url: "${early.url}", timeout: 5s, connectTimeout: 1s }
  endless: { url: "${endless.url}", timeout: 5s, connectTimeout: 1s }
routes:
  - name: endless
    match: { path: /endless/** }
    auth: none
    upstream: endless
  - name: early
    match: { path: /early/** }
    auth: none
    upstream: early
  - name: open
    match: { path: /** }
    auth: none
`);
});
t.teardown(async () => {
  await gw.close();
  await upstream.close();
  await early.close();
  await endless.close();
});

/** A gatehouse of the test's own, with `server` settings and one open route to `url`; closed with the test. */
async function alone(t: Test, server: string, url: string): Promise<Running> {
  const own = await startGatehouse(`version: 1
server: { port: 0, ${server} }
upstreams:
  default: { url: "${url}", timeout: 5s, connectTimeout: 1s }
routes:
  - name: all
    match: { path: /** }
    auth: none
`);
  t.teardown(() => own.close());
  return own;
}

/** Sends `text` (a request whose body never ends) and resolves with all that came back once gatehouse closes. */
function untilClosed(text: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(gw.port, '127.0.0.1');
    let answer = '';
    socket.on('data', (c: Buffer) => (answer += c.toString('latin1')));
    socket.on('close', () => resolve(answer));
    socket.on('error', () => undefined);
    socket.write(text);
  });
}

const accessLine = (requestId: string) => gw.logs.find((l) => l.request_id === requestId && 'status' in l);
const bodyOf = (answer: string) => JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4));
async function counted(status: number): Promise<number> {
  const text = (await call(`${gw.adminUrl}/metrics`)).text;
  return Number(new RegExp(`^gatehouse_requests_total\\{route="",status="${status}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
}

t.test('a request whose headers are too large is logged and counted, under the request id it was answered with', async (t) => {
  const before = await counted(431);
  const answer = await raw(gw.port, `GET /x HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
  t.match(answer, /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
  const id = bodyOf(answer).request_id;
  await until(() => !!accessLine(id), 2000, 'the access line is written');
  t.match(accessLine(id), { status: 431, method: null, path: null, route: null, reason: 'headers_too_large', ip: '127.0.0.1' });
  t.equal(await counted(431), before + 1);
});

t.test('a request node cannot parse is logged and counted', async (t) => {
  const before = await counted(400);
  const answer = await raw(gw.port, 'GET /a b c HTTP/1.1\r\nHost: x\r\n\r\n');
  t.equal(rawStatus(answer), 400);
  const id = bodyOf(answer).request_id;
  await until(() => !!accessLine(id), 2000, 'the access line is written');
  t.match(accessLine(id), { status: 400, route: null, reason: 'unparsable_request' });
  t.equal(await counted(400), before + 1);
});

t.test('a body slower than requestTimeout: 408 with the request id of its one access line, which says 408', async (t) => {
  const answer = await untilClosed('POST /slow HTTP/1.1\r\nHost: x\r\nX-Request-Id: slow-body-1\r\nContent-Length: 10\r\n\r\nab');
  t.match(answer, /^HTTP\/1\.1 408 Request Timeout\r\n/, 'with the standard reason phrase');
  t.match(answer, /\r\nx-request-id: slow-body-1\r\n/);
  t.equal(bodyOf(answer).request_id, 'slow-body-1');
  await until(() => !!accessLine('slow-body-1'), 2000, 'the access line is written');
  const lines = gw.logs.filter((l) => l.request_id === 'slow-body-1' && 'status' in l);
  t.equal(lines.length, 1, 'one access line');
  t.match(lines[0], { status: 408, method: 'POST', path: '/slow', route: 'open', reason: 'request_timeout' });
});

t.test('a request timeout while the answer is already under way cuts the connection; no second head follows', async (t) => {
  const answer = await untilClosed('POST /early/x HTTP/1.1\r\nHost: x\r\nX-Request-Id: early-1\r\nContent-Length: 10\r\n\r\nab');
  t.equal(rawStatus(answer), 200, 'the upstream answer had begun');
  t.match(answer, /partial answer/);
  t.notMatch(answer, /HTTP\/1\.1 408/, 'no 408 head inside the 200 body');
  t.equal((await call(`${gw.url}/after`)).status, 200, 'the server keeps serving');
});

t.test('a request refused while draining is logged and counted', async (t) => {
  const own = await alone(t, 'shutdownTimeout: 5s', early.url);
  // Two connections, each with a request in flight (its body unfinished, so the upstream answer too). Closing
  // starts draining; B then finishes its body with a second request pipelined after it, read while A still holds
  // the server open.
  const open = (name: string) => {
    const socket = connect(own.port, '127.0.0.1');
    const seen = { text: '' };
    socket.on('data', (c: Buffer) => (seen.text += c.toString('latin1')));
    socket.on('error', () => undefined);
    socket.write(`POST /${name} HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab`);
    return { socket, seen };
  };
  const a = open('a');
  const b = open('b');
  const c = open('c');
  await until(() => [a, b, c].every((x) => x.seen.text.includes('partial answer')), 2000, 'all are being answered');
  const closing = own.close();
  b.socket.write('cdGET /second HTTP/1.1\r\nHost: x\r\nX-Request-Id: while-draining\r\n\r\n');
  await until(() => b.seen.text.includes('HTTP/1.1 503'), 2000, 'the pipelined request is refused while draining');
  t.match(b.seen.text, /\r\nx-request-id: while-draining\r\n/, "with the client's request id, as every answer");
  // A WebSocket upgrade read while draining: refused the same way, on its socket.
  c.socket.write('cdGET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Request-Id: upgrade-while-draining\r\n\r\n');
  await until(() => c.seen.text.includes('HTTP/1.1 503'), 2000, 'the upgrade is refused while draining');
  t.match(c.seen.text, /\r\nx-request-id: upgrade-while-draining\r\n/);
  a.socket.write('cd');
  await closing;
  for (const x of [a, b, c]) x.socket.destroy();
  t.match(own.logs.find((l) => l.request_id === 'upgrade-while-draining' && 'status' in l) ?? {}, { status: 503, method: 'GET', path: '/ws', reason: 'draining' });
  t.match(own.logs.find((l) => l.request_id === 'while-draining' && 'status' in l) ?? {}, { status: 503, method: 'GET', path: '/second', reason: 'draining' });
});

t.test('pipelined requests still queued when the client leaves are cancelled too: no upstream request is left running', async (t) => {
  const socket = connect(gw.port, '127.0.0.1');
  socket.on('error', () => undefined);
  socket.on('data', () => undefined);
  socket.pause(); // reads nothing: the first answer fills the buffers, the others wait behind it
  const ids = [1, 2, 3, 4, 5].map((i) => `pipelined-${i}`);
  socket.write(ids.map((id) => `GET /endless/${id} HTTP/1.1\r\nHost: x\r\nX-Request-Id: ${id}\r\n\r\n`).join(''));
  await until(() => endless.open() >= 5, 2000, 'every pipelined request reached the upstream');
  socket.destroy();
  await until(() => gw.gateway.runtime.metrics.requestsInFlight === 0, 3000, 'no request left in flight');
  await until(() => endless.open() === 0, 3000, 'every upstream answer was cut off');
  for (const id of ids) t.match(accessLine(id), { status: 499, reason: 'client_closed' }, `${id} logged as the client leaving`);
});

t.test('a client that stops reading its answer is cut off after sendTimeout, and the upstream request with it', async (t) => {
  const own = await alone(t, 'sendTimeout: 300ms', endless.url);
  const socket = connect(own.port, '127.0.0.1');
  socket.on('error', () => undefined);
  socket.write('GET /big HTTP/1.1\r\nHost: x\r\nX-Request-Id: never-reads\r\n\r\n');
  socket.pause(); // never reads: the buffers fill and gatehouse waits for a drain that never comes
  const started = Date.now();
  await until(() => own.gateway.runtime.metrics.requestsInFlight === 1 && endless.open() >= 1, 2000, 'the answer is streaming');
  await until(() => own.gateway.runtime.metrics.requestsInFlight === 0, 3000, 'the request is over');
  const after = Date.now() - started;
  t.ok(after >= 250, `cut ${after} ms after the client stopped reading (sendTimeout 300ms, once the buffers are full)`);
  await until(() => endless.open() === 0, 2000, 'the upstream answer was cut off');
  t.match(own.logs.find((l) => l.request_id === 'never-reads' && 'status' in l), { status: 200, reason: 'send_timeout' });
  // Reading now, the client finds its connection closed after what was buffered.
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  socket.on('data', () => undefined);
  socket.resume();
  await closed;
  t.pass('the client connection is closed');
});

t.test('CONNECT is 501 JSON, logged: gatehouse is a reverse proxy, not a tunnel to anywhere', async (t) => {
  const answer = await raw(gw.port, 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nX-Request-Id: connect-1\r\n\r\n');
  t.match(answer, /^HTTP\/1\.1 501 Not Implemented\r\n/);
  t.match(bodyOf(answer), { error: 'not_implemented', status: 501, request_id: 'connect-1' });
  await until(() => !!accessLine('connect-1'), 2000, 'the access line is written');
  t.match(accessLine('connect-1'), { status: 501, method: 'CONNECT', reason: 'connect_not_supported' });
});

t.test('an HTTP/1.1 request without Host is 400 JSON with a request id; HTTP/1.0 needs none', async (t) => {
  const answer = await raw(gw.port, 'GET /x HTTP/1.1\r\nX-Request-Id: no-host\r\n\r\n');
  t.equal(rawStatus(answer), 400);
  t.match(bodyOf(answer), { error: 'bad_request', request_id: 'no-host' });
  t.match(answer, /\r\nx-request-id: no-host\r\n/);
  t.match(accessLine('no-host'), { status: 400, reason: 'missing_host' });
  t.equal(rawStatus(await raw(gw.port, 'GET /x HTTP/1.0\r\n\r\n')), 200);
});

t.test('many pipelined requests are answered in order, each under its own id, with no listener-leak warning', async (t) => {
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(w.name);
  process.on('warning', onWarning);
  t.teardown(() => process.off('warning', onWarning));
  const slow = await startUpstream((req, res) => {
    setTimeout(() => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(req.url);
    }, 20);
  });
  t.teardown(() => slow.close());
  const own = await alone(t, 'keepAliveTimeout: 5s', slow.url);
  const text = await new Promise<string>((resolve) => {
    const socket = connect(own.port, '127.0.0.1');
    let seen = '';
    socket.on('data', (c: Buffer) => {
      seen += c.toString('latin1');
      if (seen.includes('/p/19')) {
        socket.destroy();
        resolve(seen);
      }
    });
    socket.write(Array.from({ length: 20 }, (_, i) => `GET /p/${i} HTTP/1.1\r\nHost: x\r\nX-Request-Id: p-${i}\r\n\r\n`).join(''));
  });
  await new Promise((resolve) => setImmediate(resolve)); // warnings are emitted on the next tick
  t.same(warnings, [], 'each queued answer watches the connection, within a raised listener limit');
  const order = [...text.matchAll(/x-request-id: (p-\d+)/g)].map((m) => m[1]);
  t.same(order, Array.from({ length: 20 }, (_, i) => `p-${i}`), 'answered in order, each under its own id');
});

t.test('an unparsable request pipelined behind one still being answered is not blamed on it, nor answered out of turn', async (t) => {
  const slow = await startUpstream((_req, res) => setTimeout(() => res.end('slow answer'), 300));
  t.teardown(() => slow.close());
  const own = await alone(t, 'keepAliveTimeout: 5s', slow.url);
  const text = await new Promise<string>((resolve) => {
    const socket = connect(own.port, '127.0.0.1');
    let seen = '';
    socket.on('data', (c: Buffer) => (seen += c.toString('latin1')));
    socket.on('close', () => resolve(seen));
    socket.on('error', () => undefined);
    socket.write('GET /slow HTTP/1.1\r\nHost: x\r\nX-Request-Id: first-request\r\n\r\nGARBAGE\r\n\r\n');
  });
  t.notMatch(text, /x-request-id: first-request[\s\S]*"error":"bad_request"/, 'no 400 under the first request id');
  t.notMatch(text, /^HTTP\/1\.1 400/, 'no 400 read as the first answer');
  await until(() => own.logs.filter((l) => 'status' in l).length >= 2, 2000, 'both are logged');
  const lines = own.logs.filter((l) => 'status' in l);
  t.notMatch(lines.find((l) => l.request_id === 'first-request'), { status: 400 }, 'the well-formed request is not logged as the parse error');
  t.ok(lines.some((l) => l.request_id !== 'first-request' && l.status === 400 && l.reason === 'unparsable_request'), 'the parse error has a line of its own');
});

t.test('thousands of pipelined requests behind a slow one are all answered, and none stays in flight', async (t) => {
  const slow = await startUpstream((_req, res) => setTimeout(() => res.end('slow answer'), 500));
  t.teardown(() => slow.close());
  const own = await alone(t, 'keepAliveTimeout: 5s', slow.url);
  const count = 3000;
  const answered = await new Promise<number>((resolve) => {
    const socket = connect(own.port, '127.0.0.1');
    let text = '';
    let seen = 0;
    socket.on('data', (c: Buffer) => {
      text += c.toString('latin1');
      seen = text.split('HTTP/1.1 ').length - 1;
      if (seen >= count + 1) {
        socket.destroy();
        resolve(seen);
      }
    });
    socket.on('close', () => resolve(seen));
    socket.on('error', () => undefined);
    // One request that waits on the upstream, then thousands refused at once (unparsable paths) read behind it.
    const refused = Array.from({ length: count }, (_, i) => `GET /%2e%2e/${i} HTTP/1.1\r\nHost: x\r\n\r\n`).join('');
    socket.write(`GET /slow HTTP/1.1\r\nHost: x\r\n\r\n${refused}`);
  });
  t.equal(answered, count + 1);
  await until(() => own.gateway.runtime.metrics.requestsInFlight === 0, 3000, 'none left in flight');
});

t.test('clients that reset right after a CONNECT crash nothing', async (t) => {
  // node hands CONNECT (and upgrade) sockets over without its own 'error' listener: every path that answers on
  // such a socket must add one, or a reset client is an uncaught exception.
  for (let i = 0; i < 30; i++) {
    const socket = connect(gw.port, '127.0.0.1');
    socket.on('error', () => undefined);
    socket.write('CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n', () => socket.resetAndDestroy());
  }
  await new Promise((resolve) => setTimeout(resolve, 200));
  t.equal((await call(`${gw.url}/still-alive`)).status, 200, 'the process still serves');
});
