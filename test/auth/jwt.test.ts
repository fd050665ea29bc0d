// JWT verification: accepted tokens per algorithm, and one test per known attack.
import t, { type Test } from 'tap';
import { CompactSign, exportPKCS8, importPKCS8, type CryptoKey } from 'jose';
import { createJwtAuthenticator, type JwtAuthenticator } from '../../src/auth/jwt.js';
import { ProxyError } from '../../src/http/errors.js';
import { silentLogger } from '../../src/observe/logger.js';
import type { JwtProviderConfig } from '../../src/config/types.js';
import type { ManualClock } from '../../src/clock.js';
import { AUDIENCE, ISSUER, HS_SECRET, b64, hsKey, makeKey, newClock, provider, seconds, sign } from '../support/jwt-fixtures.js';

const rsa = await makeKey('RS256', 'rsa-1');
const otherRsa = await makeKey('RS256', 'rsa-1');
const ec = await makeKey('ES256', 'ec-1');
const ed = await makeKey('EdDSA', 'ed-1');
const hs = hsKey();

const rsaProvider = (o: Partial<JwtProviderConfig> = {}) => provider({ publicKey: rsa.spki, algorithms: ['RS256'], ...o });

function authenticator(t: Test, p: JwtProviderConfig, clock: ManualClock): JwtAuthenticator {
  const a = createJwtAuthenticator([p], { clock, logger: silentLogger, cacheSize: 0 });
  t.teardown(() => a.close());
  return a;
}

/** Asserts the exact refusal, and that the message never echoes the token or any part of it. */
async function refused(t: Test, a: JwtAuthenticator, token: string, code: string, reason: string): Promise<void> {
  const err = await Promise.resolve(a.authenticate({ kind: 'jwt', token })).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof ProxyError, 'throws a ProxyError');
  const e = err as ProxyError;
  t.equal(e.code, code, 'code');
  t.equal(e.reason, reason, 'reason');
  t.equal(e.status, 401);
  for (const part of token.split('.').filter((p) => p.length > 3)) t.notOk(e.message.includes(part), 'message does not echo the token');
}

const ok = async (a: JwtAuthenticator, token: string) => a.authenticate({ kind: 'jwt', token });

t.test('accepts tokens signed with each supported algorithm family', async (t) => {
  const clock = newClock();
  const cases = [
    { key: rsa, p: rsaProvider() },
    { key: ec, p: provider({ publicKey: ec.spki, algorithms: ['ES256'] }) },
    { key: ed, p: provider({ publicKey: ed.spki, algorithms: ['EdDSA'] }) },
    { key: hs, p: provider({ secret: HS_SECRET, algorithms: ['HS256'] }) },
  ];
  for (const { key, p } of cases) {
    const token = await sign(key, clock, { role: 'admin', scope: 'a b', plan: 'pro' });
    const id = await ok(authenticator(t, p, clock), token);
    t.match(id, { tenant: 'acme', subject: 'user-1', role: 'admin', scopes: ['a', 'b'], plan: 'pro', method: 'jwt', keyId: 'sso', readOnly: false }, key.alg);
    t.equal(id.expiresAt, (seconds(clock) + 3600) * 1000, `${key.alg}: expiresAt is exp in ms`);
    t.equal(id.claims?.org_id, 'acme', `${key.alg}: claims carry the payload`);
  }
});

t.test('local keys are ready at once', async (t) => {
  t.equal(authenticator(t, rsaProvider(), newClock()).ready(), true);
});

t.test('a signature made with another key is refused (forged signature)', async (t) => {
  const clock = newClock();
  await refused(t, authenticator(t, rsaProvider(), clock), await sign(otherRsa, clock), 'invalid_token', 'bad_signature');
});

t.test('a payload changed after signing is refused (tampered payload)', async (t) => {
  const clock = newClock();
  const [h, p, s] = (await sign(rsa, clock, { role: 'user' })).split('.');
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString());
  const tampered = `${h}.${b64({ ...claims, role: 'admin' })}.${s}`;
  await refused(t, authenticator(t, rsaProvider(), clock), tampered, 'invalid_token', 'bad_signature');
});

t.test('a token with its signature removed is refused', async (t) => {
  const clock = newClock();
  const [h, p] = (await sign(rsa, clock)).split('.');
  await refused(t, authenticator(t, rsaProvider(), clock), `${h}.${p}.`, 'invalid_token', 'bad_signature');
});

t.test('alg "none" is never accepted, whatever its case', async (t) => {
  const clock = newClock();
  const a = authenticator(t, rsaProvider(), clock);
  const payload = b64({ iss: ISSUER, aud: AUDIENCE, sub: 'x', org_id: 'acme', exp: seconds(clock) + 60 });
  for (const alg of ['none', 'None', 'NONE']) {
    await refused(t, a, `${b64({ alg, typ: 'JWT' })}.${payload}.`, 'invalid_token', 'alg_not_allowed');
  }
});

t.test('HS256 signed with the RSA public key PEM is refused by an RS256 provider (algorithm confusion)', async (t) => {
  const clock = newClock();
  const forged = await sign({ ...hs, privateKey: new TextEncoder().encode(rsa.spki) }, clock);
  await refused(t, authenticator(t, rsaProvider(), clock), forged, 'invalid_token', 'alg_not_allowed');
});

t.test('a kid naming a key of another type is refused', async (t) => {
  const clock = newClock();
  const dir = t.testdir({ 'jwks.json': JSON.stringify({ keys: [rsa.jwk, ec.jwk] }) });
  const a = createJwtAuthenticator([provider({ jwksFile: `${dir}/jwks.json`, algorithms: ['RS256', 'ES256'] })], { clock, logger: silentLogger });
  t.teardown(() => a.close());
  await a.whenLoaded();
  t.ok(await ok(a, await sign(ec, clock)), 'the EC key verifies under its own kid');
  await refused(t, a, await sign(ec, clock, {}, { kid: rsa.kid }), 'invalid_token', 'key_type_mismatch');
  await refused(t, a, await sign(rsa, clock, {}, { kid: ec.kid }), 'invalid_token', 'key_type_mismatch');
});

t.test('a token without kid is tried against each key of its type in the JWKS', async (t) => {
  const clock = newClock();
  const rsa2 = await makeKey('RS256', 'rsa-2');
  const dir = t.testdir({ 'jwks.json': JSON.stringify({ keys: [rsa.jwk, rsa2.jwk] }) });
  const a = createJwtAuthenticator([provider({ jwksFile: `${dir}/jwks.json`, algorithms: ['RS256', 'ES256'] })], { clock, logger: silentLogger });
  t.teardown(() => a.close());
  await a.whenLoaded();
  t.ok(await ok(a, await sign(rsa2, clock, {}, { kid: null })), 'the second RSA key verifies');
  await refused(t, a, await sign(otherRsa, clock, {}, { kid: null }), 'invalid_token', 'bad_signature');
  await refused(t, a, await sign(ec, clock, {}, { kid: null }), 'invalid_token', 'no_matching_key');
});

t.test('an exp that JSON reads as Infinity is refused', async (t) => {
  const clock = newClock();
  const payload = `{"iss":"${ISSUER}","aud":"${AUDIENCE}","sub":"u","org_id":"acme","exp":1e400}`;
  const token = await new CompactSign(new TextEncoder().encode(payload)).setProtectedHeader({ alg: 'HS256' }).sign(hs.privateKey);
  await refused(t, authenticator(t, provider({ secret: HS_SECRET, algorithms: ['HS256'] }), clock), token, 'invalid_token', 'invalid_claims');
});

t.test('an exp beyond the last date JavaScript can hold is refused; the last one is taken', async (t) => {
  const clock = newClock();
  const a = authenticator(t, provider({ secret: HS_SECRET, algorithms: ['HS256'] }), clock);
  for (const exp of [9e12, 8.64e12 + 1]) {
    const payload = `{"iss":"${ISSUER}","aud":"${AUDIENCE}","sub":"u","org_id":"acme","exp":${exp}}`;
    const token = await new CompactSign(new TextEncoder().encode(payload)).setProtectedHeader({ alg: 'HS256' }).sign(hs.privateKey);
    await refused(t, a, token, 'invalid_token', 'invalid_claims');
  }
  const last = await sign(hs, clock, { exp: 8.64e12 });
  const identity = await a.authenticate({ kind: 'jwt', token: last });
  t.equal(new Date(identity.expiresAt!).toISOString(), '+275760-09-13T00:00:00.000Z', 'its expiry is a date');
});

t.test('an unknown critical header extension is refused', async (t) => {
  const clock = newClock();
  const token = await sign(rsa, clock, {}, { header: { crit: ['x-bound'], 'x-bound': true } as object, signOptions: { crit: { 'x-bound': true } } });
  await refused(t, authenticator(t, rsaProvider(), clock), token, 'invalid_token', 'unsupported_crit');
});

t.test('an expired token is refused as token_expired', async (t) => {
  const clock = newClock();
  const a = authenticator(t, rsaProvider(), clock);
  const token = await sign(rsa, clock, { exp: seconds(clock) - 31 });
  await refused(t, a, token, 'token_expired', 'token_expired');
  const err = await ok(a, token).catch((e: ProxyError) => e);
  t.equal((err as ProxyError).message, 'the token has expired');
});

t.test('a token whose nbf is in the future is refused', async (t) => {
  const clock = newClock();
  await refused(t, authenticator(t, rsaProvider(), clock), await sign(rsa, clock, { nbf: seconds(clock) + 31 }), 'invalid_token', 'not_yet_valid');
});

t.test('exp and nbf within clockTolerance are accepted', async (t) => {
  const clock = newClock();
  const a = authenticator(t, rsaProvider({ clockToleranceMs: 30_000 }), clock);
  t.ok(await ok(a, await sign(rsa, clock, { exp: seconds(clock) - 20 })), 'expired 20s ago, tolerance 30s');
  t.ok(await ok(a, await sign(rsa, clock, { nbf: seconds(clock) + 20 })), 'valid in 20s, tolerance 30s');
});

t.test('a token from an unknown issuer is refused', async (t) => {
  const clock = newClock();
  await refused(t, authenticator(t, rsaProvider(), clock), await sign(rsa, clock, { iss: 'https://evil.example.com/' }), 'invalid_token', 'unknown_issuer');
  await refused(t, authenticator(t, rsaProvider(), clock), await sign(rsa, clock, { iss: undefined }), 'invalid_token', 'unknown_issuer');
});

t.test('a token for another audience is refused; one of several audiences is enough', async (t) => {
  const clock = newClock();
  const a = authenticator(t, rsaProvider({ audience: ['api', 'admin-api'] }), clock);
  await refused(t, a, await sign(rsa, clock, { aud: 'billing' }), 'invalid_token', 'wrong_audience');
  await refused(t, a, await sign(rsa, clock, { aud: undefined }), 'invalid_token', 'wrong_audience');
  t.ok(await ok(a, await sign(rsa, clock, { aud: ['billing', 'admin-api'] })));
});

t.test('a token without exp is refused', async (t) => {
  const clock = newClock();
  await refused(t, authenticator(t, rsaProvider(), clock), await sign(rsa, clock, { exp: undefined }), 'invalid_token', 'missing_exp');
});

t.test('a correctly signed token whose alg is not in the allowlist is refused', async (t) => {
  const clock = newClock();
  // The same RSA key material, used with PS256: a valid signature, just not an allowed algorithm.
  const psKey = await importPKCS8(await exportPKCS8(rsa.privateKey as CryptoKey), 'PS256');
  const ps = await sign({ ...rsa, alg: 'PS256', privateKey: psKey }, clock);
  t.ok(await ok(authenticator(t, rsaProvider({ algorithms: ['RS256', 'PS256'] }), clock), ps), 'verifies where PS256 is allowed');
  await refused(t, authenticator(t, rsaProvider({ algorithms: ['RS256'] }), clock), ps, 'invalid_token', 'alg_not_allowed');
  const hs384 = await sign(hs, clock, {}, { alg: 'HS384' });
  await refused(t, authenticator(t, provider({ secret: HS_SECRET, algorithms: ['HS256'] }), clock), hs384, 'invalid_token', 'alg_not_allowed');
});

t.test('malformed tokens are refused as malformed', async (t) => {
  const clock = newClock();
  const a = authenticator(t, rsaProvider(), clock);
  const [h, p, s] = (await sign(rsa, clock)).split('.');
  const cases = {
    garbage: 'this-is-not-a-token',
    'two parts': `${h}.${p}`,
    'four parts': `${h}.${p}.${s}.${s}`,
    'non-JSON header': `${Buffer.from('{oops').toString('base64url')}.${p}.${s}`,
    'non-JSON payload': `${h}.${Buffer.from('nope').toString('base64url')}.${s}`,
    'header without alg': `${b64({ typ: 'JWT' })}.${p}.${s}`,
    'empty string': '',
  };
  for (const [name, token] of Object.entries(cases)) {
    t.test(name, (t) => refused(t, a, token, 'invalid_token', 'malformed'));
  }
});

t.test('an API key credential is refused by the JWT authenticator', async (t) => {
  const a = authenticator(t, rsaProvider(), newClock());
  const err = await Promise.resolve(a.authenticate({ kind: 'api-key', key: 'gh_123' })).catch((e: ProxyError) => e);
  t.match(err, { code: 'invalid_token', reason: 'wrong_credential_kind' });
});

t.test('providers sharing an issuer: a token both accept takes the identity of the one the route accepts', async (t) => {
  const clock = newClock();
  const a = createJwtAuthenticator(
    [rsaProvider({ name: 'web', audience: ['web'] }), rsaProvider({ name: 'mobile', audience: ['mobile'] }), rsaProvider({ name: 'tv', audience: ['tv'] })],
    { clock, logger: silentLogger },
  );
  t.teardown(() => a.close());
  const both = await sign(rsa, clock, { aud: ['web', 'mobile'] });
  const identity = (accepted: ReadonlySet<string> | null) => Promise.resolve(a.authenticate({ kind: 'jwt', token: both }, accepted));
  t.equal((await identity(null)).keyId, 'web', 'any provider: the first in config order');
  t.equal((await identity(new Set(['mobile']))).keyId, 'mobile', 'a route of mobile only: mobile, from the cache entry of web');
  const again = a.authenticate({ kind: 'jwt', token: both }, new Set(['mobile']));
  t.notOk(again instanceof Promise, 'again: answered from the cache, without verifying');
  t.equal((await again).keyId, 'mobile');
  t.equal((await identity(null)).keyId, 'web', 'the cache still holds the config-order identity');
  t.equal((await identity(new Set(['web', 'mobile']))).keyId, 'web', 'both accepted: the first');
  t.equal((await identity(new Set(['tv']))).keyId, 'web', 'tv does not accept the token: the identity stands (and the route refuses it)');
  const fresh = await sign(rsa, clock, { aud: ['web', 'mobile'], sub: 'fresh' });
  t.equal((await Promise.resolve(a.authenticate({ kind: 'jwt', token: fresh }, new Set(['mobile'])))).keyId, 'mobile', 'a cache miss on a mobile route');
  t.equal((await Promise.resolve(a.authenticate({ kind: 'jwt', token: fresh }, null))).keyId, 'web', 'and the cache keeps config order');
});

t.test('providers sharing an issuer are tried in order; the matching audience wins', async (t) => {
  const clock = newClock();
  const a = createJwtAuthenticator(
    [rsaProvider({ name: 'web', audience: ['web'] }), rsaProvider({ name: 'mobile', audience: ['mobile'] })],
    { clock, logger: silentLogger },
  );
  t.teardown(() => a.close());
  t.same(a.providerNames, ['web', 'mobile']);
  t.equal((await ok(a, await sign(rsa, clock, { aud: 'mobile' }))).keyId, 'mobile');
  await refused(t, a, await sign(rsa, clock, { aud: 'mobile', exp: seconds(clock) - 60 }), 'token_expired', 'token_expired');
  await refused(t, a, await sign(rsa, clock, { aud: 'tv' }), 'invalid_token', 'wrong_audience');
});
