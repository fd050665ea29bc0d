// WebSocket upgrades against upstreams that do not switch: silent ones (504 after the upstream timeout), clients
// that leave first (the upstream request ends with them), and plain HTTP answers relayed with gatehouse's headers.
import t from 'tap';
import { createHash } from 'node:crypto';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { startGatehouse, type Running } from '../support/harness.js';
import { until } from '../support/until.js';
import { wsConnect } from '../support/websocket.js';

const sha = (key: string) => `sha256:${createHash('sha256').update(key).digest('hex')}`;
const KEY = 'ws-upstream-key-0123456789';

/** A raw TCP upstream: /silent reads and never answers, /plain answers 426 with hop-by-hop headers of its own. */
let upstream: Server;
const open = new Set<Socket>();
let gh: Running;

const PLAIN =
  'HTTP/1.1 426 Upgrade Required\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\n' +
  'X-Request-Id: chosen-by-upstream\r\nX-Upstream: kept\r\n\r\n5\r\nnope!\r\n0\r\n\r\n';

t.before(async () => {
  upstream = createServer((socket) => {
    open.add(socket);
    socket.on('close', () => open.delete(socket));
    socket.on('error', () => {});
    socket.once('data', (chunk: Buffer) => {
      if (chunk.toString('latin1').startsWith('GET /plain')) socket.write(PLAIN);
    });
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  gh = await startGatehouse(`version: 1
server: { port: 0 }
upstreams:
  default: { url: "http://127.0.0.1:${(upstream.address() as AddressInfo).port}", timeout: 400ms, connectTimeout: 1s }
  patient: { url: "http://127.0.0.1:${(upstream.address() as AddressInfo).port}", timeout: 5s, connectTimeout: 1s }
auth:
  apiKeys:
    keys:
      - { id: ws, hash: "${sha(KEY)}", tenant: acme, subject: svc }
routes:
  - { name: wait, match: { path: /wait }, auth: any, upstream: patient }
  - { name: all, match: { path: /** }, auth: any }
`);
});
t.teardown(async () => {
  await gh.close();
  for (const socket of open) socket.destroy();
  await new Promise((resolve) => upstream.close(resolve));
});

const accessLine = (id: string) => gh.logs.find((l) => l.request_id === id && 'status' in l);

t.test('an upstream that never answers the upgrade: 504 after the upstream timeout, and its connection is closed', async (t) => {
  const started = Date.now();
  const answer = await wsConnect(gh.port, '/silent', { 'X-API-Key': KEY });
  t.equal(answer.status, 504, `after ${Date.now() - started} ms`);
  t.match(JSON.parse(answer.body), { error: 'gateway_timeout', request_id: answer.headers['x-request-id'] });
  await until(() => open.size === 0, 2_000, 'the upstream connection is closed');
  await until(() => accessLine(answer.headers['x-request-id']) !== undefined, 2_000, 'logged');
  t.match(accessLine(answer.headers['x-request-id']), { status: 504, reason: 'upstream_timeout' });
});

t.test('a client that leaves before the upstream answers ends the upstream request too', async (t) => {
  const before = gh.logs.length;
  const client = connect(gh.port, '127.0.0.1');
  client.on('error', () => {});
  client.write(`GET /wait HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${'a'.repeat(22)}==\r\nSec-WebSocket-Version: 13\r\nX-API-Key: ${KEY}\r\n\r\n`);
  await until(() => open.size === 1, 2_000, 'the upgrade reached the upstream');
  const started = Date.now();
  client.destroy();
  // The route's upstream waits 5 s for an answer: only the client leaving can end this one sooner.
  await until(() => open.size === 0, 2_000, 'the upstream connection closed with the client');
  t.ok(Date.now() - started < 2_000, `closed ${Date.now() - started} ms after the client left`);
  await until(() => gh.logs.slice(before).some((l) => 'status' in l), 2_000, 'logged');
  t.match(gh.logs.slice(before).find((l) => 'status' in l), { status: 499, reason: 'client_closed' });
});

t.test('an upstream that answers the upgrade with plain HTTP: relayed with gatehouse headers, without its hop-by-hop ones', async (t) => {
  const answer = await wsConnect(gh.port, '/plain', { 'X-API-Key': KEY });
  t.equal(answer.status, 426);
  t.equal(answer.headers['x-upstream'], 'kept');
  t.not(answer.headers['x-request-id'], 'chosen-by-upstream', "gatehouse's X-Request-Id replaces the upstream's");
  t.equal(answer.head.split('\r\n').filter((l) => /^x-request-id:/i.test(l)).length, 1, 'one X-Request-Id');
  t.equal(answer.headers['keep-alive'], undefined, 'no Keep-Alive from the upstream');
  t.equal(answer.headers.connection, 'close', 'the connection closes after it');
  t.match(answer.body, /nope!/, 'the body');
  await until(() => accessLine(answer.headers['x-request-id']) !== undefined, 2_000, 'logged');
  t.match(accessLine(answer.headers['x-request-id']), { status: 426, reason: null });
});
