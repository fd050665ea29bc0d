// WebSocket upgrades through gatehouse to a real RFC 6455 echo upstream (SPEC section 4, Upgrade).
import t from 'tap';
import { createHash } from 'node:crypto';
import { call, startGatehouse, type Running } from '../support/harness.js';
import { startWsEchoUpstream, wsConnect, type WsUpstream } from '../support/websocket.js';

const sha = (key: string) => `sha256:${createHash('sha256').update(key).digest('hex')}`;
const KEY = 'ws-secret-key-0123456789';
const OTHER_KEY = 'ws-limited-key-0123456789';
const READ_ONLY_KEY = 'ws-read-only-key-0123456789';

let upstream: WsUpstream;
let gh: Running;
t.before(async () => {
  upstream = await startWsEchoUpstream();
  gh = await startGatehouse(`version: 1
server: { host: 127.0.0.1, port: 0 }
upstreams:
  default: { url: "${upstream.url}", timeout: 5s, connectTimeout: 1s }
  dead: { url: "http://127.0.0.1:1", timeout: 5s, connectTimeout: 1s }
auth:
  apiKeys:
    keys:
      - { id: ws-key, hash: "${sha(KEY)}", tenant: acme, subject: svc-chat, role: member, scopes: [chat:read, chat:write] }
      - { id: limited-key, hash: "${sha(OTHER_KEY)}", tenant: globex, subject: svc-limited }
      - { id: ro-key, hash: "${sha(READ_ONLY_KEY)}", tenant: acme, subject: dashboard, access: read-only }
rateLimit:
  policies:
    ws: { limit: 2, window: 1h, by: key }
routes:
  - name: limited
    match: { path: /limited/** }
    auth: any
    rateLimit: [ws]
  - name: dead
    match: { path: /dead/** }
    auth: any
    upstream: dead
  - name: ws
    match: { path: /ws/** }
    auth: any
`);
});
t.teardown(async () => {
  await gh.close();
  await upstream.close();
});

t.test('an upgrade with an API key header is tunneled: data flows both ways', async (t) => {
  const client = await wsConnect(gh.port, '/ws/chat', { 'X-API-Key': KEY });
  t.teardown(() => client.socket.destroy());
  t.equal(client.status, 101);
  t.equal(client.headers.upgrade?.toLowerCase(), 'websocket');
  const server = await upstream.nextConnection();
  t.equal(await client.inbox.next(), 'hello /ws/chat', 'upstream -> client');
  client.send('ping 1');
  t.equal(await server.inbox.next(), 'ping 1', 'client -> upstream');
  t.equal(await client.inbox.next(), 'echo:ping 1');
  const big = 'x'.repeat(40_000);
  client.send(big);
  t.equal(await client.inbox.next(), `echo:${big}`, 'a 40 kB message survives the tunnel');
  t.equal(client.inbox.badMasking + server.inbox.badMasking, 0, 'frames pass unchanged (client frames masked, server frames not)');
});

t.test('the upstream receives the identity headers; spoofed ones and the credential are stripped', async (t) => {
  const client = await wsConnect(gh.port, '/ws/identity', {
    Authorization: `Bearer ${KEY}`,
    'X-Auth-Tenant': 'evil-corp',
    'X_Auth_Role': 'admin',
    'X-Auth-Extra': 'spoofed',
  });
  t.teardown(() => client.socket.destroy());
  t.equal(client.status, 101);
  const server = await upstream.nextConnection();
  const h = server.headers;
  t.equal(h['x-auth-tenant'], 'acme');
  t.equal(h['x-auth-subject'], 'svc-chat');
  t.equal(h['x-auth-role'], 'member');
  t.equal(h['x-auth-scopes'], 'chat:read chat:write');
  t.equal(h['x-auth-method'], 'api-key');
  t.equal(h['x-auth-key-id'], 'ws-key');
  t.equal(h['x-auth-extra'], undefined, 'an unknown X-Auth- header is stripped');
  t.notOk(server.rawHeaders.some((n) => /^x_auth_/i.test(n)), 'the underscore spelling is stripped');
  t.equal(server.rawHeaders.filter((n) => n.toLowerCase() === 'x-auth-tenant').length, 1, 'one tenant header, ours');
  t.equal(h.authorization, undefined, 'the credential is not forwarded');
  t.equal(h.upgrade?.toLowerCase(), 'websocket');
  t.match(h['sec-websocket-key'], /^[A-Za-z0-9+/]{22}==$/, 'the WebSocket handshake headers pass');
  t.equal(h['x-forwarded-for'], '127.0.0.1');
  t.match(h['x-request-id'], /^[0-9a-f-]{36}$/);
});

t.test('?access_token= authenticates an upgrade and never reaches the upstream; other query params do', async (t) => {
  const client = await wsConnect(gh.port, `/ws/room?room=42&access_token=${encodeURIComponent(KEY)}&lang=en`);
  t.teardown(() => client.socket.destroy());
  t.equal(client.status, 101);
  const server = await upstream.nextConnection();
  t.equal(server.url, '/ws/room?room=42&lang=en');
  t.equal(server.headers['x-auth-key-id'], 'ws-key');
  t.equal(await client.inbox.next(), 'hello /ws/room?room=42&lang=en');

  const only = await wsConnect(gh.port, `/ws/solo?access_token=${encodeURIComponent(KEY)}`);
  t.teardown(() => only.socket.destroy());
  t.equal(only.status, 101);
  t.equal((await upstream.nextConnection()).url, '/ws/solo', 'no dangling ?');
  t.notOk(gh.rawLogs.some((l) => l.includes(KEY)), 'the token is in no log line');
});

t.test('?access_token= is cut out of the query text: every other byte reaches the upstream as the client sent it', async (t) => {
  const K = encodeURIComponent(KEY);
  const cases: Array<[query: string, forwarded: string]> = [
    [`?q=a%20b&flag&access_token=${K}&t=%7E`, '?q=a%20b&flag&t=%7E'],
    [`?access_token=${K}&b=2&a=1+1`, '?b=2&a=1+1'],
    [`?x=&y=%41&access_token=${K}`, '?x=&y=%41'],
    [`?access_token=${K}`, ''],
    [`?a=1&&access_token=${K}&&b=2`, '?a=1&&&b=2'],
    [`?access_token=${K}&`, ''],
    [`?a=1&access_token=${K}&a=1`, '?a=1&a=1'],
    // The token value is percent-decoded (%2D is '-').
    [`?n=1&access_token=${KEY.replace(/-/g, '%2D')}`, '?n=1'],
    // So is its name: an upstream decoding the query reads these as access_token too.
    [`?n=1&access%5Ftoken=${K}`, '?n=1'],
    [`?%61ccess_token=${K}&n=1`, '?n=1'],
  ];
  for (const [query, forwarded] of cases) {
    const client = await wsConnect(gh.port, `/ws/q${query}`);
    t.teardown(() => client.socket.destroy());
    t.equal(client.status, 101, query);
    t.equal((await upstream.nextConnection()).url, `/ws/q${forwarded}`, query);
  }
  t.notOk(gh.rawLogs.some((l) => l.includes(KEY)), 'the token is in no log line');
});

t.test('two access_token parameters are two credentials: 400', async (t) => {
  const before = upstream.connections.length;
  const refused = await wsConnect(gh.port, `/ws/q?access_token=${KEY}&a=1&access_token=${KEY}`);
  t.equal(refused.status, 400);
  t.match(JSON.parse(refused.body), { error: 'bad_request', message: /exactly one credential/ });
  t.equal(upstream.connections.length, before);
  const spelled = await wsConnect(gh.port, `/ws/q?access_token=${KEY}&a=1&access%5Ftoken=${KEY}`);
  t.equal(spelled.status, 400, 'the second one percent-encoded');
  t.equal(upstream.connections.length, before);
});

t.test('?access_token= is not a credential on a plain HTTP request', async (t) => {
  const answer = await call(`${gh.url}/ws/room?access_token=${encodeURIComponent(KEY)}`);
  t.equal(answer.status, 401);
  t.equal(answer.json.error, 'missing_credentials');
});

t.test('an upgrade without a credential is refused with a 401 JSON answer on the socket', async (t) => {
  const before = upstream.connections.length;
  const refused = await wsConnect(gh.port, '/ws/chat');
  t.equal(refused.status, 401);
  t.match(refused.headers['content-type'], /^application\/json/);
  t.equal(refused.headers['www-authenticate'], 'Bearer realm="gatehouse"');
  const body = JSON.parse(refused.body);
  t.equal(body.error, 'missing_credentials');
  t.equal(body.status, 401);
  t.equal(body.request_id, refused.headers['x-request-id']);
  await refused.closed;
  t.pass('gatehouse closed the connection');

  const bad = await wsConnect(gh.port, '/ws/chat?access_token=not-a-valid-key');
  t.equal(bad.status, 401);
  t.equal(JSON.parse(bad.body).error, 'invalid_token');
  t.notMatch(bad.body, /not-a-valid-key/, 'the refused token is not echoed');
  t.equal(upstream.connections.length, before, 'the upstream never saw a refused upgrade');
});

t.test('a read-only key may not open a WebSocket: a tunnel carries writes gatehouse cannot see', async (t) => {
  const before = upstream.connections.length;
  for (const [how, path, headers] of [
    ['X-API-Key', '/ws/chat', { 'X-API-Key': READ_ONLY_KEY }],
    ['?access_token=', `/ws/chat?access_token=${READ_ONLY_KEY}`, {}],
  ] as const) {
    const refused = await wsConnect(gh.port, path, headers);
    t.equal(refused.status, 403, how);
    t.equal(refused.headers['www-authenticate'], 'Bearer realm="gatehouse", error="insufficient_scope"');
    t.equal(JSON.parse(refused.body).error, 'insufficient_scope');
    t.match(JSON.parse(refused.body).message, /read-only/);
    await refused.closed;
  }
  t.equal(upstream.connections.length, before, 'the upstream never saw the upgrade');
  // The echo upstream answers a plain GET with 426: admitted and forwarded, not refused by gatehouse.
  t.equal((await call(`${gh.url}/ws/chat`, { headers: { 'x-api-key': READ_ONLY_KEY } })).status, 426, 'the same key may still GET the route');
});

t.test('upgrades are rate limited: past the limit, 429 with Retry-After on the socket', async (t) => {
  for (let i = 0; i < 2; i++) {
    const ok = await wsConnect(gh.port, '/limited/x', { 'X-API-Key': OTHER_KEY });
    t.equal(ok.status, 101);
    ok.socket.destroy();
    await upstream.nextConnection();
  }
  const refused = await wsConnect(gh.port, '/limited/x', { 'X-API-Key': OTHER_KEY });
  t.equal(refused.status, 429);
  t.equal(JSON.parse(refused.body).error, 'rate_limit_exceeded');
  t.equal(refused.headers['retry-after'], '1800');
  t.equal(refused.headers['x-ratelimit-remaining'], '0');
});

t.test('closing the client closes the upstream side, and the reverse', async (t) => {
  const polite = await wsConnect(gh.port, '/ws/a', { 'X-API-Key': KEY });
  const server = await upstream.nextConnection();
  t.equal(await polite.inbox.next(), 'hello /ws/a');
  polite.close();
  await server.closed;
  t.pass('a close frame and FIN from the client close the upstream socket');

  const abrupt = await wsConnect(gh.port, '/ws/b', { 'X-API-Key': KEY });
  const server2 = await upstream.nextConnection();
  t.equal(await abrupt.inbox.next(), 'hello /ws/b');
  abrupt.socket.destroy();
  await server2.closed;
  t.pass('a reset client connection closes the upstream socket');

  const client = await wsConnect(gh.port, '/ws/c', { 'X-API-Key': KEY });
  const server3 = await upstream.nextConnection();
  t.equal(await client.inbox.next(), 'hello /ws/c');
  server3.socket.destroy();
  await client.closed;
  t.pass('the upstream closing closes the client socket');
});

t.test('an upgrade to an upstream that refuses the connection gets a 502 JSON answer', async (t) => {
  const refused = await wsConnect(gh.port, '/dead/x', { 'X-API-Key': KEY });
  t.equal(refused.status, 502);
  t.equal(JSON.parse(refused.body).error, 'bad_gateway');
});
