import t from 'tap';
import { headerRecord, HeaderPlan, isValidRequestId, sanitizeHeaders, type SanitizedHeaders } from '../../src/pipeline/sanitize-headers.js';
import { injectIdentity } from '../../src/pipeline/inject-identity.js';
import type { Exchange } from '../../src/pipeline/exchange.js';
import type { IdentityConfig } from '../../src/config/types.js';
import type { Identity } from '../../src/auth/identity.js';

const DEFAULT_IDENTITY: IdentityConfig = {
  headers: {
    tenant: 'X-Auth-Tenant',
    subject: 'X-Auth-Subject',
    role: 'X-Auth-Role',
    scopes: 'X-Auth-Scopes',
    method: 'X-Auth-Method',
    keyId: 'X-Auth-Key-Id',
  },
  claimHeaders: { 'X-Auth-Email': 'email' },
  stripPrefixes: ['X-Auth-'],
  forwardAuthorization: false,
};

/** Identity headers with names outside the default prefix, to show each strip rule on its own. */
const CUSTOM_IDENTITY: IdentityConfig = {
  headers: {
    tenant: 'Tenant-Id',
    subject: 'User-Id',
    role: 'User-Role',
    scopes: 'User-Scopes',
    method: 'Auth-Method',
    keyId: 'Auth-Key',
  },
  claimHeaders: { 'User-Email': 'email', 'Org-Name': 'org.name' },
  stripPrefixes: ['X-Internal-', 'Remote_'],
  forwardAuthorization: false,
};

const plan = (identity = DEFAULT_IDENTITY, trustProxy = false) => new HeaderPlan(identity, true, trustProxy);
const kept = (raw: string[], p = plan()) => ({ ...headerRecord(sanitizeHeaders(p, raw).headers) });

t.test('identity headers are stripped in any case, with _ for -, and when repeated', async (t) => {
  const spoofs = [
    'X-Auth-Tenant',
    'x-auth-tenant',
    'X-AUTH-TENANT',
    'x-auth_tenant',
    'X_AUTH_TENANT',
    'x_Auth-Tenant',
    'X-Auth-Subject',
    'X-AUTH-SUBJECT',
    'x-auth-role',
    'X-Auth-Scopes',
    'X-Auth-Method',
    'x_auth_key_id',
    'X-Auth-Email',
    'X-Auth-Anything-Else',
  ];
  for (const name of spoofs) {
    t.strictSame(kept([name, 'evil', 'Accept', 'text/plain']), { accept: 'text/plain' }, name);
  }
  t.strictSame(kept(['X-Auth-Tenant', 'a', 'x-auth-tenant', 'b', 'X_AUTH_TENANT', 'c', 'Accept', '*/*']), { accept: '*/*' }, 'repeated');
});

t.test('custom identity header names, claim headers and every stripPrefixes entry are stripped', async (t) => {
  const p = plan(CUSTOM_IDENTITY);
  const cases: [name: string, stripped: boolean][] = [
    ['Tenant-Id', true],
    ['tenant_id', true],
    ['USER-ID', true],
    ['User_Role', true],
    ['user-scopes', true],
    ['Auth-Method', true],
    ['auth_key', true],
    ['User-Email', true],
    ['user_email', true],
    ['Org-Name', true],
    ['X-Internal-Debug', true],
    ['x_internal_anything', true],
    ['Remote-User', true],
    ['remote_user', true],
    // Not configured here: an ordinary header for this config.
    ['X-Auth-Tenant', false],
    ['User-Agent', false],
    ['X-Internal', false],
  ];
  for (const [name, stripped] of cases) {
    t.strictSame(kept([name, 'v'], p), stripped ? {} : { [name.toLowerCase()]: 'v' }, `${name} ${stripped ? 'stripped' : 'kept'}`);
  }
});

t.test('hop-by-hop headers are removed, also spelled with _', async (t) => {
  const hop = ['Connection', 'close', 'Keep-Alive', 'timeout=5', 'Proxy-Authorization', 'Basic eA==', 'Proxy-Connection', 'keep-alive', 'TE', 'trailers', 'Trailer', 'X-Sum', 'Transfer-Encoding', 'chunked', 'Upgrade', 'websocket', 'Expect', '100-continue', 'keep_alive', 'x', 'Proxy_Authorization', 'y'];
  t.strictSame(kept([...hop, 'Accept', 'a']), { accept: 'a' });
});

t.test('headers named in Connection are removed; the ones gatehouse handles itself are not affected', async (t) => {
  const raw = ['Connection', 'X-Foo, x-bar ,  X-Auth-Tenant', 'Connection', 'X-Request-Id, Authorization, Host, X-Forwarded-For', 'X-Foo', '1', 'X-Bar', '2', 'X-Baz', '3', 'Host', 'example.com', 'X-Request-Id', 'abc', 'Authorization', 'Bearer k', 'X-Forwarded-For', '10.0.0.1'];
  const out = sanitizeHeaders(plan(), raw);
  t.strictSame(out.headers, ['x-baz', '3']);
  t.equal(out.host, 'example.com');
  t.equal(out.requestId, 'abc');
  t.strictSame(out.authorization, ['Bearer k']);
  t.equal(out.forwardedFor, '10.0.0.1');
});

/** A minimal exchange for injectIdentity: what it reads, nothing more. */
function exchange(incoming: SanitizedHeaders, identity: Identity | null, trustProxy = false, peerTrusted = trustProxy): Exchange {
  const headers = plan(DEFAULT_IDENTITY, trustProxy);
  return {
    plan: { headers, trustsPeer: () => peerTrusted, config: { identity: DEFAULT_IDENTITY } },
    req: { socket: { remoteAddress: '127.0.0.1' } },
    incoming,
    identity,
    requestId: 'req-1',
  } as unknown as Exchange;
}

const IDENTITY: Identity = {
  tenant: 'acme',
  subject: 'svc-ci',
  role: 'admin',
  scopes: ['reports:read', 'reports:write'],
  plan: 'pro',
  method: 'api-key',
  keyId: 'ci',
  expiresAt: null,
  readOnly: false,
  claims: null,
};

t.test('Connection: x-auth-tenant cannot remove the identity headers injected afterwards', async (t) => {
  const raw = ['Connection', 'x-auth-tenant, X-Auth-Subject, x_auth_role, x-forwarded-for, x-request-id', 'X-Auth-Tenant', 'evil', 'Host', 'gw.example'];
  const headers = injectIdentity(exchange(sanitizeHeaders(plan(), raw), IDENTITY));
  t.equal(new Set(headers.filter((_, i) => i % 2 === 0)).size, headers.length / 2, 'each name once');
  t.strictSame({ ...headerRecord(headers) }, {
    'x-auth-tenant': 'acme',
    'x-auth-subject': 'svc-ci',
    'x-auth-role': 'admin',
    'x-auth-scopes': 'reports:read reports:write',
    'x-auth-method': 'api-key',
    'x-auth-key-id': 'ci',
    'x-forwarded-for': '127.0.0.1',
    'x-forwarded-proto': 'http',
    'x-forwarded-host': 'gw.example',
    'x-request-id': 'req-1',
  });
});

t.test('without an identity nothing identity-like is sent; client forwarding headers are replaced unless trusted', async (t) => {
  const raw = ['X-Auth-Tenant', 'evil', 'X-Forwarded-For', '6.6.6.6', 'X-Forwarded-Proto', 'https', 'X-Forwarded-Host', 'evil.example', 'Host', 'gw.example', 'Forwarded', 'for=6.6.6.6'];
  t.strictSame({ ...headerRecord(injectIdentity(exchange(sanitizeHeaders(plan(), raw), null))) }, {
    'x-forwarded-for': '127.0.0.1',
    'x-forwarded-proto': 'http',
    'x-forwarded-host': 'gw.example',
    'x-request-id': 'req-1',
  });
  t.strictSame({ ...headerRecord(injectIdentity(exchange(sanitizeHeaders(plan(DEFAULT_IDENTITY, true), raw), null, true))) }, {
    forwarded: 'for=6.6.6.6',
    'x-forwarded-for': '6.6.6.6, 127.0.0.1',
    'x-forwarded-proto': 'https',
    'x-forwarded-host': 'evil.example',
    'x-request-id': 'req-1',
  });
  // A proxy is trusted by the config, but this peer is not it: its Forwarded goes too, wherever it stood.
  const fromUntrusted = ['Forwarded', 'for=6.6.6.6', 'Accept', 'a', 'forwarded', 'by=evil', 'Host', 'gw.example'];
  t.strictSame({ ...headerRecord(injectIdentity(exchange(sanitizeHeaders(plan(DEFAULT_IDENTITY, true), fromUntrusted), null, true, false))) }, {
    accept: 'a',
    'x-forwarded-for': '127.0.0.1',
    'x-forwarded-proto': 'http',
    'x-forwarded-host': 'gw.example',
    'x-request-id': 'req-1',
  });
});

t.test('method and URL override headers never reach the upstream, in any spelling, trusted proxy or not', async (t) => {
  const raw = [
    'X-HTTP-Method-Override', 'DELETE', 'x-http-method', 'PUT', 'X-Method-Override', 'PATCH', 'X_HTTP_Method_Override', 'DELETE',
    'X-Original-URL', '/admin', 'x-rewrite-url', '/admin', 'x_original_url', '/admin', 'Accept', 'a',
  ];
  t.strictSame(sanitizeHeaders(plan(), raw).headers, ['accept', 'a']);
  t.strictSame(sanitizeHeaders(plan(DEFAULT_IDENTITY, true), raw).headers, ['accept', 'a']);
});

t.test('client-address headers (X-Real-IP and kin) are believed only from a trusted proxy', async (t) => {
  const raw = [
    'X-Real-IP', '6.6.6.6', 'True-Client-IP', '6.6.6.7', 'x-client-ip', '6.6.6.8', 'X-Cluster-Client-IP', '6.6.6.9', 'CF-Connecting-IP', '6.6.6.10',
    'Fastly-Client-IP', '6.6.6.11', 'X-Forwarded', 'for=6.6.6.12', 'Forwarded-For', '6.6.6.13', 'Accept', 'a', 'Host', 'gw.example',
  ];
  const base = { 'x-forwarded-for': '127.0.0.1', 'x-forwarded-proto': 'http', 'x-forwarded-host': 'gw.example', 'x-request-id': 'req-1' };
  t.strictSame({ ...headerRecord(injectIdentity(exchange(sanitizeHeaders(plan(), raw), null))) }, { accept: 'a', ...base }, 'no proxy trusted: all gone');
  const fromTrusted = { ...headerRecord(injectIdentity(exchange(sanitizeHeaders(plan(DEFAULT_IDENTITY, true), raw), null, true))) };
  t.equal(fromTrusted['x-real-ip'], '6.6.6.6', 'a trusted proxy: its X-Real-IP is kept');
  t.equal(fromTrusted['forwarded-for'], '6.6.6.13');
  t.equal(Object.keys(fromTrusted).length, 8 + 1 + 4);
  t.strictSame(
    { ...headerRecord(injectIdentity(exchange(sanitizeHeaders(plan(DEFAULT_IDENTITY, true), raw), null, true, false))) },
    { accept: 'a', ...base },
    'a proxy is trusted, but not this peer: all gone',
  );
  // The `_` spelling is what a lenient upstream reads as X-Real-IP: it goes even from a trusted proxy.
  t.strictSame(sanitizeHeaders(plan(DEFAULT_IDENTITY, true), ['X_Real_IP', '6.6.6.6', 'true_client_ip', '6.6.6.7']).headers, []);
  // A trusted proxy can still name one hop-by-hop.
  t.strictSame(sanitizeHeaders(plan(DEFAULT_IDENTITY, true), ['Connection', 'X-Real-IP', 'X-Real-IP', '6.6.6.6', 'X-Client-IP', '6.6.6.8']).headers, ['x-client-ip', '6.6.6.8']);
});

t.test('a claim header is sent only when the header carries the claim exactly: no edge whitespace, no control character', async (t) => {
  const withEmail = (email: unknown): Identity => ({ ...IDENTITY, method: 'jwt', claims: { email } });
  const sent = (email: unknown) => headerRecord(injectIdentity(exchange(sanitizeHeaders(plan(), []), withEmail(email))))['x-auth-email'];
  t.equal(sent('admin@corp.example'), 'admin@corp.example');
  t.equal(sent('Ada Lovelace <ada@corp.example>'), 'Ada Lovelace <ada@corp.example>', 'inner spaces are fine');
  t.equal(sent(''), '', 'an empty claim is an empty header');
  for (const bad of [' admin@corp.example', 'admin@corp.example\t', 'a\r\nX-Auth-Tenant: evil', 'caf\u00e9', ['admin@corp.example', '']]) {
    t.equal(sent(bad), undefined, `left out: ${JSON.stringify(bad)}`);
  }
});

t.test('Transfer-Encoding: chunked alone is understood; any other coding is 501, never forwarded', async (t) => {
  for (const value of ['chunked', 'Chunked', ' chunked ']) t.strictSame(sanitizeHeaders(plan(), ['Transfer-Encoding', value, 'Accept', 'a']).headers, ['accept', 'a'], value);
  for (const raw of [['Transfer-Encoding', 'gzip, chunked'], ['Transfer-Encoding', 'gzip', 'Transfer-Encoding', 'chunked'], ['transfer-encoding', 'x-custom,chunked']]) {
    t.throws(() => sanitizeHeaders(plan(), raw), { code: 'not_implemented', status: 501, reason: 'unsupported_transfer_coding' }, raw.join(' '));
  }
});

t.test('a header named __proto__ (or constructor) is just a header', async (t) => {
  const out = sanitizeHeaders(plan(), ['__proto__', 'polluted', 'constructor', 'x', '__proto__', 'again', 'Accept', 'a']);
  t.strictSame(out.headers, ['__proto__', 'polluted', 'constructor', 'x', '__proto__', 'again', 'accept', 'a'], 'forwarded as sent, in order');
  const record = headerRecord(out.headers);
  t.equal(Object.getPrototypeOf(record), null);
  t.strictSame(Object.keys(record), ['__proto__', 'constructor', 'accept']);
  t.strictSame(Object.getOwnPropertyDescriptor(record, '__proto__')?.value, ['polluted', 'again']);
  t.equal(record.constructor, 'x');
  t.equal((({}) as Record<string, unknown>).polluted, undefined, 'Object.prototype untouched');
  t.equal((record as Record<string, unknown>).polluted, undefined);
});

t.test('duplicate ordinary headers are all kept, in order', async (t) => {
  const raw = ['Accept', 'a', 'accept', 'b', 'Cookie', 'x=1', 'ACCEPT', 'c', 'Cookie', 'y=2', 'X-One', '1'];
  t.strictSame(sanitizeHeaders(plan(), raw).headers, ['accept', 'a', 'accept', 'b', 'cookie', 'x=1', 'accept', 'c', 'cookie', 'y=2', 'x-one', '1']);
  t.strictSame(kept(raw), {
    accept: ['a', 'b', 'c'],
    cookie: ['x=1', 'y=2'],
    'x-one': '1',
  });
});

t.test('credentials are taken out of the forwarded headers and collected', async (t) => {
  const out = sanitizeHeaders(plan(), ['Authorization', 'Bearer a', 'authorization', 'Bearer b', 'X-API-Key', 'k1', 'Accept', 'a']);
  t.strictSame(out.headers, ['accept', 'a']);
  t.strictSame(out.authorization, ['Bearer a', 'Bearer b']);
  t.strictSame(out.apiKey, ['k1']);
  const noHeaderSource = sanitizeHeaders(new HeaderPlan(DEFAULT_IDENTITY, false, false), ['X-API-Key', 'k1']);
  t.strictSame(noHeaderSource.apiKey, [], 'X-API-Key is no credential when it is not a key source');
  t.strictSame(noHeaderSource.headers, ['x-api-key', 'k1']);
});

t.test('X-Forwarded-For values are joined; the first Proto and Host win', async (t) => {
  const out = sanitizeHeaders(plan(), ['X-Forwarded-For', '1.1.1.1', 'x-forwarded-for', '2.2.2.2, 3.3.3.3', 'X-Forwarded-Proto', 'https', 'X-Forwarded-Proto', 'http', 'X-Forwarded-Host', 'a', 'X-Forwarded-Host', 'b']);
  t.equal(out.forwardedFor, '1.1.1.1, 2.2.2.2, 3.3.3.3');
  t.equal(out.forwardedProto, 'https');
  t.equal(out.forwardedHost, 'a');
});

t.test('two Host headers or two X-Request-Id headers are a 400', async (t) => {
  const cases: string[][] = [
    ['Host', 'a', 'Host', 'b'],
    ['Host', 'a', 'host', 'a'],
    ['X-Request-Id', 'a', 'x-request-id', 'b'],
  ];
  for (const raw of cases) {
    t.throws(() => sanitizeHeaders(plan(), raw), { code: 'bad_request', status: 400, reason: 'malformed_header' }, raw.join(' '));
  }
});

t.test('X-Request-Id is valid when it is 1-128 characters of A-Z a-z 0-9 . _ : -', async (t) => {
  const cases: [id: string | undefined, valid: boolean][] = [
    ['a', true],
    ['0f8fad5b-d9cb-469f-a165-70867728950e', true],
    ['trace.id_1:2-3', true],
    ['x'.repeat(128), true],
    ['x'.repeat(129), false],
    ['', false],
    [undefined, false],
    ['a b', false],
    ['a/b', false],
    ['a,b', false],
    ['a\tb', false],
    ['ü', false],
    ['id\r\nx-auth-tenant: evil', false],
    ['<script>', false],
  ];
  for (const [id, valid] of cases) t.equal(isValidRequestId(id), valid, JSON.stringify(id));
});
