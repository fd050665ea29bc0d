// The JSON fast path for keys files must agree with the positioned YAML reader on every entry it
// accepts, and hand every doubtful file back to it (which then reports FILE:LINE:COL errors).
import t from 'tap';
import { createHash } from 'node:crypto';
import { fastKeyEntries } from '../../src/config/keys-json.js';
import { loadConfig, loadKeysFile } from '../../src/config/load.js';
import { ConfigError } from '../../src/config/issues.js';
import { writeTempFile } from '../support/harness.js';

const hash = (k: string) => `sha256:${createHash('sha256').update(k).digest('hex')}`;
const full = {
  id: 'full',
  hash: hash('a'),
  tenant: 'acme',
  subject: 'svc',
  role: 'admin',
  scopes: ['r:read', 'r:write'],
  access: 'read-only',
  plan: 'pro',
  expiresAt: '2027-01-01T00:00:00Z',
  disabled: true,
};
const minimal = { id: 'min', hash: hash('b').toUpperCase().replace('SHA256', 'sha256'), tenant: 'globex' };
const nulls = { id: 'nulls', hash: hash('c'), tenant: 't', role: null, plan: null, scopes: 'one', expiresAt: null };

t.test('a JSON keys file takes the fast path and gives exactly what the YAML reader gives', async (t) => {
  const text = JSON.stringify({ keys: [full, minimal, nulls] });
  const fast = fastKeyEntries(text);
  t.ok(fast, 'fast path taken');
  // The same entries written as YAML flow mappings go through the positioned reader.
  const yaml = `keys:\n${[full, minimal, nulls].map((e) => `  - ${JSON.stringify(e)}`).join('\n')}\n`;
  t.same(fast, loadKeysFile(writeTempFile('keys.yaml', yaml)));
  t.same(loadKeysFile(writeTempFile('keys.json', text)), fast);
  t.same(fast![1], { id: 'min', hash: hash('b').slice(7), tenant: 'globex', subject: 'min', role: null, scopes: [], access: 'full', plan: null, expiresAt: null, disabled: false });
});

t.test('expiresAt is an ISO-8601 date (midnight UTC) or a date-time with its offset, on both paths alike', async (t) => {
  const forms: Array<[string, number]> = [
    ['2027-01-01', Date.UTC(2027, 0, 1)],
    ['2027-01-01T00:00:00Z', Date.UTC(2027, 0, 1)],
    ['2027-01-01T02:30:00.5+02:00', Date.UTC(2027, 0, 1, 0, 30, 0, 500)],
    ['2028-02-29T23:59:59Z', Date.UTC(2028, 1, 29, 23, 59, 59)],
  ];
  for (const [text, ms] of forms) {
    const entry = { ...minimal, expiresAt: text };
    t.equal(fastKeyEntries(JSON.stringify({ keys: [entry] }))![0].expiresAt, ms, `${text}: fast path`);
    t.equal(loadKeysFile(writeTempFile('keys.yaml', `keys:\n  - ${JSON.stringify(entry)}\n`))[0].expiresAt, ms, `${text}: YAML reader`);
  }
});

t.test('doubtful JSON goes to the YAML reader, which refuses it with a position', async (t) => {
  const bad: Array<[string, unknown]> = [
    ['unknown field', { ...full, tennant: 'x' }],
    ['bad hash', { ...full, hash: 'sha256:abc' }],
    ['hash without prefix', { ...full, hash: hash('a').slice(7) }],
    ['bad id', { ...full, id: 'has space' }],
    ['empty tenant', { ...full, tenant: '' }],
    ['missing tenant', { id: 'x', hash: hash('x') }],
    ['bad access', { ...full, access: 'write' }],
    ['bad disabled', { ...full, disabled: 'yes' }],
    ['bad expiry', { ...full, expiresAt: 'soon' }],
    // Date.parse reads these too, in the local time zone of whichever host loads the file.
    ['an expiry that is not ISO-8601', { ...full, expiresAt: 'Jan 1 2027' }],
    ['an expiry without its offset', { ...full, expiresAt: '2027-01-01T00:00:00' }],
    ['an impossible date', { ...full, expiresAt: '2027-02-31T00:00:00Z' }],
    ['an impossible time', { ...full, expiresAt: '2027-01-01T24:00:00Z' }],
    ['scopes not strings', { ...full, scopes: [{ a: 1 }] }],
    ['an unset variable', { ...full, tenant: '${NOT_SET_ANYWHERE}' }],
    // Identity values are sent as header values and must come back exactly: no control, non-ASCII or edge space.
    ['a tenant with a trailing space', { ...full, tenant: 'acme ' }],
    ['a subject with a leading tab', { ...full, subject: '\tsvc' }],
    ['a role with a line break', { ...full, role: 'admin\r\nX-Auth-Role: root' }],
    ['a non-ASCII subject', { ...full, subject: 'ålice' }],
    ['a scope with a space', { ...full, scopes: ['reports:read admin'] }],
  ];
  for (const [name, entry] of bad) {
    const text = JSON.stringify({ keys: [entry] }, null, 2);
    t.equal(fastKeyEntries(text), null, `${name}: no fast path`);
    t.throws(() => loadKeysFile(writeTempFile('keys.json', text), {}), ConfigError, `${name}: refused`);
    try {
      loadKeysFile(writeTempFile('keys.json', text), {});
    } catch (err) {
      t.match(String((err as ConfigError).issues[0]), /keys\.json:\d+:\d+ /, `${name}: positioned`);
    }
  }
  const twice = JSON.stringify({ keys: [full, { ...full, hash: hash('z') }] });
  t.equal(fastKeyEntries(twice), null, 'duplicate id: no fast path');
  t.throws(() => loadKeysFile(writeTempFile('keys.json', twice)), ConfigError);
  t.equal(fastKeyEntries('keys: []'), null, 'YAML text is not for the fast path');
  t.equal(fastKeyEntries('{"keys": [], "extra": 1}'), null, 'unknown top-level key');
  t.equal(fastKeyEntries('{"keys": '), null, 'broken JSON');
});

t.test('every key the keys file shares with the main config (by id or by hash) is reported, at once', async (t) => {
  const keysFile = writeTempFile('keys.json', JSON.stringify({ keys: [
    { id: 'k1', hash: hash('other'), tenant: 't' },
    { id: 'k2', hash: hash('main-1'), tenant: 't' },
    { id: 'k3', hash: hash('own'), tenant: 't' },
  ] }));
  const config = writeTempFile('gatehouse.yaml', `version: 1
upstreams:
  default: { url: "http://127.0.0.1:3000" }
auth:
  apiKeys:
    file: ${keysFile}
    keys:
      - { id: k1, hash: "${hash('main-1')}", tenant: acme }
routes:
  - { name: all, match: { path: /** }, auth: any }
`);
  const err = t.throws(() => loadConfig(config, {})) as ConfigError;
  t.type(err, ConfigError);
  t.strictSame(err.issues.map((i) => i.message), [
    'key "k1" is also defined in the main config (same id or hash)',
    'key "k2" is also defined in the main config (same id or hash)',
  ]);
});
