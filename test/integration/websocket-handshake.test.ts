// The WebSocket handshake through gatehouse: gatehouse's headers on the 101, and the refusal of every other upgrade.
import t from 'tap';
import { createHash } from 'node:crypto';
import { ManualClock } from '../../src/clock.js';
import { raw, rawStatus, startGatehouse, type Running } from '../support/harness.js';
import { until } from '../support/until.js';
import { startWsEchoUpstream, wsConnect, type WsUpstream } from '../support/websocket.js';

const sha = (key: string) => `sha256:${createHash('sha256').update(key).digest('hex')}`;
const KEY = 'handshake-key-0123456789';
const REFUSED_KEY = 'handshake-refused-key-0123456789';

let upstream: WsUpstream;
let gh: Running;
/** Plain requests and upgrades the upstream received. */
let upstreamSaw = 0;
t.before(async () => {
  // An upstream whose 101 carries its own X-Request-Id and RateLimit, which gatehouse's must replace.
  upstream = await startWsEchoUpstream({ handshakeHeaders: ['X-Request-Id: chosen-by-upstream', 'RateLimit: "upstream";r=0;t=0', 'X-Upstream: kept'] });
  upstream.server.on('request', () => upstreamSaw++);
  upstream.server.on('upgrade', () => upstreamSaw++);
  gh = await startGatehouse(
    `version: 1
server: { port: 0 }
upstreams:
  default: { url: "${upstream.url}", timeout: 5s, connectTimeout: 1s }
auth:
  apiKeys:
    keys:
      - { id: handshake, hash: "${sha(KEY)}", tenant: acme, subject: svc-chat }
      - { id: refused, hash: "${sha(REFUSED_KEY)}", tenant: acme, subject: svc-refused }
rateLimit:
  policies:
    chat: { limit: 5, window: 1m, by: key }
routes:
  - { name: limited, match: { path: /limited/** }, auth: any, rateLimit: [chat] }
  - { name: open, match: { path: /** }, auth: any }
`,
    {},
    { clock: new ManualClock() },
  );
});
t.teardown(async () => {
  await gh.close();
  await upstream.close();
});

/** How many header lines of a raw answer head carry `name`. */
const count = (head: string, name: string) => head.split('\r\n').filter((l) => l.toLowerCase().startsWith(`${name}:`)).length;

t.test('the 101 carries the X-Request-Id the upstream received, in place of the upstream own', async (t) => {
  const client = await wsConnect(gh.port, '/chat', { 'X-API-Key': KEY });
  t.teardown(() => client.socket.destroy());
  t.equal(client.status, 101);
  const server = await upstream.nextConnection();
  t.match(server.headers['x-request-id'], /^[0-9a-f-]{36}$/, 'a generated id went upstream');
  t.equal(client.headers['x-request-id'], server.headers['x-request-id'], 'the client gets the same id');
  t.equal(count(client.head, 'x-request-id'), 1, 'one X-Request-Id: the upstream one is replaced');
  t.equal(client.headers['x-upstream'], 'kept', 'other headers of the upstream 101 pass');
  t.equal(client.headers.ratelimit, '"upstream";r=0;t=0', 'on a route without limits the upstream RateLimit passes');
  t.equal(await client.inbox.next(), 'hello /chat', 'the tunnel works');

  const traced = await wsConnect(gh.port, '/chat', { 'X-API-Key': KEY, 'X-Request-Id': 'trace-42.a:b' });
  t.teardown(() => traced.socket.destroy());
  t.equal((await upstream.nextConnection()).headers['x-request-id'], 'trace-42.a:b');
  t.equal(traced.headers['x-request-id'], 'trace-42.a:b', 'a valid client id is kept and returned');
});

t.test('on a limited route the 101 carries the rate-limit headers, in place of the upstream own', async (t) => {
  const first = await wsConnect(gh.port, '/limited/room', { 'X-API-Key': KEY });
  t.teardown(() => first.socket.destroy());
  t.equal(first.status, 101);
  const server = await upstream.nextConnection();
  t.equal(first.headers['x-request-id'], server.headers['x-request-id']);
  t.equal(first.headers['ratelimit-policy'], '"chat";q=5;w=60');
  t.equal(first.headers.ratelimit, '"chat";r=4;t=12');
  t.equal(count(first.head, 'ratelimit'), 1, 'one RateLimit: the upstream one is replaced');
  t.equal(first.headers['x-ratelimit-limit'], '5');
  t.equal(first.headers['x-ratelimit-remaining'], '4');
  t.equal(first.headers['x-ratelimit-reset'], '12');

  const second = await wsConnect(gh.port, '/limited/room', { 'X-API-Key': KEY });
  t.teardown(() => second.socket.destroy());
  await upstream.nextConnection();
  t.equal(second.headers['x-ratelimit-remaining'], '3', 'each upgrade consumes one unit');
});

t.test('the Upgrade token websocket is matched case-insensitively', async (t) => {
  const client = await wsConnect(gh.port, '/chat', { 'X-API-Key': KEY, Upgrade: 'WebSocket' });
  t.teardown(() => client.socket.destroy());
  t.equal(client.status, 101);
  t.equal((await upstream.nextConnection()).url, '/chat');
});

t.test('Upgrade h2c, Upgrade my-proto and POST with Upgrade websocket get 400 before admission and never reach the upstream', async (t) => {
  const credential = `X-API-Key: ${REFUSED_KEY}\r\n`;
  const requests: Array<[string, string]> = [
    ['h2c', `GET /limited/x HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n${credential}\r\n`],
    ['my-proto', `GET /limited/x HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: my-proto\r\n${credential}\r\n`],
    [
      'POST websocket',
      `POST /limited/x HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n${credential}Content-Length: 0\r\n\r\n`,
    ],
    ['no credential', `GET /limited/x HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: my-proto\r\n\r\n`],
  ];
  const before = upstreamSaw;
  for (const [label, request] of requests) {
    const answer = await raw(gh.port, request);
    t.equal(rawStatus(answer), 400, label);
    const [head, body] = answer.split('\r\n\r\n');
    t.match(head, /\r\ncontent-type: application\/json\r\n/i, `${label}: JSON`);
    const json = JSON.parse(body);
    t.match(json, { error: 'bad_request', status: 400, message: /only WebSocket upgrades/ }, label);
    t.equal(/\r\nx-request-id: (.*)/.exec(head)?.[1], json.request_id, `${label}: the request id is in the header and the body`);
    await until(() => gh.logs.some((l) => l.request_id === json.request_id), 2000, `the ${label} refusal is logged`);
    t.match(gh.logs.find((l) => l.request_id === json.request_id), { status: 400, reason: 'upgrade_not_supported' }, `${label}: access log`);
  }
  t.equal(upstreamSaw, before, 'the upstream saw no request and no upgrade');

  // Refused before admission: no rate-limit unit was consumed (and the missing credential was never a 401).
  const client = await wsConnect(gh.port, '/limited/x', { 'X-API-Key': REFUSED_KEY });
  t.teardown(() => client.socket.destroy());
  t.equal(client.status, 101);
  t.equal(client.headers['x-ratelimit-remaining'], '4', 'the refused upgrades consumed nothing');
});
