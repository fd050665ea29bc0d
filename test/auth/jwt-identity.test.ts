// How a verified JWT becomes an Identity, and the verified-token cache in front of verification.
import t, { type Test } from 'tap';
import { createJwtAuthenticator, type JwtAuthenticator } from '../../src/auth/jwt.js';
import { ProxyError } from '../../src/http/errors.js';
import { silentLogger } from '../../src/observe/logger.js';
import { Metrics } from '../../src/observe/metrics.js';
import type { JwtProviderConfig } from '../../src/config/types.js';
import type { ManualClock } from '../../src/clock.js';
import { counterValue, makeKey, newClock, provider, seconds, sign } from '../support/jwt-fixtures.js';

const rsa = await makeKey('RS256', 'rsa-1');

function authenticator(t: Test, clock: ManualClock, o: Partial<JwtProviderConfig> = {}, extra: { metrics?: Metrics; cacheSize?: number } = {}): JwtAuthenticator {
  const a = createJwtAuthenticator([provider({ publicKey: rsa.spki, ...o })], { clock, logger: silentLogger, cacheSize: 0, ...extra });
  t.teardown(() => a.close());
  return a;
}

const auth = async (a: JwtAuthenticator, token: string) => a.authenticate({ kind: 'jwt', token });
const failure = (a: JwtAuthenticator, token: string) => auth(a, token).then(() => undefined, (e: ProxyError) => e);

t.test('a token without a tenant is refused when there is no default tenant', async (t) => {
  const clock = newClock();
  const err = await failure(authenticator(t, clock), await sign(rsa, clock, { org_id: undefined }));
  t.match(err, { code: 'invalid_token', reason: 'no_tenant' });
});

t.test('a token with an empty or non-scalar tenant counts as having none', async (t) => {
  const clock = newClock();
  const a = authenticator(t, clock);
  for (const org_id of ['', { id: 'x' }, ['acme'], null]) {
    t.match(await failure(a, await sign(rsa, clock, { org_id })), { code: 'invalid_token', reason: 'no_tenant' }, JSON.stringify(org_id));
  }
});

t.test('the default tenant is used when the token names none, never over one it names', async (t) => {
  const clock = newClock();
  const a = authenticator(t, clock, { defaultTenant: 'solo' });
  t.equal((await auth(a, await sign(rsa, clock, { org_id: undefined }))).tenant, 'solo');
  t.equal((await auth(a, await sign(rsa, clock, { org_id: 'acme' }))).tenant, 'acme');
});

t.test('claims are read through dot paths, and namespaced claim names with dots work', async (t) => {
  const clock = newClock();
  const claims = { tenant: 'org.id', subject: 'user.uid', role: 'https://example.com/role', scopes: 'authz.scopes', plan: 'org.billing.plan' };
  const a = authenticator(t, clock, { claims });
  const id = await auth(
    a,
    await sign(rsa, clock, {
      org: { id: 42, billing: { plan: 'enterprise' } },
      user: { uid: 'u-7' },
      'https://example.com/role': 'analyst',
      authz: { scopes: ['reports:read'] },
    }),
  );
  t.match(id, { tenant: '42', subject: 'u-7', role: 'analyst', scopes: ['reports:read'], plan: 'enterprise' });
});

t.test('a dot path never walks into the prototype chain', async (t) => {
  const clock = newClock();
  const a = authenticator(t, clock, { claims: { tenant: 'constructor.name', subject: 'sub', role: 'role', scopes: 'scope', plan: 'plan' } });
  t.match(await failure(a, await sign(rsa, clock)), { reason: 'no_tenant' });
});

t.test('scopes come from a space-separated string or an array of strings', async (t) => {
  const clock = newClock();
  const a = authenticator(t, clock);
  t.same((await auth(a, await sign(rsa, clock, { scope: 'reports:read  reports:write ' }))).scopes, ['reports:read', 'reports:write']);
  t.same((await auth(a, await sign(rsa, clock, { scope: ['reports:read', 7, 'admin'] }))).scopes, ['reports:read', 'admin']);
  t.same((await auth(a, await sign(rsa, clock, { scope: undefined }))).scopes, []);
});

t.test('missing role and plan are null; a token without subject is refused', async (t) => {
  const clock = newClock();
  const a = authenticator(t, clock);
  t.match(await auth(a, await sign(rsa, clock)), { role: null, plan: null });
  t.match(await failure(a, await sign(rsa, clock, { sub: undefined })), { code: 'invalid_token', reason: 'no_subject' });
});

t.test('the returned identity cannot be changed by a later stage', async (t) => {
  const clock = newClock();
  const id = await auth(authenticator(t, clock), await sign(rsa, clock, { scope: 'a' }));
  t.ok(Object.isFrozen(id) && Object.isFrozen(id.scopes) && Object.isFrozen(id.claims));
});

t.test('the second presentation of a token is a cache hit', async (t) => {
  const clock = newClock();
  const metrics = new Metrics();
  const a = authenticator(t, clock, {}, { metrics, cacheSize: 100 });
  const token = await sign(rsa, clock);
  const first = await auth(a, token);
  const second = a.authenticate({ kind: 'jwt', token });
  t.notOk(second instanceof Promise, 'answered directly, without a promise to await');
  t.equal(second, first, 'the same identity object is served');
  t.equal(await counterValue(metrics.verifiedTokenCache, { result: 'miss' }), 1);
  t.equal(await counterValue(metrics.verifiedTokenCache, { result: 'hit' }), 1);
});

t.test('a cached token stops verifying once exp passes on the injected clock', async (t) => {
  const clock = newClock();
  const metrics = new Metrics();
  const a = authenticator(t, clock, { clockToleranceMs: 0 }, { metrics, cacheSize: 100 });
  const token = await sign(rsa, clock, { exp: seconds(clock) + 60 });
  await auth(a, token);
  clock.advance(59_000);
  await auth(a, token);
  t.equal(await counterValue(metrics.verifiedTokenCache, { result: 'hit' }), 1, 'still served from cache before exp');
  clock.advance(1_000);
  t.match(await failure(a, token), { code: 'token_expired', reason: 'token_expired' });
  t.equal(await counterValue(metrics.verifiedTokenCache, { result: 'hit' }), 1, 'no hit at or after exp');
});

t.test('a cached token is re-verified after one JWKS refresh period, even if exp is later', async (t) => {
  const clock = newClock();
  const metrics = new Metrics();
  const a = authenticator(t, clock, { jwksCacheMaxAgeMs: 60_000 }, { metrics, cacheSize: 100 });
  const token = await sign(rsa, clock, { exp: seconds(clock) + 3600 });
  await auth(a, token);
  clock.advance(61_000);
  t.ok(await auth(a, token), 'still valid');
  t.equal(await counterValue(metrics.verifiedTokenCache, { result: 'miss' }), 2, 'verified again');
});

t.test('a failed verification is never cached', async (t) => {
  const clock = newClock();
  const a = authenticator(t, clock, { clockToleranceMs: 0 }, { cacheSize: 100 });
  const early = await sign(rsa, clock, { nbf: seconds(clock) + 10 });
  t.match(await failure(a, early), { reason: 'not_yet_valid' });
  clock.advance(10_000);
  t.ok(await auth(a, early), 'accepted once nbf is reached');
});

t.test('the cache is bounded: the least recently used token is evicted', async (t) => {
  const clock = newClock();
  const metrics = new Metrics();
  const a = authenticator(t, clock, {}, { metrics, cacheSize: 2 });
  const tokens = await Promise.all(['a', 'b', 'c'].map((sub) => sign(rsa, clock, { sub })));
  for (const token of tokens) await auth(a, token);
  await auth(a, tokens[2]);
  t.equal(await counterValue(metrics.verifiedTokenCache, { result: 'hit' }), 1, 'the newest is cached');
  await auth(a, tokens[0]);
  t.equal(await counterValue(metrics.verifiedTokenCache, { result: 'hit' }), 1, 'the oldest was evicted');
  t.equal(await counterValue(metrics.verifiedTokenCache, { result: 'miss' }), 4);
});

t.test('cacheSize 0 turns the cache off', async (t) => {
  const clock = newClock();
  const metrics = new Metrics();
  const a = authenticator(t, clock, {}, { metrics, cacheSize: 0 });
  const token = await sign(rsa, clock);
  const first = await auth(a, token);
  t.not(await auth(a, token), first, 'verified afresh');
  t.equal(await counterValue(metrics.verifiedTokenCache, { result: 'hit' }), 0);
});
