// Identity spoofing through the running proxy (SPEC section 4): whatever a client sends under an identity header
// name, in any spelling, repeated, or listed in Connection, the upstream sees exactly what gatehouse injected.
import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { configYaml, raw, rawStatus, startGatehouse, startUpstream, type Running, type Upstream } from '../support/harness.js';
import { HS_SECRET, hsKey, newClock, sign } from '../support/jwt-fixtures.js';

const sha = (key: string) => `sha256:${createHash('sha256').update(key).digest('hex')}`;
const API_KEY = 'gh_test_spoofing_key';
const clock = newClock();

const AUTH = `  jwt:
    providers:
      - name: sso
        issuer: https://auth.example.com/
        audience: api
        algorithms: [HS256]
        secret: \${JWT_SECRET}
        claims: { tenant: org_id }
  apiKeys:
    keys:
      - { id: ci, hash: "${sha(API_KEY)}", tenant: acme, subject: svc-ci, role: admin, scopes: [a, b] }`;

const ROUTES = `  - name: open
    match: { path: /open }
    auth: none
  - name: key
    match: { path: /key }
    auth: api-key
  - name: jwt
    match: { path: /jwt }
    auth: jwt`;

/** Every spelling a lenient upstream (CGI, WSGI, Rack: `_` = `-`, any case) would read as an identity header. */
const SPOOFED = [
  'X-Auth-Tenant: evil-1',
  'x-auth_tenant: evil-2',
  'X_AUTH_TENANT: evil-3',
  'X-AUTH-SUBJECT: evil-4',
  'X-Auth-Role: evil-5',
  'X-Auth-Role: evil-6',
  'X-Auth-Scopes: evil-7',
  'X-Auth-Method: evil-8',
  'X-Auth-Key-Id: evil-9',
  'X-Auth-Email: evil-10',
  'X-User-Email: evil-11',
  'x_user_email: evil-12',
];

/** Connection lists: the injected headers must survive a client naming them as hop-by-hop. */
const CONNECTION = ['Connection: X-Auth-Tenant', 'Connection: keep-alive, X-Auth-Tenant, x-auth-role, X-User-Email, X-Auth-Method'];

let upstream: Upstream;
let gh: Running;
let token: string;

t.before(async () => {
  // A fixed-length answer, so raw() can stop reading on a kept-alive connection instead of waiting it out.
  upstream = await startUpstream((_req, res) => void res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 2 }).end('ok'));
  const identity = '  claimHeaders:\n    X-Auth-Email: email\n    X-User-Email: email';
  gh = await startGatehouse(configYaml({ auth: AUTH, identity, routes: ROUTES }), { UPSTREAM: upstream.url, JWT_SECRET: HS_SECRET }, { clock });
  token = await sign(hsKey(), clock, { role: 'admin', scope: 'a b', email: 'real@example.com' });
});
t.teardown(async () => {
  await gh?.close();
  await upstream?.close();
});

/** Identity-looking headers the upstream received, as [canonical name, value] pairs, duplicates kept, sorted. */
function identityHeaders(rawHeaders: string[], extra: readonly string[] = []): string[][] {
  const pairs: string[][] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i].toLowerCase().replace(/_/g, '-');
    if (name.startsWith('x-auth-') || name === 'x-user-email' || extra.includes(name)) pairs.push([name, rawHeaders[i + 1]]);
  }
  return pairs.sort((a, b) => a.join(':').localeCompare(b.join(':')));
}

async function send(t: Test, running: Running, path: string, lines: string[]): Promise<string[]> {
  const before = upstream.requests.length;
  const request = `GET ${path} HTTP/1.1\r\nHost: gatehouse.test\r\n${lines.map((l) => `${l}\r\n`).join('')}\r\n`;
  const answer = await raw(running.port, request);
  t.equal(rawStatus(answer), 200, 'admitted');
  t.equal(upstream.requests.length, before + 1, 'forwarded once');
  const seen = upstream.requests.at(-1)!.rawHeaders;
  t.notOk(
    seen.some((v) => v.includes('evil')),
    'no spoofed value reached the upstream',
  );
  return seen;
}

const sorted = (pairs: string[][]) => [...pairs].sort((a, b) => a.join(':').localeCompare(b.join(':')));

const EXPECTED: Record<string, { credential: string[]; injected: string[][] }> = {
  open: { credential: [], injected: [] },
  key: {
    credential: [`X-API-Key: ${API_KEY}`],
    injected: [
      ['x-auth-tenant', 'acme'],
      ['x-auth-subject', 'svc-ci'],
      ['x-auth-role', 'admin'],
      ['x-auth-scopes', 'a b'],
      ['x-auth-method', 'api-key'],
      ['x-auth-key-id', 'ci'],
    ],
  },
  jwt: {
    credential: [],
    injected: [
      ['x-auth-tenant', 'acme'],
      ['x-auth-subject', 'user-1'],
      ['x-auth-role', 'admin'],
      ['x-auth-scopes', 'a b'],
      ['x-auth-method', 'jwt'],
      ['x-auth-key-id', 'sso'],
      ['x-auth-email', 'real@example.com'],
      ['x-user-email', 'real@example.com'],
    ],
  },
};

for (const route of Object.keys(EXPECTED)) {
  for (const connection of CONNECTION) {
    t.test(`auth ${route === 'open' ? 'none' : route}, ${connection}: the upstream sees exactly the injected identity headers, never a spoofed one`, async (t) => {
      const credential = route === 'jwt' ? [`Authorization: Bearer ${token}`] : EXPECTED[route].credential;
      const seen = await send(t, gh, `/${route}`, [...SPOOFED, ...credential, connection]);
      t.same(identityHeaders(seen), sorted(EXPECTED[route].injected), 'exactly the injected values, each once');
    });
  }
}

t.test('a token without the claim of a claim header: the spoofed claim headers are gone and none is injected', async (t) => {
  const plain = await sign(hsKey(), clock, { role: 'admin', scope: 'a b' });
  const seen = await send(t, gh, '/jwt', [...SPOOFED, `Authorization: Bearer ${plain}`, CONNECTION[0]]);
  const names = identityHeaders(seen).map(([name]) => name);
  t.notOk(names.includes('x-auth-email') || names.includes('x-user-email'), 'no claim header at all');
  t.equal(names.length, 6, 'the six identity headers, each once');
});

t.test('renamed identity headers outside every strip prefix are stripped in any spelling too', async (t) => {
  const identity = `  headers:
    tenant: Tenant-Id
    subject: Subject-Id
  stripPrefixes: []`;
  const running = await startGatehouse(configYaml({ auth: AUTH, identity, routes: ROUTES }), { UPSTREAM: upstream.url, JWT_SECRET: HS_SECRET }, { clock });
  t.teardown(() => running.close());
  const spoof = ['Tenant-Id: evil-1', 'tenant_id: evil-2', 'SUBJECT_ID: evil-3', 'Connection: Tenant-Id'];
  const open = await send(t, running, '/open', spoof);
  t.same(identityHeaders(open, ['tenant-id', 'subject-id']), [], 'auth: none: none of them');
  const keyed = await send(t, running, '/key', [...spoof, `X-API-Key: ${API_KEY}`]);
  t.same(
    identityHeaders(keyed, ['tenant-id', 'subject-id']),
    sorted([
      ['subject-id', 'svc-ci'],
      ['tenant-id', 'acme'],
      ['x-auth-key-id', 'ci'],
      ['x-auth-method', 'api-key'],
      ['x-auth-role', 'admin'],
      ['x-auth-scopes', 'a b'],
    ]),
  );
});

t.test('header lines that a lenient parser could read as an identity header are refused with 400 before any stage', async (t) => {
  const lines = [
    'X-Foo: a\r\n X-Auth-Tenant: evil', // obs-fold continuation
    'X-Foo: a\r\n\tX-Auth-Tenant: evil',
    'X-Auth-Tenant : evil', // space before the colon
    'X-Auth-Tenant\t: evil',
    ' X-Auth-Tenant: evil',
    'X-Foo: a\nX-Auth-Tenant: evil', // bare LF
  ];
  const before = upstream.requests.length;
  for (const line of lines) {
    const answer = await raw(gh.port, `GET /open HTTP/1.1\r\nHost: gatehouse.test\r\n${line}\r\nConnection: close\r\n\r\n`);
    t.equal(rawStatus(answer), 400, JSON.stringify(line));
    t.match(answer, /"error":"bad_request"/);
  }
  t.equal(upstream.requests.length, before, 'nothing forwarded');
});

t.test('method and URL overrides and client-address headers from a client never reach the upstream', async (t) => {
  const lines = [
    'X-HTTP-Method-Override: DELETE-evil',
    'x_http_method_override: DELETE-evil',
    'X-Method-Override: PUT-evil',
    'X-Original-URL: /admin-evil',
    'X-Rewrite-URL: /admin-evil',
    'X-Real-IP: evil-ip',
    'x_real_ip: evil-ip',
    'True-Client-IP: evil-ip',
    'CF-Connecting-IP: evil-ip',
    'Forwarded: for=evil',
  ];
  for (const route of ['open', 'key']) {
    const seen = await send(t, gh, `/${route}`, route === 'key' ? [...lines, `X-API-Key: ${API_KEY}`] : lines);
    const names = seen.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
    t.notOk(names.some((n) => /override|original|rewrite|real|client|connecting|^forwarded$/.test(n)), `${route}: none of them, in any spelling`);
    t.equal(upstream.requests.at(-1)!.method, 'GET', `${route}: the method gatehouse matched`);
  }
});

t.test('a thousand junk headers cannot push the injected headers out of what a node:http upstream keeps', async (t) => {
  // node:http keeps the first 1,000 headers of a request and drops the rest without a word.
  const junk = Array.from({ length: 1000 }, (_, i) => `J${i}: x`);
  const seen = await send(t, gh, '/key', [...junk, `X-API-Key: ${API_KEY}`]);
  t.ok(seen.length >= 2000, 'the upstream got its fill of headers');
  const headers = upstream.requests.at(-1)!.headers;
  t.equal(headers['x-auth-tenant'], 'acme', 'identity kept');
  t.equal(headers['x-auth-subject'], 'svc-ci');
  t.equal(headers['x-forwarded-for'], '127.0.0.1', 'X-Forwarded-For kept');
  t.match(headers['x-request-id'], /\S/, 'X-Request-Id kept');
});
