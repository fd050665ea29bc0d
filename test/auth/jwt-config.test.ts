// Config-time algorithm checks, and the cheap "is this Bearer value a JWT?" test of SPEC section 3.
import t from 'tap';
import { generateKeyPairSync } from 'node:crypto';
import { createJwtAuthenticator, looksLikeJwt, validateProviderAlgorithms } from '../../src/auth/jwt.js';
import { silentLogger } from '../../src/observe/logger.js';
import { HS_SECRET, b64, makeKey, newClock, provider, sign } from '../support/jwt-fixtures.js';

const rsa = await makeKey('RS256', 'rsa-1');
const ec = await makeKey('ES256', 'ec-1');
const ed = await makeKey('EdDSA', 'ed-1');

t.test('sound providers pass the algorithm checks', async (t) => {
  t.same(validateProviderAlgorithms(provider({ secret: HS_SECRET, algorithms: ['HS256', 'HS512'] })), []);
  t.same(validateProviderAlgorithms(provider({ jwksUrl: 'https://idp/jwks', algorithms: ['RS256', 'ES256', 'EdDSA', 'PS512'] })), []);
  t.same(validateProviderAlgorithms(provider({ publicKey: rsa.spki, algorithms: ['RS256', 'PS256'] })), []);
  t.same(validateProviderAlgorithms(provider({ publicKey: ec.spki, algorithms: ['ES256'] })), []);
  t.same(validateProviderAlgorithms(provider({ publicKey: ed.spki, algorithms: ['EdDSA', 'Ed25519'] })), []);
});

t.test('algorithm lists that would allow confusion or forgery are refused', async (t) => {
  const cases: [string, Parameters<typeof provider>[0], RegExp][] = [
    ['secret with an asymmetric alg', { secret: HS_SECRET, algorithms: ['HS256', 'RS256'] }, /"RS256" is asymmetric/],
    ['public key with HS256', { publicKey: rsa.spki, algorithms: ['RS256', 'HS256'] }, /"HS256" is symmetric/],
    ['JWKS URL with HS256', { jwksUrl: 'https://idp/jwks', algorithms: ['HS256'] }, /"HS256" is symmetric/],
    ['JWKS file with HS512', { jwksFile: '/etc/jwks.json', algorithms: ['HS512'] }, /"HS512" is symmetric/],
    ['none', { jwksUrl: 'https://idp/jwks', algorithms: ['RS256', 'none'] }, /"none" is never accepted/],
    ['NONE in capitals', { secret: HS_SECRET, algorithms: ['NONE'] }, /"none" is never accepted/],
    ['empty list', { jwksUrl: 'https://idp/jwks', algorithms: [] }, /at least one algorithm/],
    ['unknown alg', { jwksUrl: 'https://idp/jwks', algorithms: ['RS257'] }, /"RS257" is not a supported algorithm/],
    ['EC key with RS256', { publicKey: ec.spki, algorithms: ['RS256'] }, /"RS256" cannot be verified with this publicKey \(a EC P-256 key\)/],
    ['RSA key with ES256', { publicKey: rsa.spki, algorithms: ['ES256'] }, /"ES256" cannot be verified/],
    ['not a PEM', { publicKey: 'hello', algorithms: ['RS256'] }, /not a valid PEM public key/],
    ['two key sources', { secret: HS_SECRET, jwksUrl: 'https://idp/jwks', algorithms: ['HS256'] }, /exactly one of/],
    ['no key source', { algorithms: ['RS256'] }, /exactly one of .* \(found none\)/],
    ['empty secret', { secret: '', algorithms: ['HS256'] }, /secret: must not be empty/],
  ];
  for (const [name, o, expected] of cases) {
    const errors = validateProviderAlgorithms(provider(o));
    t.ok(errors.some((e) => expected.test(e)), `${name}: ${errors.join(' | ')}`);
  }
});

t.test('a private key PEM or a weak RSA key is refused as publicKey', async (t) => {
  const weak = generateKeyPairSync('rsa', { modulusLength: 1024 });
  const weakPem = weak.publicKey.export({ type: 'spki', format: 'pem' }).toString();
  t.match(validateProviderAlgorithms(provider({ publicKey: weakPem })), [/at least 2048 bits \(this one has 1024\)/]);
  const privatePem = weak.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  t.match(validateProviderAlgorithms(provider({ publicKey: privatePem })), [/this is a private key/]);
});

t.test('every problem is reported at once', async (t) => {
  t.equal(validateProviderAlgorithms(provider({ secret: HS_SECRET, algorithms: ['none', 'RS256', 'ES256'] })).length, 3);
});

t.test('building an authenticator from an unsound provider throws', async (t) => {
  t.throws(() => createJwtAuthenticator([provider({ publicKey: rsa.spki, algorithms: ['HS256'] })], { clock: newClock(), logger: silentLogger }), /JWT provider "sso": .*"HS256" is symmetric/);
});

t.test('looksLikeJwt tells JWTs from API keys without throwing', async (t) => {
  const token = await sign(rsa, newClock());
  const [h, p, s] = token.split('.');
  const cases: [string, string, boolean][] = [
    ['a signed JWT', token, true],
    ['an unsigned JWT (empty signature)', `${h}.${p}.`, true],
    ['an API key', 'gh_live_4f9a8b7c6d5e4f3a2b1c', false],
    ['empty', '', false],
    ['two parts', `${h}.${p}`, false],
    ['four parts', `${h}.${p}.${s}.${s}`, false],
    ['empty payload', `${h}..${s}`, false],
    ['header not JSON', `${Buffer.from('{nope').toString('base64url')}.${p}.${s}`, false],
    ['header JSON without alg', `${b64({ typ: 'JWT' })}.${p}.${s}`, false],
    ['alg not a string', `${b64({ alg: 256 })}.${p}.${s}`, false],
    ['header is an array', `${b64(['alg'])}.${p}.${s}`, false],
    ['header is null', `${b64(null)}.${p}.${s}`, false],
    ['characters outside base64url', `${h}.${p}.${s}+/=`, false],
    ['padded base64', `${h}=.${p}.${s}`, false],
    ['huge header', `${'A'.repeat(5000)}.${p}.${s}`, false],
    ['dots only', '..', false],
  ];
  for (const [name, value, expected] of cases) t.equal(looksLikeJwt(value), expected, name);
  // Header verdicts are remembered: the second time round must answer the same from memory.
  for (const [name, value, expected] of cases) t.equal(looksLikeJwt(value), expected, `${name}, seen before`);
  // More distinct headers than are remembered: verdicts stay right after the memory is cleared.
  for (let i = 0; i < 600; i++) {
    const header = i % 2 ? b64({ alg: 'HS256', kid: `k${i}` }) : b64({ kid: `k${i}` });
    if (looksLikeJwt(`${header}.${p}.${s}`) !== (i % 2 === 1)) t.fail(`header ${i}`);
  }
  t.equal(looksLikeJwt(token), true, 'a known header after the churn');
  t.equal(looksLikeJwt(`${b64({ typ: 'JWT' })}.${p}.${s}`), false, 'a known bad header after the churn');
});
