// API keys end to end through the running proxy (SPEC sections 1, 2, 3, 6, 9): every scheme and source, two
// credentials, read-only keys, expiry and revocation, exact matching, no leaks, the CLI round trip, keys-file reload.
import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { call, configYaml, raw, rawStatus, startGatehouse, startUpstream, writeTempFile, type Answer, type Running, type Upstream } from '../support/harness.js';
import { ensureBuilt, runCli } from '../support/built-cli.js';
import { assertRefused } from '../support/refusals.js';
import { until } from '../support/until.js';
import { watchConfig } from '../../src/reload.js';

const sha = (key: string) => `sha256:${createHash('sha256').update(key).digest('hex')}`;

const KEY = {
  full: 'gh_test_full_4f1c9a7e2b6d8035',
  readOnly: 'gh_test_ro_9d2e4b6a1c3f5078',
  expired: 'gh_test_expired_7a3c5e9b1d2f4068',
  disabled: 'gh_test_disabled_2b4d6f8a0c1e3957',
};
const UNKNOWN = 'gh_test_unknown_5e7a9c1b3d2f4860';
const ONE_OFF = `${KEY.full.slice(0, -1)}6`;
/** Every key a request carried in this file: none may show up in a log line or error body. */
const SECRETS = [...Object.values(KEY), UNKNOWN, ONE_OFF];

const KEYS_YAML = `    keys:
      - { id: full, hash: "${sha(KEY.full)}", tenant: acme, subject: svc-ci, role: admin, scopes: [a, b], plan: pro }
      - { id: ro, hash: "${sha(KEY.readOnly)}", tenant: acme, subject: dash, access: read-only }
      - { id: old, hash: "${sha(KEY.expired)}", tenant: acme, subject: old, expiresAt: 2020-01-01T00:00:00Z }
      - { id: revoked, hash: "${sha(KEY.disabled)}", tenant: acme, subject: gone, disabled: true }
      - { id: empty, hash: "${sha('')}", tenant: acme, subject: nobody }`;

const ROUTES = `  - name: open
    match: { path: /open/** }
    auth: none
  - name: api
    match: { path: /** }
    auth: api-key`;

type Sources = 'authorization' | 'x-api-key' | 'both';
const SOURCES_YAML: Record<Sources, string> = { authorization: '[authorization]', 'x-api-key': '[x-api-key]', both: '[authorization, x-api-key]' };

let upstream: Upstream;
const gh = {} as Record<Sources, Running>;

t.before(async () => {
  upstream = await startUpstream();
  for (const sources of Object.keys(SOURCES_YAML) as Sources[]) {
    const yaml = configYaml({ auth: `  apiKeys:\n    sources: ${SOURCES_YAML[sources]}\n${KEYS_YAML}`, routes: ROUTES });
    gh[sources] = await startGatehouse(yaml, { UPSTREAM: upstream.url });
  }
});
t.teardown(async () => {
  await Promise.all(Object.values(gh).map((g) => g.close()));
  await upstream?.close();
});

/** Parses a raw HTTP/1.1 answer far enough for assertRefused. */
function parseRaw(text: string): Answer {
  const head = text.slice(0, text.indexOf('\r\n\r\n'));
  const body = text.slice(head.length + 4);
  const headers: Answer['headers'] = {};
  for (const line of head.split('\r\n').slice(1)) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
  }
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    json = undefined;
  }
  return { status: rawStatus(text), headers, text: body, json };
}

/** A GET with the given raw header lines, bytes exactly as written. */
const rawGet = async (port: number, lines: string[], path = '/api/x'): Promise<Answer> =>
  parseRaw(await raw(port, `GET ${path} HTTP/1.1\r\nHost: gatehouse.test\r\n${lines.map((l) => `${l}\r\n`).join('')}Connection: close\r\n\r\n`));

function admittedAs(t: Test, answer: Answer, id: string, before: number): void {
  t.equal(answer.status, 200, `admitted as ${id}`);
  t.equal(upstream.requests.length, before + 1, 'forwarded once');
  const seen = upstream.requests.at(-1)!;
  t.equal(seen.headers['x-auth-key-id'], id);
  t.equal(seen.headers['x-auth-method'], 'api-key');
  t.equal(seen.headers.authorization, undefined, 'Authorization is not forwarded');
  t.equal(seen.headers['x-api-key'], undefined, 'X-API-Key is not forwarded');
}

t.test('every scheme and source combination is admitted or refused per SPEC section 3', async (t) => {
  const forms: Array<[string, string[]]> = [
    ['Authorization: Bearer K', ['Authorization', `Bearer ${KEY.full}`]],
    ['Authorization: bearer K', ['Authorization', `bearer ${KEY.full}`]],
    ['Authorization: API-KEY K', ['Authorization', `API-KEY ${KEY.full}`]],
    ['X-API-Key: K', ['X-API-Key', KEY.full]],
    ['x-api-key: K', ['x-api-key', KEY.full]],
  ];
  // An X-API-Key header is no credential at all when that source is off; a Bearer value that is no JWT
  // and an Api-Key scheme are credentials of a disabled kind, hence invalid_token.
  const expected: Record<Sources, string[]> = {
    authorization: ['ok', 'ok', 'ok', 'missing_credentials', 'missing_credentials'],
    'x-api-key': ['invalid_token', 'invalid_token', 'invalid_token', 'ok', 'ok'],
    both: ['ok', 'ok', 'ok', 'ok', 'ok'],
  };
  for (const sources of Object.keys(expected) as Sources[]) {
    for (const [i, [form, headers]] of forms.entries()) {
      const outcome = expected[sources][i];
      t.test(`sources ${SOURCES_YAML[sources]}: ${form} -> ${outcome}`, async (t) => {
        const before = upstream.requests.length;
        const answer = await call(`${gh[sources].url}/api/x`, { headers });
        if (outcome === 'ok') return admittedAs(t, answer, 'full', before);
        assertRefused(t, answer, outcome, SECRETS);
        t.equal(upstream.requests.length, before, 'not forwarded');
      });
    }
  }
});

t.test('two credentials are 400 bad_request, on authenticated and open routes alike', async (t) => {
  const before = upstream.requests.length;
  const port = gh.both.port;
  for (const path of ['/api/x', '/open/x']) {
    assertRefused(t, await rawGet(port, [`Authorization: Bearer ${KEY.full}`, `Authorization: Bearer ${KEY.full}`], path), 'bad_request', SECRETS);
    assertRefused(t, await rawGet(port, [`Authorization: Bearer ${KEY.full}`, `X-API-Key: ${KEY.readOnly}`], path), 'bad_request', SECRETS);
    assertRefused(t, await rawGet(port, [`X-API-Key: ${KEY.full}`, `x-api-key: ${KEY.full}`], path), 'bad_request', SECRETS);
  }
  t.equal(upstream.requests.length, before, 'nothing forwarded');
});

t.test('a read-only key may GET, HEAD and OPTIONS; POST, PUT, PATCH and DELETE are 403 insufficient_scope', async (t) => {
  for (const method of ['GET', 'HEAD', 'OPTIONS']) {
    const before = upstream.requests.length;
    admittedAs(t, await call(`${gh.both.url}/api/r`, { method, headers: { 'x-api-key': KEY.readOnly } }), 'ro', before);
    t.equal(upstream.requests.at(-1)!.method, method);
  }
  const before = upstream.requests.length;
  for (const method of ['POST', 'PUT', 'PATCH', 'DELETE']) {
    const answer = await call(`${gh.both.url}/api/r`, { method, headers: { 'x-api-key': KEY.readOnly }, body: method === 'DELETE' ? undefined : '{}' });
    t.test(method, async (t) => assertRefused(t, answer, 'insufficient_scope', SECRETS));
  }
  t.equal(upstream.requests.length, before, 'no write reached the upstream');
  admittedAs(t, await call(`${gh.both.url}/api/r`, { method: 'POST', headers: { 'x-api-key': KEY.full }, body: '{}' }), 'full', before);
});

t.test('expired keys are 401 token_expired; disabled and unknown keys are 401 invalid_token with one message', async (t) => {
  const before = upstream.requests.length;
  const expired = await call(`${gh.both.url}/api/x`, { headers: { 'x-api-key': KEY.expired } });
  assertRefused(t, expired, 'token_expired', SECRETS);
  const disabled = await call(`${gh.both.url}/api/x`, { headers: { 'x-api-key': KEY.disabled } });
  const unknown = await call(`${gh.both.url}/api/x`, { headers: { authorization: `Bearer ${UNKNOWN}` } });
  const oneOff = await call(`${gh.both.url}/api/x`, { headers: { 'x-api-key': ONE_OFF } });
  for (const answer of [disabled, unknown, oneOff]) assertRefused(t, answer, 'invalid_token', SECRETS);
  t.equal(disabled.json.message, unknown.json.message, 'a disabled key cannot be told from an unknown one');
  t.equal(oneOff.json.message, unknown.json.message, 'nor a key one character off');
  t.equal(upstream.requests.length, before, 'nothing forwarded');
});

t.test('optional whitespace around a header value is stripped by HTTP, and one or more spaces may follow the scheme: admitted', async (t) => {
  const port = gh.both.port;
  let before = upstream.requests.length;
  admittedAs(t, await rawGet(port, [`X-API-Key:   ${KEY.full}  `]), 'full', before);
  before = upstream.requests.length;
  admittedAs(t, await rawGet(port, [`X-API-Key:\t${KEY.full}\t`]), 'full', before);
  before = upstream.requests.length;
  admittedAs(t, await rawGet(port, [`Authorization: Bearer  ${KEY.full}`]), 'full', before);
  before = upstream.requests.length;
  admittedAs(t, await rawGet(port, [`Authorization:    Api-Key ${KEY.full}   `]), 'full', before);
});

t.test('whitespace inside the key makes it another key: 401 invalid_token', async (t) => {
  const before = upstream.requests.length;
  const split = `${KEY.full.slice(0, 8)} ${KEY.full.slice(8)}`;
  assertRefused(t, await rawGet(gh.both.port, [`X-API-Key: ${split}`]), 'invalid_token', [...SECRETS, split]);
  t.equal(upstream.requests.length, before);
});

t.test('an empty key is 400 bad_request, even with the hash of the empty string configured', async (t) => {
  const before = upstream.requests.length;
  for (const line of ['X-API-Key:', 'X-API-Key:    ', 'Authorization: Bearer', 'Authorization: Bearer   ', 'Authorization: Api-Key ']) {
    const answer = await rawGet(gh.both.port, [line]);
    t.test(JSON.stringify(line), async (t) => assertRefused(t, answer, 'bad_request'));
  }
  t.equal(upstream.requests.length, before, 'nothing forwarded');
});

t.test('no key ever appears in a log line', async (t) => {
  // Runs after the tests above, which sent every key in every form, admitted and refused.
  const all = Object.values(gh).flatMap((g) => g.rawLogs);
  t.ok(all.length > 40, 'there are access lines to search');
  for (const secret of SECRETS) {
    t.notOk(all.some((line) => line.includes(secret)), 'no key in clear');
    t.notOk(all.some((line) => line.includes(sha(secret).slice(7))), 'no key hash (it is the lookup index)');
  }
  const refusal = gh.both.logs.find((l) => l.reason === 'unknown_key');
  t.ok(refusal, 'refusals are logged with their reason');
});

t.test('CLI round trip: keys generate prints a key and an entry that authenticates once pasted', async (t) => {
  await ensureBuilt();
  const generated = runCli(['keys', 'generate', '--tenant', 't1', '--role', 'admin', '--scopes', 'a,b', '--expires', '90d']);
  t.equal(generated.code, 0, generated.stderr);
  const key = /^#\s+(\S+)$/m.exec(generated.stdout)?.[1] ?? '';
  t.match(key, /^gh_live_[A-Za-z0-9_-]{43}$/, 'the key is printed once');
  const entry = generated.stdout.slice(generated.stdout.indexOf(':\n', generated.stdout.indexOf('# Paste')) + 2);
  t.notOk(entry.includes(key), 'the entry never holds the key');
  const id = /^- id: (\S+)$/m.exec(entry)?.[1] ?? '';
  const hash = /hash: (sha256:[0-9a-f]{64})/.exec(entry)?.[1] ?? '';
  t.equal(hash, sha(key), 'the entry holds the SHA-256 of the key');
  const pasted = entry
    .trimEnd()
    .split('\n')
    .map((line) => `      ${line}`)
    .join('\n');
  const running = await startGatehouse(configYaml({ auth: `  apiKeys:\n    keys:\n${pasted}`, routes: ROUTES }), { UPSTREAM: upstream.url });
  t.teardown(() => running.close());
  const answer = await call(`${running.url}/api/x`, { headers: { authorization: `Bearer ${key}` } });
  t.equal(answer.status, 200);
  t.match(upstream.requests.at(-1)!.headers, {
    'x-auth-tenant': 't1',
    'x-auth-subject': id,
    'x-auth-role': 'admin',
    'x-auth-scopes': 'a b',
    'x-auth-method': 'api-key',
    'x-auth-key-id': id,
  });
  const whoami = running.gateway.plan.apiKeys!.authenticate({ kind: 'api-key', key });
  const days = (whoami.expiresAt! - Date.now()) / 86_400_000;
  t.ok(days > 89.9 && days <= 90, `expires in 90 days (${days.toFixed(3)})`);
  t.notOk(running.rawLogs.some((line) => line.includes(key)), 'the key is not logged');

  for (const input of [key, `${key}\n`, `${key}\r\n`]) {
    const hashed = runCli(['keys', 'hash'], { input });
    t.equal(hashed.code, 0);
    t.equal(hashed.stdout.trim(), hash, `keys hash of ${JSON.stringify(input.slice(key.length))}-terminated stdin equals the generated hash`);
  }
});

t.test('keys file: a key disabled while running is refused after the reload; a broken file keeps the last good set', async (t) => {
  const keysFile = writeTempFile('keys.yaml', `keys:\n  - { id: a, hash: "${sha('key-a')}", tenant: acme, subject: a }\n`);
  // Literal values only: a reload reads the file with the process environment.
  const yaml = `version: 1
server: { host: 127.0.0.1, port: 0 }
upstreams:
  default: { url: "${upstream.url}", timeout: 5s, connectTimeout: 1s }
auth:
  apiKeys:
    file: ${keysFile}
routes:
${ROUTES}
`;
  const running = await startGatehouse(yaml);
  const stop = watchConfig(running.gateway, running.configPath);
  t.teardown(async () => {
    stop();
    await running.close();
  });
  const status = async (key: string) => (await call(`${running.url}/api/x`, { headers: { 'x-api-key': key } })).status;
  t.equal(await status('key-a'), 200, 'key a works');
  t.equal(await status('key-b'), 401, 'key b is not known yet');

  writeFileSync(keysFile, `keys:\n  - { id: a, hash: "${sha('key-a')}", tenant: acme, subject: a, disabled: true }\n  - { id: b, hash: "${sha('key-b')}", tenant: acme, subject: b }\n`);
  await until(async () => (await status('key-a')) === 401, 5000, 'key a is refused after the reload');
  t.equal(await status('key-b'), 200, 'key b, added in the same edit, works');

  const refusedBefore = running.logs.filter((l) => l.msg === 'config reload refused; keeping the running config').length;
  writeFileSync(keysFile, 'keys:\n  - { id: c, hash: "sha256:not-a-hash", tenant: acme\n');
  await until(() => running.logs.filter((l) => l.msg === 'config reload refused; keeping the running config').length > refusedBefore, 5000, 'the broken file is refused');
  t.equal(await status('key-b'), 200, 'the last good set keeps serving');
  t.equal(await status('key-a'), 401, 'and key a stays disabled');
  for (const key of ['key-a', 'key-b']) t.notOk(running.rawLogs.some((line) => line.includes(key) || line.includes(sha(key).slice(7))), 'neither key nor hash logged');
});
