import t from 'tap';
import { parse } from 'yaml';
import { hashApiKey } from '../../src/auth/api-keys.js';
import { generateApiKey, hashKeyInput, parseExpires } from '../../src/auth/keys-command.js';

const NOW = Date.UTC(2026, 0, 1, 12, 0, 0);
const DAY = 86_400_000;

t.test('a generated key is the prefix plus 43 base64url characters (32 random bytes)', async (t) => {
  const { key } = generateApiKey();
  t.match(key, /^gh_live_[A-Za-z0-9_-]{43}$/);
  t.equal(Buffer.from(key.slice('gh_live_'.length), 'base64url').length, 32);
  t.match(generateApiKey({ prefix: 'acme_test_' }).key, /^acme_test_[A-Za-z0-9_-]{43}$/);
  t.match(generateApiKey({ prefix: '' }).key, /^[A-Za-z0-9_-]{43}$/, 'an empty prefix is allowed');
});

t.test('two generated keys and default ids differ', async (t) => {
  const a = generateApiKey();
  const b = generateApiKey();
  t.not(a.key, b.key);
  t.not(a.entry.id, b.entry.id);
  t.match(a.entry.id, /^key-[0-9a-f]{8}$/);
});

t.test('defaults: tenant "default", subject = id, access full, no role, scopes or expiry', async (t) => {
  const { key, entry } = generateApiKey({ id: 'ci' });
  t.strictSame(entry, { id: 'ci', hash: `sha256:${hashApiKey(key)}`, tenant: 'default', subject: 'ci', access: 'full' });
});

t.test('every option lands in the entry', async (t) => {
  const { key, entry } = generateApiKey({
    id: 'ci-pipeline',
    tenant: 'acme',
    subject: 'svc-ci',
    role: 'admin',
    scopes: ['reports:read', 'reports:write'],
    access: 'read-only',
    expires: '90d',
    now: NOW,
  });
  t.strictSame(entry, {
    id: 'ci-pipeline',
    hash: `sha256:${hashApiKey(key)}`,
    tenant: 'acme',
    subject: 'svc-ci',
    role: 'admin',
    scopes: ['reports:read', 'reports:write'],
    access: 'read-only',
    expiresAt: '2026-04-01T12:00:00Z',
  });
});

t.test('the YAML is a one-item list holding the hash and never the key', async (t) => {
  const { key, yaml } = generateApiKey({ id: 'ci', tenant: 'acme', scopes: ['a:read'], expires: '12h', now: NOW });
  t.notMatch(yaml, key, 'the key is not in the YAML');
  t.notMatch(yaml, key.slice('gh_live_'.length), 'not even without its prefix');
  t.strictSame(parse(yaml), [
    {
      id: 'ci',
      hash: `sha256:${hashApiKey(key)}`,
      tenant: 'acme',
      subject: 'ci',
      scopes: ['a:read'],
      access: 'full',
      expiresAt: '2026-01-02T00:00:00Z',
    },
  ]);
  t.match(yaml, /^- id: ci\n {2}hash: sha256:[0-9a-f]{64}\n/, 'starts as a list entry, hash unquoted');
});

t.test('--expires 90d is exactly now + 90 days, in whole UTC seconds', async (t) => {
  const { entry } = generateApiKey({ expires: '90d', now: NOW });
  t.equal(entry.expiresAt, '2026-04-01T12:00:00Z');
  t.equal(Date.parse(entry.expiresAt!), NOW + 90 * DAY);
  const odd = generateApiKey({ expires: '30m', now: NOW + 1_999 });
  t.equal(odd.entry.expiresAt, '2026-01-01T12:30:01Z', 'milliseconds are truncated, never rounded up');
  t.equal(generateApiKey({ expires: '45s', now: NOW }).entry.expiresAt, '2026-01-01T12:00:45Z');
});

t.test('parseExpires accepts d, h, m and s and refuses anything else', async (t) => {
  t.equal(parseExpires('90d'), 90 * DAY);
  t.equal(parseExpires('12h'), 12 * 3_600_000);
  t.equal(parseExpires('30m'), 30 * 60_000);
  t.equal(parseExpires('45s'), 45_000);
  for (const bad of ['', '90', 'd', '1.5d', '-1d', '90D', ' 90d', '90d ', '1w', '250ms', '1h30m', 'ninety']) {
    t.throws(() => parseExpires(bad), { message: `--expires must be a whole number followed by d, h, m or s (like 90d, 12h, 30m, 45s), got "${bad}"` }, JSON.stringify(bad));
  }
  t.throws(() => parseExpires('0d'), { message: '--expires must be greater than zero, got "0d"' });
  t.throws(() => parseExpires('99999999999999999d'), { message: '--expires is too large: "99999999999999999d"' });
  t.throws(() => generateApiKey({ expires: '99999999d', now: NOW }), { message: '--expires reaches past the largest representable date' });
});

t.test('options that would make an unusable or unsafe entry are refused', async (t) => {
  const cases: [string, Parameters<typeof generateApiKey>[0], RegExp][] = [
    ['prefix with a dot (could look like a JWT)', { prefix: 'gh.live.' }, /^--prefix may only use/],
    ['prefix with a space', { prefix: 'gh live' }, /^--prefix may only use/],
    ['id with a space', { id: 'ci pipeline' }, /^--id must be 1-128 characters of A-Z a-z 0-9 \. _ : -/],
    // The config refuses these ids (config/validate-auth.ts): a printed entry must pass `gatehouse check`.
    ['id with @', { id: 'user@corp' }, /^--id must be 1-128/],
    ['id with /', { id: 'team/ci' }, /^--id must be 1-128/],
    ['empty id', { id: '' }, /^--id must be 1-128/],
    ['tenant with a newline', { tenant: 'acme\nX-Auth-Role: admin' }, /^--tenant must be visible ASCII/],
    ['non-ASCII tenant', { tenant: 'café' }, /^--tenant must be visible ASCII/],
    ['empty subject', { subject: '' }, /^--subject must be visible ASCII/],
    ['role with surrounding spaces', { role: ' admin ' }, /^--role must be visible ASCII/],
    ['scope with a space', { scopes: ['a b'] }, /^--scopes entries must be visible ASCII without spaces/],
    ['empty scope', { scopes: [''] }, /^--scopes entries must be visible ASCII without spaces/],
    ['unknown access', { access: 'write' as 'full' }, /^--access must be full or read-only, got "write"$/],
  ];
  for (const [name, options, message] of cases) t.throws(() => generateApiKey(options), { message }, name);
});

t.test('keys hash drops exactly one trailing LF or CRLF and nothing else', async (t) => {
  const key = 'gh_live_abc';
  const expected = `sha256:${hashApiKey(key)}`;
  t.equal(hashKeyInput(key), expected, 'no newline');
  t.equal(hashKeyInput(`${key}\n`), expected, 'LF');
  t.equal(hashKeyInput(`${key}\r\n`), expected, 'CRLF');
  t.equal(hashKeyInput(` ${key}`), `sha256:${hashApiKey(` ${key}`)}`, 'a leading space is part of the key');
  t.equal(hashKeyInput(`${key} \n`), `sha256:${hashApiKey(`${key} `)}`, 'a trailing space is part of the key');
  t.equal(hashKeyInput('test\n'), 'sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08');
});

t.test('keys hash refuses empty input and more than one line', async (t) => {
  const empty = /^no key on stdin/;
  t.throws(() => hashKeyInput(''), { message: empty });
  t.throws(() => hashKeyInput('\n'), { message: empty });
  t.throws(() => hashKeyInput('\r\n'), { message: empty });
  const lines = { message: 'stdin holds more than one line: pass exactly one API key' };
  t.throws(() => hashKeyInput('gh_live_abc\n\n'), lines);
  t.throws(() => hashKeyInput('gh_live_abc\ngh_live_def\n'), lines);
  t.throws(() => hashKeyInput('gh_live_abc\r'), lines);
});

t.test('a generated key hashes through keys hash to the hash in its entry', async (t) => {
  const { key, entry } = generateApiKey();
  t.equal(hashKeyInput(`${key}\n`), entry.hash);
});
