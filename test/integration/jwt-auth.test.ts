// JWTs end to end through the running proxy (SPEC sections 2, 3, 4, 6, 7): every key source, every known
// attack, route auth kinds, required scopes and roles, forwarding of Authorization, the identity route, /readyz.
import t from 'tap';
import { SignJWT } from 'jose';
import { call, configYaml, startGatehouse, startUpstream, writeTempFile, type Running, type Upstream } from '../support/harness.js';
import { AUDIENCE, HS_SECRET, JwksServer, b64, hsKey, makeKey, newClock, seconds, sign, type SignOptions, type SigningKey } from '../support/jwt-fixtures.js';
import { assertRefused } from '../support/refusals.js';
import { until } from '../support/until.js';
import { createHash } from 'node:crypto';

const rsa = await makeKey('RS256', 'rsa-1');
const otherRsa = await makeKey('RS256', 'rsa-1');
const ec = await makeKey('ES256', 'ec-1');
const ed = await makeKey('EdDSA', 'ed-1');
const otherEd = await makeKey('EdDSA', 'ed-1');
const hs = hsKey();

const ISS = { hs: 'https://hs.example/', rsa: 'https://rsa.example/', ec: 'https://ec.example/', ed: 'https://ed.example/', defaults: 'https://defaults.example/' };
const API_KEY = 'gh_test_jwt-suite-api-key';
const sha = (key: string) => `sha256:${createHash('sha256').update(key).digest('hex')}`;

const indent = (text: string, spaces: number) =>
  text
    .trim()
    .split('\n')
    .map((line) => ' '.repeat(spaces) + line)
    .join('\n');

function authYaml(jwksFile: string, jwksUrl: string): string {
  return `  jwt:
    providers:
      - name: hs
        issuer: ${ISS.hs}
        audience: ${AUDIENCE}
        algorithms: [HS256]
        secret: \${JWT_SECRET}
        claims: { tenant: org_id }
      - name: rsa
        issuer: ${ISS.rsa}
        audience: [${AUDIENCE}]
        algorithms: [RS256]
        publicKey: |
${indent(rsa.spki, 10)}
        claims: { tenant: org_id }
      - name: ec
        issuer: ${ISS.ec}
        audience: [${AUDIENCE}]
        algorithms: [ES256]
        jwksFile: ${jwksFile}
        claims: { tenant: org_id }
      - name: ed
        issuer: ${ISS.ed}
        audience: [${AUDIENCE}]
        algorithms: [EdDSA]
        jwksUrl: ${jwksUrl}
        claims: { tenant: org_id }
      - name: defaults
        issuer: ${ISS.defaults}
        audience: ${AUDIENCE}
        algorithms: [HS256]
        secret: \${JWT_SECRET}
  apiKeys:
    keys:
      - { id: ci, hash: "${sha(API_KEY)}", tenant: acme, subject: svc-ci }`;
}

const ROUTES = `  - name: whoami
    match: { path: /whoami, methods: [GET] }
    auth: any
    respond: identity
  - name: jwt-only
    match: { path: /jwt/** }
    auth: jwt
  - name: hs-only
    match: { path: /hs/** }
    auth: [hs]
  - name: reports
    match: { path: /reports/** }
    auth: any
    require: { scopes: [reports:read], roles: [admin, analyst] }
  - name: api
    match: { path: /** }
    auth: any`;

const clock = newClock();
let upstream: Upstream;
let jwks: JwksServer;
let gh: Running;
let jwksFile: string;

t.before(async () => {
  upstream = await startUpstream();
  jwks = await JwksServer.start([ed.jwk]);
  jwksFile = writeTempFile('jwks.json', JSON.stringify({ keys: [ec.jwk] }));
  const yaml = configYaml({
    auth: authYaml(jwksFile, jwks.url),
    identity: '  claimHeaders:\n    X-Auth-Email: email',
    routes: ROUTES,
  });
  gh = await startGatehouse(yaml, { UPSTREAM: upstream.url, JWT_SECRET: HS_SECRET }, { clock });
  await gh.gateway.plan.jwt!.whenLoaded();
});
t.teardown(async () => {
  await gh?.close();
  await jwks?.close();
  await upstream?.close();
});

/** The `reason` of the access-log line of one request: which check refused it. */
const refusalReason = (running: Running, requestId: string) => running.logs.find((l) => l.request_id === requestId && 'status' in l)?.reason;

/** Every token sent: none may show up in a log line. */
const sentTokens = new Set<string>();
const bearer = (token: string) => {
  sentTokens.add(token);
  return { authorization: `Bearer ${token}` };
};
const signAs = (key: SigningKey, issuer: string, claims: Record<string, unknown> = {}, opts: SignOptions = {}) => sign(key, clock, { iss: issuer, ...claims }, opts);

t.test('tokens of every key source are admitted with the identity headers injected upstream', async (t) => {
  const cases: Array<[string, SigningKey, string]> = [
    ['hs', hs, ISS.hs],
    ['rsa', rsa, ISS.rsa],
    ['ec', ec, ISS.ec],
    ['ed', ed, ISS.ed],
  ];
  for (const [name, key, issuer] of cases) {
    const token = await signAs(key, issuer, { role: 'admin', scope: 'reports:read reports:write', plan: 'pro', email: `${name}@example.com` });
    const before = upstream.requests.length;
    const answer = await call(`${gh.url}/api/${name}?q=1`, { headers: bearer(token) });
    t.equal(answer.status, 200, `${key.alg} (${name}) admitted`);
    t.equal(upstream.requests.length, before + 1, 'forwarded once');
    const seen = upstream.requests.at(-1)!;
    t.equal(seen.url, `/api/${name}?q=1`);
    t.match(
      seen.headers,
      {
        'x-auth-tenant': 'acme',
        'x-auth-subject': 'user-1',
        'x-auth-role': 'admin',
        'x-auth-scopes': 'reports:read reports:write',
        'x-auth-method': 'jwt',
        'x-auth-key-id': name,
        'x-auth-email': `${name}@example.com`,
      },
      `${name}: identity headers`,
    );
    t.equal(seen.headers.authorization, undefined, 'Authorization is stripped by default (forwardAuthorization: false)');
  }
});

t.test('a provider without a claims mapping reads the SPEC example claims: org_id, sub, role, scope, plan', async (t) => {
  const token = await signAs(hs, ISS.defaults, { role: 'admin', scope: 'a b', plan: 'pro', tenant: 'not-this-one' });
  const answer = await call(`${gh.url}/whoami`, { headers: bearer(token) });
  t.equal(answer.status, 200);
  t.match(answer.json, { tenant: 'acme', subject: 'user-1', role: 'admin', scopes: ['a', 'b'], plan: 'pro', key_id: 'defaults' });
});

t.test('attacks and invalid tokens are refused with 401 and never reach the upstream', async (t) => {
  const now = seconds(clock);
  const forgedSig = await signAs(otherRsa, ISS.rsa); // same kid and alg, another private key
  const unsigned = `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ iss: ISS.rsa, aud: AUDIENCE, sub: 'user-1', org_id: 'acme', exp: now + 3600 })}.`;
  // HS256 keyed with the provider's public RSA PEM: the classic algorithm confusion.
  const confused = await new SignJWT({ iss: ISS.rsa, aud: AUDIENCE, sub: 'user-1', org_id: 'acme', exp: now + 3600 })
    .setProtectedHeader({ alg: 'HS256' })
    .sign(new TextEncoder().encode(rsa.spki));
  const cases: Array<[string, string, string, string]> = [
    ['forged signature', forgedSig, 'invalid_token', 'bad_signature'],
    ['alg none', unsigned, 'invalid_token', 'alg_not_allowed'],
    ['HS256 signed with the RSA public key', confused, 'invalid_token', 'alg_not_allowed'],
    ['expired', await signAs(rsa, ISS.rsa, { exp: now - 3600 }), 'token_expired', 'token_expired'],
    ['nbf in the future', await signAs(ec, ISS.ec, { nbf: now + 3600 }), 'invalid_token', 'not_yet_valid'],
    ['unknown issuer', await signAs(rsa, 'https://evil.example/'), 'invalid_token', 'unknown_issuer'],
    ['wrong audience', await signAs(ed, ISS.ed, { aud: 'other-api' }), 'invalid_token', 'wrong_audience'],
    ['missing exp', await signAs(hs, ISS.hs, { exp: undefined }), 'invalid_token', 'missing_exp'],
    ['embedded attacker jwk header', await signAs(otherRsa, ISS.rsa, {}, { header: { jwk: { kty: 'RSA', n: String(otherRsa.jwk.n), e: String(otherRsa.jwk.e) } } }), 'invalid_token', 'bad_signature'],
    ['jku header pointing at an attacker key set', await signAs(otherEd, ISS.ed, {}, { header: { jku: 'http://127.0.0.1:1/jwks.json' } }), 'invalid_token', 'bad_signature'],
    ['no tenant claim and no defaultTenant', await signAs(rsa, ISS.rsa, { org_id: undefined }), 'invalid_token', 'no_tenant'],
    ['a CRLF in a claim that becomes a header (header injection)', await signAs(rsa, ISS.rsa, { org_id: 'acme\r\nX-Auth-Role: admin' }), 'invalid_token', 'unsafe_identity_value'],
    // An upstream's parser trims the ends of a header value: `alice ` would arrive as alice, another caller.
    ['a subject with a trailing space', await signAs(rsa, ISS.rsa, { sub: 'alice ' }), 'invalid_token', 'unsafe_identity_value'],
    ['a tenant with a leading tab', await signAs(rsa, ISS.rsa, { org_id: '\tacme' }), 'invalid_token', 'unsafe_identity_value'],
    ['a non-ASCII role', await signAs(rsa, ISS.rsa, { role: 'ädmin' }), 'invalid_token', 'unsafe_identity_value'],
    ['a scope holding a space (one scope read as two upstream)', await signAs(rsa, ISS.rsa, { scope: ['reports:read admin'] }), 'invalid_token', 'unsafe_identity_value'],
    ['HS256 with the wrong secret', await sign({ ...hs, privateKey: new TextEncoder().encode('x'.repeat(40)) }, clock, { iss: ISS.hs }), 'invalid_token', 'bad_signature'],
  ];
  const before = upstream.requests.length;
  for (const [what, token, code, reason] of cases) {
    const answer = await call(`${gh.url}/api/x`, { headers: bearer(token) });
    t.test(what, async (t) => {
      assertRefused(t, answer, code, [token, ...token.split('.').filter((p) => p.length > 8)]);
      t.equal(refusalReason(gh, answer.json.request_id), reason, `refused for the right reason (${reason})`);
    });
  }
  t.equal(upstream.requests.length, before, 'the upstream saw none of the refused requests');
});

t.test('a jwt route refuses an API key and a bearer value that is not a JWT with 401 invalid_token', async (t) => {
  const before = upstream.requests.length;
  assertRefused(t, await call(`${gh.url}/jwt/a`, { headers: { 'x-api-key': API_KEY } }), 'invalid_token', [API_KEY]);
  assertRefused(t, await call(`${gh.url}/jwt/a`, { headers: bearer(API_KEY) }), 'invalid_token', [API_KEY]);
  assertRefused(t, await call(`${gh.url}/jwt/a`, { headers: bearer('not.a.jwt') }), 'invalid_token');
  t.equal(upstream.requests.length, before, 'nothing forwarded');
  t.equal((await call(`${gh.url}/jwt/a`, { headers: bearer(await signAs(rsa, ISS.rsa)) })).status, 200, 'a JWT is admitted');
  t.equal((await call(`${gh.url}/api/a`, { headers: { 'x-api-key': API_KEY } })).status, 200, 'the same key is fine on an any route');
});

t.test('a route listing provider hs refuses a valid token of provider rsa', async (t) => {
  const before = upstream.requests.length;
  const token = await signAs(rsa, ISS.rsa);
  assertRefused(t, await call(`${gh.url}/hs/a`, { headers: bearer(token) }), 'invalid_token', [token]);
  assertRefused(t, await call(`${gh.url}/hs/a`, { headers: { 'x-api-key': API_KEY } }), 'invalid_token', [API_KEY]);
  t.equal(upstream.requests.length, before, 'nothing forwarded');
  const ok = await call(`${gh.url}/hs/a`, { headers: bearer(await signAs(hs, ISS.hs)) });
  t.equal(ok.status, 200, 'provider hs is admitted');
  t.equal(upstream.requests.at(-1)!.headers['x-auth-key-id'], 'hs');
});

t.test('require: a missing scope or a role outside the list is 403 insufficient_scope', async (t) => {
  const before = upstream.requests.length;
  const noScope = await signAs(rsa, ISS.rsa, { role: 'admin', scope: 'reports:write' });
  const wrongRole = await signAs(rsa, ISS.rsa, { role: 'viewer', scope: 'reports:read' });
  const noRole = await signAs(rsa, ISS.rsa, { scope: 'reports:read' });
  for (const token of [noScope, wrongRole, noRole]) assertRefused(t, await call(`${gh.url}/reports/1`, { headers: bearer(token) }), 'insufficient_scope', [token]);
  t.equal(upstream.requests.length, before, 'nothing forwarded');
  const analyst = await signAs(rsa, ISS.rsa, { role: 'analyst', scope: ['reports:read', 'x'] });
  t.equal((await call(`${gh.url}/reports/1`, { headers: bearer(analyst) })).status, 200, 'all scopes and one of the roles: admitted');
  t.equal(upstream.requests.at(-1)!.headers['x-auth-scopes'], 'reports:read x', 'array scopes are sent space-separated');
});

t.test('no credential on an authenticated route is 401 missing_credentials with the bare challenge', async (t) => {
  const before = upstream.requests.length;
  assertRefused(t, await call(`${gh.url}/api/a`), 'missing_credentials');
  assertRefused(t, await call(`${gh.url}/whoami`), 'missing_credentials');
  t.equal(upstream.requests.length, before);
});

t.test('the identity route answers the SPEC section 7 JSON without contacting the upstream', async (t) => {
  const before = upstream.requests.length;
  const token = await signAs(ec, ISS.ec, { role: 'admin', scope: 'a b', plan: 'pro' });
  const answer = await call(`${gh.url}/whoami`, { headers: bearer(token) });
  t.equal(answer.status, 200);
  t.equal(answer.headers['content-type'], 'application/json');
  t.same(answer.json, {
    authenticated: true,
    tenant: 'acme',
    subject: 'user-1',
    role: 'admin',
    scopes: ['a', 'b'],
    plan: 'pro',
    method: 'jwt',
    key_id: 'ec',
    expires_at: new Date((seconds(clock) + 3600) * 1000).toISOString(),
  });
  const byKey = await call(`${gh.url}/whoami`, { headers: { 'x-api-key': API_KEY } });
  t.same(byKey.json, { authenticated: true, tenant: 'acme', subject: 'svc-ci', role: null, scopes: [], plan: null, method: 'api-key', key_id: 'ci', expires_at: null });
  t.equal(upstream.requests.length, before, 'the upstream was not contacted');
});

t.test('forwardAuthorization: true forwards the Authorization header unchanged', async (t) => {
  const yaml = configYaml({ auth: authYaml(jwksFile, jwks.url), identity: '  forwardAuthorization: true', routes: ROUTES });
  const forwarding = await startGatehouse(yaml, { UPSTREAM: upstream.url, JWT_SECRET: HS_SECRET }, { clock });
  t.teardown(() => forwarding.close());
  const token = await signAs(rsa, ISS.rsa);
  t.equal((await call(`${forwarding.url}/api/a`, { headers: bearer(token) })).status, 200);
  t.equal(upstream.requests.at(-1)!.headers.authorization, `Bearer ${token}`);
  t.equal(upstream.requests.at(-1)!.headers['x-auth-key-id'], 'rsa', 'identity still injected');
  t.equal((await call(`${forwarding.url}/api/a`, { headers: { 'x-api-key': API_KEY } })).status, 200);
  t.equal(upstream.requests.at(-1)!.headers['x-api-key'], API_KEY, 'an X-API-Key credential is forwarded as well');
});

t.test('no token ever appears in a log line', async (t) => {
  t.ok(sentTokens.size > 20, 'many tokens were sent');
  for (const token of sentTokens) {
    const signature = token.split('.')[2] ?? '';
    t.notOk(gh.rawLogs.some((line) => line.includes(token) || (signature.length > 8 && line.includes(signature))), 'token not logged');
  }
});

t.test('/readyz is 503 until a jwksUrl provider has loaded keys, then 200 after a background refresh', async (t) => {
  const down = await JwksServer.start([rsa.jwk]);
  down.mode = 'down';
  t.teardown(() => down.close());
  const yaml = configYaml({
    admin: true,
    auth: `  jwt:
    providers:
      - name: remote
        issuer: ${ISS.rsa}
        audience: [${AUDIENCE}]
        algorithms: [RS256]
        jwksUrl: ${down.url}
        jwksCacheMaxAge: 1s
        jwksCooldown: 200ms
        claims: { tenant: org_id }`,
    routes: '  - name: api\n    match: { path: /** }\n    auth: jwt',
  });
  const running = await startGatehouse(yaml, { UPSTREAM: upstream.url }, { clock });
  t.teardown(() => running.close());
  await running.gateway.plan.jwt!.whenLoaded();
  const notReady = await call(`${running.adminUrl}/readyz`);
  t.equal(notReady.status, 503, 'not ready while no key set was ever loaded');
  const token = await signAs(rsa, ISS.rsa);
  assertRefused(t, await call(`${running.url}/api/a`, { headers: bearer(token) }), 'service_unavailable', [token]);
  down.mode = 'ok';
  await until(async () => (await call(`${running.adminUrl}/readyz`)).status === 200, 5000, '/readyz turns 200');
  t.equal((await call(`${running.url}/api/a`, { headers: bearer(token) })).status, 200, 'the token verifies once keys are loaded');
  t.equal((await call(`${running.adminUrl}/healthz`)).status, 200);
  down.mode = 'down';
  const fetches = down.requests;
  await until(() => down.requests > fetches + 1, 5000, 'a background refresh hits the dead JWKS endpoint');
  t.equal((await call(`${running.adminUrl}/readyz`)).status, 200, 'still ready: the last good key set keeps serving');
  t.equal((await call(`${running.url}/api/a`, { headers: bearer(token) })).status, 200, 'and tokens still verify');
});

t.test('one issuer, two providers: a token for both audiences passes a route of either provider', async (t) => {
  const clock = newClock();
  const up = await startUpstream();
  const provider = (name: string) =>
    `      - { name: ${name}, issuer: "https://auth.example.com/", audience: [${name}], algorithms: [HS256], secret: "\${JWT_SECRET}", claims: { tenant: org_id } }`;
  const auth = `  jwt:\n    providers:\n${provider('web')}\n${provider('mobile')}`;
  const routes = '  - name: m\n    match: { path: /mobile/** }\n    auth: [mobile]\n  - name: w\n    match: { path: /web/** }\n    auth: [web]';
  const gh = await startGatehouse(configYaml({ auth, routes }), { UPSTREAM: up.url, JWT_SECRET: HS_SECRET }, { clock });
  t.teardown(async () => {
    await gh.close();
    await up.close();
  });
  const token = (aud: string[]) => sign(hsKey(), clock, { iss: 'https://auth.example.com/', aud, org_id: 'acme' });
  const both = await token(['web', 'mobile']);
  for (const path of ['/web/x', '/mobile/x', '/web/x', '/mobile/x']) {
    const answer = await call(`${gh.url}${path}`, { headers: { authorization: `Bearer ${both}` } });
    t.equal(answer.status, 200, path);
    t.equal(up.requests.at(-1)?.headers['x-auth-key-id'], path.slice(1, -2), `${path}: the identity of the route's provider`);
  }
  assertRefused(t, await call(`${gh.url}/web/x`, { headers: { authorization: `Bearer ${await token(['mobile'])}` } }), 'invalid_token');
});
