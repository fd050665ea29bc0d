// `gatehouse explain` (SPEC section 1): the dry run reports route, credential, verdict, limits and
// upstream headers, never a credential, and never touches the network.
import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignJWT } from 'jose';
import { loadConfig } from '../../src/config/load.js';
import { explain } from '../../src/explain.js';
import { writeTempFile } from '../support/harness.js';
import { ensureBuilt, runCli } from '../support/built-cli.js';

const sha = (key: string) => createHash('sha256').update(key).digest('hex');
const ADMIN_KEY = 'gh_admin_0123456789abcdefghijklmnop';
const READONLY_KEY = 'gh_readonly_0123456789abcdefghijklm';
const SECRET = 'demo-secret-change-me-0123456789abcdef';
const ISSUER = 'https://demo.gatehouse.local/';
const SSO_ISSUER = 'https://sso.example.com/';

/** Counts requests, to prove that explain never fetches a remote JWKS. */
let jwksRequests = 0;
const jwks = createServer((_req, res) => {
  jwksRequests++;
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end('{"keys":[]}');
});
await new Promise<void>((resolve) => jwks.listen(0, '127.0.0.1', resolve));
t.teardown(() => new Promise<void>((resolve) => jwks.close(() => resolve())));
const jwksUrl = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks.json`;

/** config.example.yaml in miniature: same providers, keys, policies and routes. */
const yaml = (forwardAuthorization: boolean) => `version: 1
server: { host: 127.0.0.1, port: 8080 }
upstreams:
  default: { url: "http://127.0.0.1:3000/base" }
auth:
  jwt:
    providers:
      - name: demo
        issuer: ${ISSUER}
        audience: [api]
        algorithms: [HS256]
        secret: ${SECRET}
        claims: { tenant: org_id, subject: sub, role: role, scopes: scope, plan: plan }
      - name: sso
        issuer: ${SSO_ISSUER}
        audience: api
        algorithms: [RS256]
        jwksUrl: ${jwksUrl}
  apiKeys:
    keys:
      - { id: demo-admin, hash: "sha256:${sha(ADMIN_KEY)}", tenant: acme, subject: svc-demo, role: admin, scopes: [reports:read, reports:write], plan: pro }
      - { id: demo-readonly, hash: "sha256:${sha(READONLY_KEY)}", tenant: globex, subject: dashboard, role: analyst, scopes: [reports:read], access: read-only, plan: enterprise }
identity:
  claimHeaders: { X-Auth-Email: email }
  forwardAuthorization: ${forwardAuthorization}
rateLimit:
  policies:
    standard: { limit: 1000, window: 1h, by: tenant }
    reports:  { limit: 10,   window: 1m, by: tenant }
  plans:
    enterprise: { standard: { limit: 10000, window: 1h } }
  tenants:
    acme: { standard: { limit: 5000, window: 1h } }
routes:
  - name: reports
    match: { path: /api/reports/** }
    auth: any
    require: { scopes: [reports:read], roles: [admin, analyst] }
    rateLimit: [standard, reports]
  - name: api
    match: { path: /api/** }
    auth: any
    rateLimit: [standard]
`;
const configPath = writeTempFile('gatehouse.yaml', yaml(false));
const config = loadConfig(configPath);
const forwarding = loadConfig(writeTempFile('gatehouse.yaml', yaml(true)));

const hsToken = (claims: Record<string, unknown> = {}, expires: string | number = '1h') =>
  new SignJWT({ org_id: 'initech', sub: 'user-7', role: 'analyst', scope: 'reports:read', plan: 'enterprise', email: 'u7@initech.test', ...claims })
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuer(ISSUER)
    .setAudience('api')
    .setExpirationTime(expires)
    .sign(new TextEncoder().encode(SECRET));

/** Asserts that no form of a secret appears in the output. */
function assertNoSecret(t: Test, text: string, secrets: string[]) {
  for (const secret of secrets) {
    t.notOk(text.includes(secret), `the output does not contain ${secret.slice(0, 6)}…`);
    t.notOk(text.includes(sha(secret)), 'nor its hash');
  }
}

t.test('an API key: the matched route, the key verified, effective limits, upstream headers, no key in the output', async (t) => {
  const out: any = await explain(config, 'GET', '/api/reports/daily?day=1', [['X-API-Key', ADMIN_KEY]]);
  t.equal(out.outcome, 'allowed');
  t.match(out.route, { name: 'reports', path: '/api/reports/**', upstream: 'http://127.0.0.1:3000/base' });
  t.match(out.credential, { source: 'X-API-Key', verified: true });
  t.match(out.identity, { method: 'api-key', keyId: 'demo-admin', tenant: 'acme', subject: 'svc-demo', role: 'admin', plan: 'pro' });
  t.same(
    out.rateLimits.map((r: any) => [r.policy, r.by, r.limit, r.windowSeconds]),
    [
      ['standard', 'tenant', 5000, 3600],
      ['reports', 'tenant', 10, 60],
    ],
    'acme has a tenant override on standard; reports is the policy as written',
  );
  t.equal(out.upstreamRequest.url, 'http://127.0.0.1:3000/base/api/reports/daily?day=1');
  t.match(out.upstreamRequest.headers, {
    'x-auth-tenant': 'acme',
    'x-auth-subject': 'svc-demo',
    'x-auth-method': 'api-key',
    'x-auth-key-id': 'demo-admin',
    'x-auth-scopes': 'reports:read reports:write',
  });
  t.equal(out.upstreamRequest.headers['x-api-key'], undefined, 'the key is not forwarded (forwardAuthorization: false)');
  assertNoSecret(t, JSON.stringify(out), [ADMIN_KEY]);
});

t.test('an HS256 JWT: claims shown, verified, the plan override applies, Authorization redacted when forwarded', async (t) => {
  const token = await hsToken();
  const out: any = await explain(forwarding, 'GET', '/api/reports/x', [['Authorization', `Bearer ${token}`]]);
  t.equal(out.outcome, 'allowed', JSON.stringify(out.error));
  t.equal(out.route.name, 'reports');
  t.match(out.credential, { source: 'Authorization', kind: 'jwt', verified: true, claims: { iss: ISSUER, sub: 'user-7', org_id: 'initech' } });
  t.match(out.identity, { method: 'jwt', keyId: 'demo', tenant: 'initech', plan: 'enterprise' });
  t.equal(out.rateLimits[0].limit, 10000, 'plan enterprise overrides standard');
  t.equal(out.upstreamRequest.headers.authorization, '[redacted]');
  t.equal(out.upstreamRequest.headers['x-auth-email'], 'u7@initech.test');
  const text = JSON.stringify(out);
  t.notOk(text.includes(token), 'the token is not in the output');
  t.notOk(text.includes(token.split('.')[2]), 'nor its signature');

  const plain: any = await explain(config, 'GET', '/api/reports/x', [['Authorization', `Bearer ${token}`]]);
  t.equal(plain.upstreamRequest.headers.authorization, undefined, 'not forwarded at all with forwardAuthorization: false');
});

t.test('a read-only key on POST is refused with insufficient_scope', async (t) => {
  const out: any = await explain(config, 'POST', '/api/reports/x', [['Authorization', `Api-Key ${READONLY_KEY}`]]);
  t.equal(out.outcome, 'refused');
  t.match(out.error, { status: 403, error: 'insufficient_scope' });
  t.match(out.credential, { source: 'Authorization', verified: true }, 'the key itself is valid');
  t.equal(out.route.name, 'reports');
  assertNoSecret(t, JSON.stringify(out), [READONLY_KEY]);
});

t.test('a read-only key may GET, but not open a WebSocket', async (t) => {
  t.equal(((await explain(config, 'GET', '/api/reports/x', [['X-API-Key', READONLY_KEY]])) as any).outcome, 'allowed');
  const out: any = await explain(config, 'GET', '/api/reports/x', [['X-API-Key', READONLY_KEY], ['Upgrade', 'websocket'], ['Connection', 'Upgrade']]);
  t.equal(out.outcome, 'refused');
  t.match(out.error, { status: 403, error: 'insufficient_scope', message: /WebSocket/ });
});

t.test('an unknown key and an expired token are reported as not verified', async (t) => {
  const unknown: any = await explain(config, 'GET', '/api/x', [['X-API-Key', 'gh_not_a_real_key_000000000000']]);
  t.equal(unknown.outcome, 'refused');
  t.match(unknown.credential, { verified: false });
  t.match(unknown.error, { status: 401, error: 'invalid_token' });
  t.notOk(JSON.stringify(unknown).includes('gh_not_a_real_key'));

  const expired = await hsToken({}, Math.floor(Date.now() / 1000) - 3600);
  const out: any = await explain(config, 'GET', '/api/x', [['Authorization', `Bearer ${expired}`]]);
  t.match(out.credential, { kind: 'jwt', verified: false });
  t.match(out.error, { status: 401, error: 'token_expired' });
  t.notOk(JSON.stringify(out).includes(expired));
});

t.test('a token of a JWKS-URL provider reports needsNetwork without any network call', async (t) => {
  const token = await new SignJWT({ org_id: 'acme', sub: 'u' })
    .setProtectedHeader({ alg: 'HS256', kid: 'k1' }) // the signature is never checked: any key will do
    .setIssuer(SSO_ISSUER)
    .setAudience('api')
    .setExpirationTime('1h')
    .sign(new TextEncoder().encode(SECRET));
  const out: any = await explain(config, 'GET', '/api/x', [['Authorization', `Bearer ${token}`]]);
  t.match(out.credential, { kind: 'jwt', provider: 'sso', needsNetwork: true, verified: null, claims: { iss: SSO_ISSUER } });
  t.equal(out.route.name, 'api');
  t.notOk(JSON.stringify(out).includes(token));
  t.equal(jwksRequests, 0, 'the JWKS URL was never fetched');
});

t.test('the built CLI prints the same JSON and never the key', async (t) => {
  await ensureBuilt();
  const run = runCli(['explain', '--config', configPath, 'get', '/api/reports/daily', '-H', `X-API-Key: ${ADMIN_KEY}`]);
  t.equal(run.code, 0, run.stderr);
  const out = JSON.parse(run.stdout);
  t.equal(out.outcome, 'allowed');
  t.equal(out.request.method, 'GET');
  t.equal(out.route.name, 'reports');
  t.match(out.credential, { verified: true });
  t.equal(out.identity.keyId, 'demo-admin');
  assertNoSecret(t, run.stdout + run.stderr, [ADMIN_KEY]);

  const usage = runCli(['explain', '--config', configPath, 'GET']);
  t.equal(usage.code, 2, 'a missing PATH is a usage error');
  t.equal(jwksRequests, 0);
});

t.test('a token typed into the explained URL as ?access_token= is redacted from the output', async (t) => {
  const token = await hsToken();
  const out: any = await explain(config, 'GET', `/api/things?a=1&access_token=${token}&b=2`, [['X-API-Key', ADMIN_KEY]]);
  t.equal(out.request.url, '/api/things?a=1&access_token=[redacted]&b=2');
  assertNoSecret(t, JSON.stringify(out), [token, ADMIN_KEY]);
});

t.test('a WebSocket upgrade is explained as the proxy admits it: ?access_token= in any spelling is its credential, never shown', async (t) => {
  const upgrade: Array<[string, string]> = [['Upgrade', 'websocket'], ['Connection', 'Upgrade']];
  for (const name of ['access_token', 'access%5Ftoken', '%61ccess_token']) {
    const out: any = await explain(config, 'GET', `/api/things?a=1&${name}=${encodeURIComponent(ADMIN_KEY)}&b=2`, upgrade);
    t.equal(out.outcome, 'allowed', `${name}: allowed, as the proxy does`);
    t.match(out.credential, { source: 'access_token', verified: true });
    t.equal(out.request.url, `/api/things?a=1&${name}=[redacted]&b=2`);
    t.equal(out.upstreamRequest.url.endsWith('/api/things?a=1&b=2'), true, 'the token is cut out of the forwarded query');
    assertNoSecret(t, JSON.stringify(out), [ADMIN_KEY, encodeURIComponent(ADMIN_KEY)]);
  }
  // Not an upgrade: no credential, and still never shown.
  const plain: any = await explain(config, 'GET', `/api/things?access%5Ftoken=${ADMIN_KEY}`, []);
  t.equal(plain.credential, null);
  t.equal(plain.request.url, '/api/things?access%5Ftoken=[redacted]');
  assertNoSecret(t, JSON.stringify(plain), [ADMIN_KEY]);
  const two: any = await explain(config, 'GET', `/api/x?access_token=${ADMIN_KEY}&access%5Ftoken=${ADMIN_KEY}`, upgrade);
  t.match(two.error, { status: 400, reason: 'two_credentials' });
  assertNoSecret(t, JSON.stringify(two), [ADMIN_KEY]);
});

t.test('a key-looking header is never shown: X_API_Key is dropped, and an X-API-Key that is no key source is redacted', async (t) => {
  const lookalike = 'gh_lookalike_0123456789abcdefghijk';
  const dropped: any = await explain(config, 'GET', '/api/reports/daily', [['X-API-Key', ADMIN_KEY], ['X_Api_Key', lookalike]]);
  t.equal(dropped.outcome, 'allowed');
  assertNoSecret(t, JSON.stringify(dropped), [ADMIN_KEY, lookalike]);
  // With only Authorization as a key source, X-API-Key (in any spelling) is an ordinary header: forwarded, never shown.
  const authorizationOnly = loadConfig(writeTempFile('gatehouse.yaml', yaml(false).replace('  apiKeys:\n    keys:', '  apiKeys:\n    sources: [authorization]\n    keys:')));
  const token = await hsToken();
  const forwarded: any = await explain(authorizationOnly, 'GET', '/api/x', [['Authorization', `Bearer ${token}`], ['x-api-key', lookalike], ['X_Api_Key', lookalike]]);
  t.equal(forwarded.outcome, 'allowed', JSON.stringify(forwarded.error));
  t.equal(forwarded.upstreamRequest.headers['x-api-key'], '[redacted]');
  t.equal(forwarded.upstreamRequest.headers['x_api_key'], '[redacted]');
  assertNoSecret(t, JSON.stringify(forwarded), [lookalike]);
});
