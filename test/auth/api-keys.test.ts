import t from 'tap';
import { createHash } from 'node:crypto';
import { ManualClock } from '../../src/clock.js';
import type { ApiKeyEntry } from '../../src/config/types.js';
import { ProxyError } from '../../src/http/errors.js';
import { ApiKeyAuthenticator, duplicateKeyErrors, hashApiKey } from '../../src/auth/api-keys.js';

const KEY = 'gh_live_Zq3vN0m2b8Xy4Lr7Tt1Pq9Ws6Ke5Hd0Ja2Uc8Fo3Gi7';
const START = Date.UTC(2026, 0, 1);

function entry(over: Partial<ApiKeyEntry> = {}): ApiKeyEntry {
  return {
    id: 'ci-pipeline',
    hash: hashApiKey(KEY),
    tenant: 'acme',
    subject: 'svc-ci',
    role: 'admin',
    scopes: ['reports:read', 'reports:write'],
    access: 'full',
    plan: 'pro',
    expiresAt: null,
    disabled: false,
    ...over,
  };
}

/** What a refusal carries, for exact comparison; fails the test when nothing or something else is thrown. */
function refusal(fn: () => unknown): { code: string; reason: string; status: number; message: string } {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof ProxyError)) throw err;
    return { code: err.code, reason: err.reason, status: err.status, message: err.message };
  }
  throw new Error('expected a ProxyError, nothing was thrown');
}

const INVALID = 'the API key is not valid';
const UNKNOWN = { code: 'invalid_token', reason: 'unknown_key', status: 401, message: INVALID };
const EXPIRED = { code: 'token_expired', reason: 'expired_key', status: 401, message: 'the API key has expired' };

/** Presents `key` and returns the refusal. */
const refuse = (auth: ApiKeyAuthenticator, key: string) => refusal(() => auth.authenticate({ kind: 'api-key', key }));

t.test('hashApiKey is the lowercase hex SHA-256 of the whole key', async (t) => {
  t.equal(hashApiKey('test'), '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08');
  t.equal(hashApiKey(KEY), createHash('sha256').update(KEY).digest('hex'));
});

t.test('a valid key resolves to its precomputed identity with every field', async (t) => {
  const auth = new ApiKeyAuthenticator([entry({ expiresAt: START + 1000 })], { clock: new ManualClock(START) });
  t.equal(auth.kind, 'api-key');
  t.equal(auth.ready(), true);
  const identity = auth.authenticate({ kind: 'api-key', key: KEY });
  t.strictSame(identity, {
    tenant: 'acme',
    subject: 'svc-ci',
    role: 'admin',
    scopes: ['reports:read', 'reports:write'],
    plan: 'pro',
    method: 'api-key',
    keyId: 'ci-pipeline',
    expiresAt: START + 1000,
    readOnly: false,
    claims: null,
  });
  t.equal(auth.authenticate({ kind: 'api-key', key: KEY }), identity, 'the same frozen object every time: no allocation per lookup');
  t.ok(Object.isFrozen(identity) && Object.isFrozen(identity.scopes), 'identity and scopes are frozen');
});

t.test('the identity does not change when the config entry is mutated afterwards', async (t) => {
  const e = entry();
  const auth = new ApiKeyAuthenticator([e], { clock: new ManualClock(START) });
  e.scopes.push('admin:all');
  e.tenant = 'evil';
  const identity = auth.authenticate({ kind: 'api-key', key: KEY });
  t.strictSame(identity.scopes, ['reports:read', 'reports:write']);
  t.equal(identity.tenant, 'acme');
});

t.test('a read-only key resolves with readOnly true and a null role/plan stays null', async (t) => {
  const auth = new ApiKeyAuthenticator([entry({ access: 'read-only', role: null, plan: null, scopes: [] })], {
    clock: new ManualClock(START),
  });
  const identity = auth.authenticate({ kind: 'api-key', key: KEY });
  t.equal(identity.readOnly, true);
  t.equal(identity.role, null);
  t.equal(identity.plan, null);
  t.strictSame(identity.scopes, []);
});

t.test('keys are compared exactly: near misses are unknown keys', async (t) => {
  const auth = new ApiKeyAuthenticator([entry()], { clock: new ManualClock(START) });
  const lastChanged = KEY.slice(0, -1) + (KEY.endsWith('7') ? '8' : '7');
  const cases: [string, string][] = [
    ['last character changed', lastChanged],
    ['last character dropped', KEY.slice(0, -1)],
    ['one character appended', KEY + 'x'],
    ['leading space', ` ${KEY}`],
    ['trailing space', `${KEY} `],
    ['trailing newline', `${KEY}\n`],
    ['surrounding tabs', `\t${KEY}\t`],
    ['upper-cased', KEY.toUpperCase()],
    ['the hash instead of the key', hashApiKey(KEY)],
  ];
  for (const [name, key] of cases) {
    t.test(name, async (t) => t.strictSame(refuse(auth, key), UNKNOWN));
  }
});

t.test('an empty key is refused as invalid_token', async (t) => {
  // Even if someone configured the hash of the empty string, an empty key must not authenticate.
  const auth = new ApiKeyAuthenticator([entry({ hash: hashApiKey('') })], { clock: new ManualClock(START) });
  t.strictSame(refuse(auth, ''), { ...UNKNOWN, reason: 'empty_key' });
});

t.test('a JWT credential handed to the API-key authenticator is refused', async (t) => {
  const auth = new ApiKeyAuthenticator([entry()], { clock: new ManualClock(START) });
  t.strictSame(refusal(() => auth.authenticate({ kind: 'jwt', token: KEY })), {
    code: 'invalid_token',
    reason: 'wrong_credential_kind',
    status: 401,
    message: 'the credential is not an API key',
  });
});

t.test('a disabled key is invalid_token with the same message as an unknown key', async (t) => {
  // Expired as well: disabled must win, a revoked key never reports anything about its expiry.
  const auth = new ApiKeyAuthenticator([entry({ disabled: true, expiresAt: START - 1 })], { clock: new ManualClock(START) });
  t.strictSame(refuse(auth, KEY), { ...UNKNOWN, reason: 'disabled_key' });
});

t.test('a key is accepted until just before expiresAt and token_expired from expiresAt on', async (t) => {
  const clock = new ManualClock(START);
  const expiresAt = START + 60_000;
  const auth = new ApiKeyAuthenticator([entry({ expiresAt })], { clock });
  clock.set(expiresAt - 1);
  t.equal(auth.authenticate({ kind: 'api-key', key: KEY }).keyId, 'ci-pipeline', '1 ms before expiry is accepted');
  clock.set(expiresAt);
  t.strictSame(refuse(auth, KEY), EXPIRED);
  clock.advance(86_400_000);
  t.strictSame(refuse(auth, KEY), EXPIRED);
});

t.test('several keys each resolve to their own identity', async (t) => {
  const other = 'gh_live_other';
  const auth = new ApiKeyAuthenticator([entry(), entry({ id: 'reader', hash: hashApiKey(other), tenant: 'globex', access: 'read-only' })], {
    clock: new ManualClock(START),
  });
  t.equal(auth.size, 2);
  t.equal(auth.authenticate({ kind: 'api-key', key: KEY }).keyId, 'ci-pipeline');
  const reader = auth.authenticate({ kind: 'api-key', key: other });
  t.equal(reader.keyId, 'reader');
  t.equal(reader.tenant, 'globex');
  t.equal(reader.readOnly, true);
});

t.test('duplicateKeyErrors names duplicate ids and hashes by id, never by hash', async (t) => {
  const a = hashApiKey('a');
  const b = hashApiKey('b');
  const errors = duplicateKeyErrors([
    { id: 'one', hash: a },
    { id: 'two', hash: b },
    { id: 'one', hash: hashApiKey('c') },
    { id: 'three', hash: b.toUpperCase() },
  ]);
  t.strictSame(errors, [
    'duplicate API key id "one" (entries 1 and 3)',
    'API keys "two" and "three" have the same hash: one key is listed twice',
  ]);
  for (const message of errors) t.notMatch(message, /[0-9a-f]{64}/i, 'no hash in the message');
  t.strictSame(duplicateKeyErrors([{ id: 'one', hash: a }, { id: 'two', hash: b }]), [], 'distinct entries give no errors');
  t.strictSame(duplicateKeyErrors([]), []);
});

t.test('the constructor refuses duplicates and malformed hashes instead of picking one silently', async (t) => {
  const clock = new ManualClock(START);
  t.throws(() => new ApiKeyAuthenticator([entry(), entry({ id: 'copy' })], { clock }), {
    message: 'invalid API key table: API keys "ci-pipeline" and "copy" have the same hash: one key is listed twice',
  });
  t.throws(() => new ApiKeyAuthenticator([entry({ hash: `sha256:${hashApiKey(KEY)}` })], { clock }), {
    message: 'invalid API key table: API key "ci-pipeline" has a malformed hash',
  });
  t.throws(() => new ApiKeyAuthenticator([entry({ hash: hashApiKey(KEY).toUpperCase() })], { clock }), {
    message: 'invalid API key table: API key "ci-pipeline" has a malformed hash',
  });
  t.equal(new ApiKeyAuthenticator([], { clock }).size, 0, 'an empty table is fine');
});

t.test('100,000 keys: the table builds and every probed lookup is right', async (t) => {
  const count = 100_000;
  const keys: string[] = [];
  const entries: ApiKeyEntry[] = [];
  for (let i = 0; i < count; i++) {
    const key = `gh_live_bench_${i.toString(36)}_${i * 7919}`;
    keys.push(key);
    entries.push(entry({ id: `key-${i}`, hash: hashApiKey(key), tenant: `tenant-${i % 1000}`, subject: `svc-${i}` }));
  }
  const clock = new ManualClock(START);
  const built = process.hrtime.bigint();
  const auth = new ApiKeyAuthenticator(entries, { clock });
  const buildMs = Number(process.hrtime.bigint() - built) / 1e6;
  t.equal(auth.size, count);
  t.comment(`construction of ${count} keys: ${buildMs.toFixed(1)} ms`);

  const started = process.hrtime.bigint();
  let wrong = 0;
  for (let i = 0; i < count; i++) {
    const identity = auth.authenticate({ kind: 'api-key', key: keys[i] });
    if (identity.keyId !== `key-${i}` || identity.subject !== `svc-${i}`) wrong++;
  }
  const lookupNs = Number(process.hrtime.bigint() - started) / count;
  t.equal(wrong, 0, 'every key resolves to its own entry');
  t.comment(`lookup (hash + map get): ${(lookupNs / 1000).toFixed(2)} µs per key over ${count} keys`);
  t.strictSame(refuse(auth, 'gh_live_bench_not_there'), UNKNOWN);
});

t.test('keys that share a tenant, role, plan or scope list share one copy of it', async (t) => {
  const keys = ['key-one-0123456789abcdef', 'key-two-0123456789abcdef', 'key-three-0123456789abcdef'];
  // Built as separate strings and arrays, the way a parsed keys file holds them.
  const text = (s: string) => [...s].join('');
  const auth = new ApiKeyAuthenticator(
    keys.map((key, i) =>
      entry({ id: `k${i}`, hash: hashApiKey(key), subject: `svc-${i}`, tenant: text('acme'), role: text('reader'), plan: text('gold'), scopes: [text('a:read'), text('b:read')] }),
    ),
    { clock: new ManualClock(START) },
  );
  const [a, b, c] = keys.map((key) => auth.authenticate({ kind: 'api-key', key }));
  t.equal(a.scopes, b.scopes, 'one scope list');
  t.equal(b.scopes, c.scopes);
  t.same(a.scopes, ['a:read', 'b:read']);
  t.ok(Object.isFrozen(a.scopes));
  t.same([a.subject, b.subject, c.subject], ['svc-0', 'svc-1', 'svc-2'], 'subjects stay their own');
  t.same([a.tenant, a.role, a.plan], ['acme', 'reader', 'gold']);
});
