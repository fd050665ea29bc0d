// Remote and file JWKS: rotation, outages, slow and garbage answers, and unknown-kid storms.
import t, { type Test } from 'tap';
import { writeFileSync } from 'node:fs';
import { createJwtAuthenticator, type JwtAuthenticator } from '../../src/auth/jwt.js';
import { displayUrl, JwksKeySet } from '../../src/auth/jwks-cache.js';
import { ProxyError } from '../../src/http/errors.js';
import { createLogger, silentLogger } from '../../src/observe/logger.js';
import { Metrics } from '../../src/observe/metrics.js';
import type { JwtProviderConfig } from '../../src/config/types.js';
import type { ManualClock } from '../../src/clock.js';
import { JwksServer, counterValue, eventually, makeKey, newClock, provider, sign } from '../support/jwt-fixtures.js';

const k1 = await makeKey('RS256', 'k1');
const k2 = await makeKey('RS256', 'k2');
const k3 = await makeKey('RS256', 'k3');
const COOLDOWN = 10_000;

interface Setup {
  server: JwksServer;
  clock: ManualClock;
  metrics: Metrics;
  a: JwtAuthenticator;
  fetches: (outcome: 'ok' | 'error') => Promise<number>;
}

async function setup(t: Test, o: Partial<JwtProviderConfig> = {}, fetchTimeoutMs = 2000): Promise<Setup> {
  const server = await JwksServer.start([k1.jwk]);
  const clock = newClock();
  const metrics = new Metrics();
  const p = provider({ jwksUrl: server.url, jwksCooldownMs: COOLDOWN, ...o });
  const a = createJwtAuthenticator([p], { clock, metrics, logger: silentLogger, cacheSize: 0, jwksFetchTimeoutMs: fetchTimeoutMs });
  t.teardown(async () => {
    a.close();
    await server.close();
  });
  await a.whenLoaded();
  return { server, clock, metrics, a, fetches: (outcome) => counterValue(metrics.jwksFetches, { provider: 'sso', outcome }) };
}

const auth = async (a: JwtAuthenticator, token: string) => a.authenticate({ kind: 'jwt', token });
const failure = (a: JwtAuthenticator, token: string) => auth(a, token).then(() => undefined, (e: ProxyError) => e);

t.test('the JWKS is fetched at start without blocking, and ready() turns true after it', async (t) => {
  const server = await JwksServer.start([k1.jwk]);
  t.teardown(() => server.close());
  const clock = newClock();
  const a = createJwtAuthenticator([provider({ jwksUrl: server.url })], { clock, logger: silentLogger });
  t.teardown(() => a.close());
  t.equal(a.ready(), false, 'not ready while the first fetch runs');
  await a.whenLoaded();
  t.equal(a.ready(), true);
  t.equal(server.requests, 1);
  t.equal((await auth(a, await sign(k1, clock))).keyId, 'sso');
});

t.test('a new kid after the cooldown triggers exactly one re-fetch (key rotation)', async (t) => {
  const { server, clock, a, fetches } = await setup(t);
  server.publish([k1.jwk, k2.jwk]);
  clock.advance(COOLDOWN);
  t.ok(await auth(a, await sign(k2, clock)), 'the rotated key verifies');
  t.ok(await auth(a, await sign(k2, clock)), 'and keeps verifying without fetching');
  t.ok(await auth(a, await sign(k1, clock)), 'the old key still verifies');
  t.equal(server.requests, 2);
  t.equal(await fetches('ok'), 2);
});

t.test('an unknown kid within the cooldown causes no fetch', async (t) => {
  const { server, clock, a } = await setup(t);
  server.publish([k1.jwk, k2.jwk]);
  clock.advance(COOLDOWN - 1);
  t.match(await failure(a, await sign(k2, clock)), { code: 'invalid_token', reason: 'unknown_kid' });
  t.equal(server.requests, 1);
});

t.test('while the endpoint is down, the last good key set keeps serving', async (t) => {
  const { server, clock, a, fetches } = await setup(t);
  server.mode = 'down';
  clock.advance(COOLDOWN);
  t.match(await failure(a, await sign(k2, clock)), { reason: 'unknown_kid' }, 'the unknown kid triggered a fetch that failed');
  t.equal(await fetches('error'), 1);
  t.ok(await auth(a, await sign(k1, clock)), 'the cached kid still verifies');
  t.equal(a.ready(), true, 'still ready');
});

t.test('a cached kid verifies at once while a refresh hangs, and the hung fetch times out', async (t) => {
  const { server, clock, a, fetches } = await setup(t, {}, 300);
  server.mode = 'slow';
  clock.advance(COOLDOWN);
  const started = Date.now();
  const waiting = failure(a, await sign(k2, clock));
  await eventually(() => server.requests === 2);
  const before = Date.now();
  t.ok(await auth(a, await sign(k1, clock)), 'cached kid verified');
  t.ok(Date.now() - before < 150, 'without waiting for the hung refresh');
  t.match(await waiting, { reason: 'unknown_kid' }, 'the unknown kid fails once the fetch times out');
  t.ok(Date.now() - started < 1500, 'the fetch was time-bounded');
  t.equal(await fetches('error'), 1);
});

t.test('a background refresh that hangs never blocks a cached kid', async (t) => {
  const server = await JwksServer.start([k1.jwk]);
  const set = new JwksKeySet({ provider: 'sso', source: { kind: 'url', url: server.url }, cooldownMs: COOLDOWN, maxAgeMs: 600_000, fetchTimeoutMs: 500, clock: newClock(), logger: silentLogger });
  t.teardown(async () => {
    set.close();
    await server.close();
  });
  t.equal(await set.whenLoaded(), true);
  server.mode = 'slow';
  const refreshing = set.refresh();
  await eventually(() => server.requests === 2);
  const key = await Promise.race([set.getKey({ alg: 'RS256', kid: 'k1' }, { payload: '', signature: '' }), new Promise((r) => setTimeout(() => r('blocked'), 100))]);
  t.not(key, 'blocked', 'the key came from memory');
  t.equal(await refreshing, false, 'the hung refresh ends as a failure');
  t.equal(set.ready(), true);
});

t.test('concurrent refreshes share one fetch', async (t) => {
  const server = await JwksServer.start([k1.jwk]);
  const set = new JwksKeySet({ provider: 'sso', source: { kind: 'url', url: server.url }, cooldownMs: COOLDOWN, maxAgeMs: 600_000, clock: newClock(), logger: silentLogger });
  t.teardown(async () => {
    set.close();
    await server.close();
  });
  await set.whenLoaded();
  t.same(await Promise.all([set.refresh(), set.refresh(), set.refresh()]), [true, true, true]);
  t.equal(server.requests, 2, 'the start fetch and one shared refresh');
});

t.test('an answer other than 200 (IdP down, moved, rate limiting) is a failed fetch, never a crash', async (t) => {
  const { server, clock, a, fetches } = await setup(t);
  server.mode = 'status';
  server.body = 'x'.repeat(100_000);
  let expectedErrors = 0;
  for (const status of [500, 502, 503, 404, 429, 302, 304, 204]) {
    server.status = status;
    server.body = status === 204 || status === 304 ? '' : server.body;
    clock.advance(COOLDOWN);
    t.match(await failure(a, await sign(k2, clock)), { reason: 'unknown_kid' }, `${status}: the new kid is still unknown`);
    t.equal(await fetches('error'), ++expectedErrors, `${status}: counted as a failed fetch`);
    t.ok(await auth(a, await sign(k1, clock)), `${status}: the old key still verifies`);
  }
  // Give an unhandled 'error' event of a discarded body the turns it needs to surface (it would end this process).
  await new Promise((resolve) => setTimeout(resolve, 50));
});

t.test('an answer other than 200 at start: no keys, tokens refused as jwks_unavailable, no crash', async (t) => {
  const server = await JwksServer.start([k1.jwk]);
  server.mode = 'status';
  server.body = '<html>down</html>';
  const clock = newClock();
  const a = createJwtAuthenticator([provider({ jwksUrl: server.url, jwksCooldownMs: COOLDOWN })], { clock, logger: silentLogger, cacheSize: 0 });
  t.teardown(async () => {
    a.close();
    await server.close();
  });
  t.equal(await a.whenLoaded(), undefined);
  t.equal(a.ready(), false);
  t.match(await failure(a, await sign(k1, clock)), { status: 503, reason: 'jwks_unavailable' });
  await new Promise((resolve) => setTimeout(resolve, 50));
});

t.test('garbage answers are ignored and the old keys kept', async (t) => {
  const { server, clock, a, fetches } = await setup(t);
  const bodies = {
    'not JSON': '<html>oops</html>',
    'JSON without keys': '{"hello":"world"}',
    'keys not an array': '{"keys":"k2"}',
    'empty key set': '{"keys":[]}',
    'only a symmetric key': JSON.stringify({ keys: [{ kty: 'oct', k: 'c2VjcmV0', kid: 'k2' }] }),
    'only a private key': JSON.stringify({ keys: [{ ...k2.jwk, d: 'AAAA' }] }),
    'key with broken material': JSON.stringify({ keys: [{ ...k2.jwk, n: 'AAAA' }] }),
    'null': 'null',
  };
  server.mode = 'garbage';
  let expectedErrors = 0;
  for (const [name, body] of Object.entries(bodies)) {
    server.body = body;
    clock.advance(COOLDOWN);
    t.match(await failure(a, await sign(k2, clock)), { reason: 'unknown_kid' }, `${name}: the new kid is still unknown`);
    t.equal(await fetches('error'), ++expectedErrors, `${name}: counted as a failed fetch`);
    t.ok(await auth(a, await sign(k1, clock)), `${name}: the old key still verifies`);
  }
});

t.test('unusable keys are dropped from an otherwise good JWKS', async (t) => {
  const { server, clock, a } = await setup(t);
  server.publish([{ kty: 'oct', k: 'c2VjcmV0', kid: 'k2' }, k1.jwk]);
  clock.advance(COOLDOWN);
  t.match(await failure(a, await sign(k2, clock)), { reason: 'unknown_kid' }, 'the symmetric key was not loaded');
  t.ok(await auth(a, await sign(k1, clock)));
});

t.test('an unknown-kid storm causes at most one fetch per cooldown', async (t) => {
  const { server, clock, a } = await setup(t);
  const storm = async () => {
    const tokens = await Promise.all(Array.from({ length: 100 }, (_, i) => sign(k1, clock, {}, { kid: `random-${Math.random()}-${i}` })));
    const results = await Promise.all(tokens.map((token) => failure(a, token)));
    t.ok(results.every((e) => e?.reason === 'unknown_kid'), 'every token refused as unknown_kid');
  };
  await storm();
  t.equal(server.requests, 1, 'no fetch within the cooldown of the start fetch');
  clock.advance(COOLDOWN);
  await storm();
  t.equal(server.requests, 2, 'one shared fetch for 100 concurrent unknown kids');
  await storm();
  t.equal(server.requests, 2, 'none more within the cooldown');
  clock.advance(COOLDOWN);
  await storm();
  t.equal(server.requests, 3, 'one more once the cooldown passed');
});

t.test('without any key set, tokens are refused as jwks_unavailable until a fetch succeeds', async (t) => {
  const server = await JwksServer.start([k1.jwk]);
  server.mode = 'down';
  const clock = newClock();
  const a = createJwtAuthenticator([provider({ jwksUrl: server.url, jwksCooldownMs: COOLDOWN })], { clock, logger: silentLogger });
  t.teardown(async () => {
    a.close();
    await server.close();
  });
  await a.whenLoaded();
  t.equal(a.ready(), false);
  t.match(await failure(a, await sign(k1, clock)), { code: 'service_unavailable', reason: 'jwks_unavailable' });
  server.mode = 'ok';
  clock.advance(COOLDOWN);
  t.ok(await auth(a, await sign(k1, clock)), 'the next fetch after the cooldown recovers');
  t.equal(a.ready(), true);
});

t.test('the key set is refreshed in the background every maxAge, until close()', async (t) => {
  const server = await JwksServer.start([k1.jwk]);
  t.teardown(() => server.close());
  const set = new JwksKeySet({ provider: 'sso', source: { kind: 'url', url: server.url }, cooldownMs: COOLDOWN, maxAgeMs: 30, clock: newClock(), logger: silentLogger });
  await eventually(() => server.requests >= 3);
  set.close();
  await new Promise((r) => setTimeout(r, 50));
  const after = server.requests;
  await new Promise((r) => setTimeout(r, 120));
  t.equal(server.requests, after, 'no fetch after close()');
});

t.test('a JWKS file is loaded at start and re-read on an unknown kid', async (t) => {
  const dir = t.testdir({ 'jwks.json': JSON.stringify({ keys: [k1.jwk] }) });
  const clock = newClock();
  const metrics = new Metrics();
  const a = createJwtAuthenticator([provider({ jwksFile: `${dir}/jwks.json`, jwksCooldownMs: COOLDOWN })], { clock, metrics, logger: silentLogger });
  t.teardown(() => a.close());
  await a.whenLoaded();
  t.ok(await auth(a, await sign(k1, clock)));
  writeFileSync(`${dir}/jwks.json`, JSON.stringify({ keys: [k2.jwk] }));
  clock.advance(COOLDOWN);
  t.ok(await auth(a, await sign(k2, clock)), 'the rotated file key verifies');
  t.equal(await counterValue(metrics.jwksFetches, { provider: 'sso', outcome: 'ok' }), 2);
});

t.test('fetch failures are logged with provider and URL, never with keys', async (t) => {
  const lines: string[] = [];
  const logger = createLogger({ level: 'debug' }, { write: (line: string) => void lines.push(line) });
  const server = await JwksServer.start([k1.jwk]);
  const clock = newClock();
  const set = new JwksKeySet({ provider: 'sso', source: { kind: 'url', url: server.url }, cooldownMs: COOLDOWN, maxAgeMs: 600_000, clock, logger });
  t.teardown(async () => {
    set.close();
    await server.close();
  });
  await set.whenLoaded();
  server.mode = 'garbage';
  server.body = JSON.stringify({ keys: [{ ...k2.jwk, d: 'private-part' }] });
  t.equal(await set.refresh(), false);
  const failed = lines.map((l) => JSON.parse(l)).find((l) => /JWKS fetch failed/.test(l.msg));
  t.match(failed, { provider: 'sso', url: server.url, reason: 'the JWKS has no usable signature key' });
  const all = lines.join('\n');
  t.notOk(all.includes(k1.jwk.n as string) || all.includes(k2.jwk.n as string) || all.includes('private-part'), 'no key material in the logs');
});

t.test('a JWKS URL reaches logs without the credentials it may carry (user info, query)', async (t) => {
  const lines: string[] = [];
  const logger = createLogger({ level: 'debug' }, { write: (line: string) => void lines.push(line) });
  const server = await JwksServer.start([k1.jwk]);
  const secretUrl = server.url.replace('http://', 'http://svc:TopSecret-1@') + '?api_key=TopSecret-2';
  const set = new JwksKeySet({ provider: 'sso', source: { kind: 'url', url: secretUrl }, cooldownMs: COOLDOWN, maxAgeMs: 600_000, clock: newClock(), logger });
  t.teardown(async () => {
    set.close();
    await server.close();
  });
  await set.whenLoaded();
  server.mode = 'down';
  await set.refresh();
  t.ok(lines.length > 0, 'logged');
  t.notOk(lines.join('\n').includes('TopSecret'), 'no credential in the log');
  t.match(JSON.parse(lines.at(-1)!), { url: server.url.replace('http://', 'http://[redacted]@') + '?[redacted]' });
  t.equal(displayUrl('https://idp.example.com/jwks'), 'https://idp.example.com/jwks', 'a plain URL as is');
  t.equal(displayUrl('https://idp.example.com:8443/a/jwks?x=1'), 'https://idp.example.com:8443/a/jwks?[redacted]');
});

t.test('a reload takes over the JWKS of an unchanged provider: warm keys, no new fetch, survives the old close()', async (t) => {
  const server = await JwksServer.start([k1.jwk]);
  const clock = newClock();
  const sso = provider({ jwksUrl: server.url, jwksCooldownMs: COOLDOWN });
  const other = provider({ name: 'other', issuer: 'https://other.example.com/', jwksUrl: server.url, jwksCooldownMs: COOLDOWN });
  const before = createJwtAuthenticator([sso, other], { clock, logger: silentLogger, cacheSize: 0 });
  await before.whenLoaded();
  const fetched = server.requests;
  t.equal(fetched, 2, 'one fetch per provider at start');
  // The reload changes the other provider (its cooldown) and keeps sso as it was.
  const after = createJwtAuthenticator([sso, { ...other, jwksCooldownMs: COOLDOWN * 2 }], { clock, logger: silentLogger, cacheSize: 0, predecessor: before });
  t.teardown(async () => {
    after.close();
    await server.close();
  });
  before.close();
  await after.whenLoaded();
  t.equal(server.requests, fetched + 1, 'only the changed provider fetched again');
  server.mode = 'down';
  const identity = await auth(after, await sign(k1, clock));
  t.equal(identity.keyId, 'sso', 'the taken-over key set still verifies after the old authenticator closed');
});

t.test('a reload reads an unchanged JWKS file again: a key pulled from it is refused at once, cached tokens too', async (t) => {
  const dir = t.testdir({ 'jwks.json': JSON.stringify({ keys: [k1.jwk, k2.jwk] }) });
  const clock = newClock();
  const sso = provider({ jwksFile: `${dir}/jwks.json`, jwksCooldownMs: COOLDOWN });
  const before = createJwtAuthenticator([sso], { clock, logger: silentLogger });
  await before.whenLoaded();
  const leaked = await sign(k2, clock);
  t.ok(await auth(before, leaked), 'verified and cached');
  writeFileSync(`${dir}/jwks.json`, JSON.stringify({ keys: [k1.jwk] }));
  // The same config again (SIGHUP): the provider and its source are unchanged, so the key set is taken over.
  const after = createJwtAuthenticator([sso], { clock, logger: silentLogger, predecessor: before });
  before.close();
  t.teardown(() => after.close());
  t.match(await failure(after, await sign(k2, clock)), { reason: 'unknown_kid' }, 'a new token of the pulled key, right after the reload');
  t.match(await failure(after, leaked), { reason: 'unknown_kid' }, 'the token verified before');
  t.ok(await auth(after, await sign(k1, clock)), 'the key left in the file verifies');
});

t.test('a key dropped from the JWKS ends the cache entries of its tokens at the refresh that drops it', async (t) => {
  const server = await JwksServer.start([k1.jwk, k2.jwk]);
  const clock = newClock();
  const a = createJwtAuthenticator([provider({ jwksUrl: server.url, jwksCooldownMs: COOLDOWN })], { clock, logger: silentLogger, jwksFetchTimeoutMs: 2000 });
  t.teardown(async () => {
    a.close();
    await server.close();
  });
  await a.whenLoaded();
  /** Whether the token is answered from the cache (directly); a verification it starts instead is let finish. */
  const cached = (token: string) => {
    const answer = a.authenticate({ kind: 'jwt', token });
    if (!(answer instanceof Promise)) return true;
    answer.catch(() => undefined);
    return false;
  };
  const byK1 = await sign(k1, clock);
  const byK2 = await sign(k2, clock);
  t.ok(await auth(a, byK1));
  t.ok(await auth(a, byK2));
  t.ok(cached(byK1) && cached(byK2), 'both tokens: cache hits');
  // Rotation: the issuer adds k3 and drops k1; the first k3 token after the cooldown makes gatehouse re-fetch.
  server.publish([k2.jwk, k3.jwk]);
  clock.advance(COOLDOWN);
  t.ok(await auth(a, await sign(k3, clock)), 'k3 verifies after the re-fetch');
  t.equal(server.requests, 2);
  t.notOk(cached(byK1), 'the k1 token is no longer trusted from the cache');
  t.match(await failure(a, byK1), { code: 'invalid_token', reason: 'unknown_kid' }, 'and is refused');
  t.notOk(cached(byK2), 'the k2 token is verified again too (its provider dropped a key)');
  t.ok(await auth(a, byK2), 'and admitted');
  t.ok(cached(byK2), 'then cached again');
});

t.test('the key set generation moves only when a key is dropped', async (t) => {
  const server = await JwksServer.start([k1.jwk]);
  t.teardown(() => server.close());
  const set = new JwksKeySet({ provider: 'sso', source: { kind: 'url', url: server.url }, cooldownMs: COOLDOWN, maxAgeMs: 600_000, clock: newClock(), logger: silentLogger });
  t.teardown(() => set.close());
  await set.whenLoaded();
  const after = async (keys: typeof k1.jwk[]) => {
    server.publish(keys);
    t.equal(await set.refresh(), true);
    return set.generation;
  };
  t.equal(set.generation, 0, 'first load');
  t.equal(await after([k1.jwk]), 0, 'same keys');
  t.equal(await after([k1.jwk, k2.jwk]), 0, 'a key added');
  t.equal(await after([k2.jwk, k1.jwk]), 0, 'reordered');
  t.equal(await after([k2.jwk]), 1, 'k1 dropped');
  t.equal(await after([k3.jwk]), 2, 'k2 dropped');
});
