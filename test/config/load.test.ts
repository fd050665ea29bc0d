import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/config/issues.js';

const dir = mkdtempSync(join(tmpdir(), 'gatehouse-load-'));
let n = 0;

/** Writes `yaml` to a fresh file and loads it; returns the file and the issues as `FILE:LINE:COL message`. */
function load(yaml: string, env: Record<string, string> = {}) {
  const file = join(dir, `config-${++n}.yaml`);
  writeFileSync(file, yaml);
  try {
    return { file, config: loadConfig(file, env), issues: [] as string[] };
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return { file, config: null, issues: err.issues.map(String) };
  }
}

writeFileSync(join(dir, 'garbage-jwks.json'), '{"keys":"garbage"}');
writeFileSync(join(dir, 'symmetric-jwks.json'), JSON.stringify({ keys: [{ kty: 'oct', k: 'c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA' }] }));
const SECRET = '0123456789abcdef0123456789abcdef';
/** Config tables have no prototype (see reader.ts record); compared by content. */
const plain = (v: unknown): unknown => JSON.parse(JSON.stringify(v));
const UP = 'upstreams:\n  default:\n    url: http://127.0.0.1:3000\n';
const ROUTE = 'routes:\n  - name: all\n    match: { path: /** }\n    auth: none\n';
/** A provider block (5 lines, starting on line 5 when placed right after version + UP) with one key source. */
const provider = (lines: string) => `auth:\n  jwt:\n    providers:\n      - name: a\n        issuer: https://issuer/\n${lines}`;

interface Case {
  name: string;
  yaml: string;
  env?: Record<string, string>;
  /** `LINE:COL message`, in the order reported. */
  issues: string[];
}

const cases: Case[] = [
  { name: 'unknown top-level key (typo of server)', yaml: `version: 1\nservr:\n  port: 1\n${UP}${ROUTE}`, issues: ['2:1 servr: unknown key'] },
  {
    name: 'unknown nested key: audiance instead of audience',
    yaml: `version: 1\n${UP}${provider(`        audiance: api\n        algorithms: [HS256]\n        secret: ${SECRET}\n`)}${ROUTE}`,
    issues: ['8:9 auth.jwt.providers[0].audience: required key is missing', '10:9 auth.jwt.providers[0].audiance: unknown key'],
  },
  {
    name: 'unknown key in an upstream',
    yaml: `version: 1\n${UP}    timout: 5s\n${ROUTE}`,
    issues: ['5:5 upstreams.default.timout: unknown key'],
  },
  {
    name: 'unknown key inside a route match',
    yaml: `version: 1\n${UP}routes:\n  - name: all\n    match: { path: /**, method: [GET] }\n    auth: none\n`,
    issues: ['7:25 routes[0].match.method: unknown key'],
  },
  { name: 'a port that is a word', yaml: `version: 1\nserver:\n  port: eighty\n${UP}${ROUTE}`, issues: ['3:9 server.port: must be a whole number from 0 to 65535'] },
  { name: 'a port out of range', yaml: `version: 1\nserver:\n  port: 70000\n${UP}${ROUTE}`, issues: ['3:9 server.port: must be a whole number from 0 to 65535'] },
  { name: 'a boolean that is not one', yaml: `version: 1\n${UP}    keepAlive: yes please\n${ROUTE}`, issues: ['5:16 upstreams.default.keepAlive: must be true or false'] },
  {
    name: 'a headersTimeout longer than requestTimeout (node:http would refuse to start)',
    yaml: `version: 1\nserver:\n  requestTimeout: 5s\n  headersTimeout: 20s\n${UP}${ROUTE}`,
    issues: ['4:19 server.headersTimeout: must not be longer than server.requestTimeout'],
  },
  {
    name: 'an upstream connection limit of 0, and a negative queue',
    yaml: `version: 1\n${UP}    maxConnections: 0\n    maxPending: -1\n${ROUTE}`,
    issues: ['5:21 upstreams.default.maxConnections: must be a whole number from 1 to 65535', '6:17 upstreams.default.maxPending: must be a whole number from 0 to 1000000'],
  },
  { name: 'a section that is a list', yaml: `version: 1\nserver: [1, 2]\n${UP}${ROUTE}`, issues: ['2:9 server: must be a mapping'] },
  { name: 'routes that are a mapping', yaml: `version: 1\n${UP}routes:\n  all: {}\n`, issues: ['6:3 routes: must be a list'] },
  {
    name: 'algorithms as a string instead of a list',
    yaml: `version: 1\n${UP}${provider(`        audience: api\n        algorithms: HS256\n        secret: ${SECRET}\n`)}${ROUTE}`,
    issues: ['11:21 auth.jwt.providers[0].algorithms: must be a list'],
  },
  {
    name: 'a duration with a unit that does not exist',
    yaml: `version: 1\nserver:\n  shutdownTimeout: 5w\n${UP}${ROUTE}`,
    issues: ['3:20 server.shutdownTimeout: must be a duration such as 250ms, 30s, 5m, 1h, 1d or a number of seconds'],
  },
  {
    name: 'a duration written in words',
    yaml: `version: 1\n${UP}    timeout: 10 seconds\n${ROUTE}`,
    issues: ['5:14 upstreams.default.timeout: must be a duration such as 250ms, 30s, 5m, 1h, 1d or a number of seconds'],
  },
  {
    name: 'a negative duration',
    yaml: `version: 1\nserver:\n  shutdownTimeout: -1\n${UP}${ROUTE}`,
    issues: ['3:20 server.shutdownTimeout: must be a duration such as 250ms, 30s, 5m, 1h, 1d or a number of seconds'],
  },
  {
    name: 'a timer longer than Node can hold (it would fire at once)',
    yaml: `version: 1\nserver:\n  shutdownTimeout: 25d\n${UP}    timeout: 30d\n${ROUTE}`,
    issues: ['3:20 server.shutdownTimeout: must be at most 24d', '7:14 upstreams.default.timeout: must be at most 24d'],
  },
  {
    name: 'a JWKS refresh period of 0 or beyond 24 days (a fetch loop against the IdP)',
    yaml: `version: 1\n${UP}${provider(`        audience: api\n        algorithms: [RS256]\n        jwksUrl: https://idp.example.com/jwks\n        jwksCacheMaxAge: 0\n        jwksCooldown: 30d\n`)}${ROUTE}`,
    issues: ['14:23 auth.jwt.providers[0].jwksCooldown: must be at most 24d', '13:26 auth.jwt.providers[0].jwksCacheMaxAge: must be at least 1s'],
  },
  {
    name: 'a window of 0 (it would turn a limit or the failed-auth guard off without a word)',
    yaml:
      `version: 1\n${UP}auth:\n  failedAuth: { limit: 3, window: 0 }\nrateLimit:\n  policies:\n    std: { limit: 10, window: 0, by: ip }\n    ok: { limit: 10, window: 1m, by: ip }\n` +
      `  tenants:\n    acme:\n      ok: { limit: 1000, window: 0 }\n${ROUTE}`,
    issues: [
      '6:35 auth.failedAuth.window: must be longer than 0',
      '9:31 rateLimit.policies.std.window: must be longer than 0',
      '13:34 rateLimit.tenants.acme.ok.window: must be longer than 0',
    ],
  },
  {
    name: 'a route with an empty methods list (it would match nothing)',
    yaml: `version: 1\n${UP}routes:\n  - name: all\n    match: { path: /**, methods: [] }\n    auth: none\n`,
    issues: ['7:34 routes[0].match.methods: must list at least one method (leave it out to match every method)'],
  },
  { name: 'missing version', yaml: `${UP}${ROUTE}`, issues: ['1:1 version: required key is missing'] },
  { name: 'an unsupported version', yaml: `version: 2\n${UP}${ROUTE}`, issues: ['1:10 version: must be a whole number from 1 to 1'] },
  {
    name: 'an upstream without url (reported once, not again by the route using it)',
    yaml: `version: 1\nupstreams:\n  default:\n    timeout: 5s\n${ROUTE}`,
    issues: ['4:5 upstreams.default.url: required key is missing'],
  },
  {
    name: 'an upstream url that is not http(s)',
    yaml: `version: 1\nupstreams:\n  default:\n    url: ftp://files/\n${ROUTE}`,
    issues: ['4:10 upstreams.default.url: must be an http:// or https:// URL without query or credentials'],
  },
  {
    name: 'a provider without algorithms (there is no default list)',
    yaml: `version: 1\n${UP}${provider(`        audience: api\n        secret: ${SECRET}\n`)}${ROUTE}`,
    issues: ['8:9 auth.jwt.providers[0].algorithms: required key is missing'],
  },
  {
    name: 'an unset variable is named once, with no follow-on errors about the empty value',
    yaml: `version: 1\nupstreams:\n  default:\n    url: \${UPSTREAM_URL}\n${ROUTE}`,
    issues: ['4:10 environment variable UPSTREAM_URL is not set (use ${UPSTREAM_URL:-default} for a default)'],
  },
  {
    name: 'two unset variables in one value are both named',
    yaml: `version: 1\nupstreams:\n  default:\n    url: http://\${HOST}:\${PORT}\n${ROUTE}`,
    issues: [
      '4:10 environment variable HOST is not set (use ${HOST:-default} for a default)',
      '4:10 environment variable PORT is not set (use ${PORT:-default} for a default)',
    ],
  },
  {
    name: 'an unset variable in a name (a tenant override keyed by env) is named too',
    yaml: `version: 1\n${UP}rateLimit:\n  policies:\n    std: { limit: 10, window: 1m, by: tenant }\n  tenants:\n    \${BIG_TENANT}:\n      std: { limit: 5000, window: 1h }\n${ROUTE}`,
    issues: ['9:5 environment variable BIG_TENANT is not set (use ${BIG_TENANT:-default} for a default)'],
  },
  {
    name: 'a variable that expands to a bad port',
    yaml: `version: 1\nserver:\n  port: \${PORT}\n${UP}${ROUTE}`,
    env: { PORT: 'abc' },
    issues: ['3:9 server.port: must be a whole number from 0 to 65535'],
  },
  {
    name: 'alg none is refused',
    yaml: `version: 1\n${UP}${provider(`        audience: api\n        algorithms: [HS256, none]\n        secret: ${SECRET}\n`)}${ROUTE}`,
    issues: ['11:21 auth.jwt.providers[0].algorithms: "none" is never accepted'],
  },
  {
    name: 'an asymmetric algorithm with a secret is refused',
    yaml: `version: 1\n${UP}${provider(`        audience: api\n        algorithms: [RS256]\n        secret: ${SECRET}\n`)}${ROUTE}`,
    issues: ['11:21 auth.jwt.providers[0].algorithms: "RS256" is asymmetric, but this provider verifies with a shared secret; use HS256, HS384 or HS512'],
  },
  {
    name: 'a symmetric algorithm with a JWKS is refused',
    yaml: `version: 1\n${UP}${provider(`        audience: api\n        algorithms: [HS256]\n        jwksUrl: https://issuer/jwks.json\n`)}${ROUTE}`,
    issues: ['11:21 auth.jwt.providers[0].algorithms: "HS256" is symmetric, but this provider verifies with a public key (jwksUrl); use an asymmetric algorithm'],
  },
  {
    name: 'a secret shorter than 32 bytes is refused (and only that is reported)',
    yaml: `version: 1\n${UP}${provider(`        audience: api\n        algorithms: [HS256]\n        secret: short\n`)}${ROUTE}`,
    issues: ['12:17 auth.jwt.providers[0].secret: must be at least 32 bytes'],
  },
  {
    name: 'two key sources are refused',
    yaml: `version: 1\n${UP}${provider(`        audience: api\n        algorithms: [RS256]\n        jwksUrl: https://issuer/jwks.json\n        jwksFile: jwks.json\n`)}${ROUTE}`,
    issues: [
      '8:9 auth.jwt.providers[0]: set exactly one of jwksUrl, jwksFile, publicKey, secret (found jwksUrl, jwksFile)',
      '13:19 auth.jwt.providers[0].jwksFile: cannot read the file (ENOENT)',
    ],
  },
  {
    name: 'CONNECT is not a route method: gatehouse answers it 501 itself',
    yaml: `version: 1\n${UP}routes:\n  - name: all\n    match: { path: /**, methods: [CONNECT] }\n    auth: none\n`,
    issues: ['7:34 routes[0].match.methods: "CONNECT" is not one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, TRACE (upper case)'],
  },
  {
    name: 'a jwksFile that is missing is refused, as a publicKey file is (serve could never be ready)',
    yaml: `version: 1\n${UP}${provider(`        audience: api\n        algorithms: [RS256]\n        jwksFile: missing-jwks.json\n`)}${ROUTE}`,
    issues: ['12:19 auth.jwt.providers[0].jwksFile: cannot read the file (ENOENT)'],
  },
  {
    name: 'a jwksFile that is not a JWKS is refused',
    yaml: `version: 1\n${UP}${provider(`        audience: api\n        algorithms: [RS256]\n        jwksFile: garbage-jwks.json\n`)}${ROUTE}`,
    issues: ['12:19 auth.jwt.providers[0].jwksFile: the file is not a JWKS (no "keys" array)'],
  },
  {
    name: 'a jwksFile with no usable signature key is refused',
    yaml: `version: 1\n${UP}${provider(`        audience: api\n        algorithms: [RS256]\n        jwksFile: symmetric-jwks.json\n`)}${ROUTE}`,
    issues: ['12:19 auth.jwt.providers[0].jwksFile: the JWKS has no usable signature key'],
  },
  {
    name: 'a provider name that cannot be an X-Auth-Key-Id value',
    yaml: `version: 1\n${UP}${provider(`        audience: api\n        algorithms: [HS256]\n        secret: ${SECRET}\n`).replace('name: a', 'name: my idp')}${ROUTE}`,
    issues: ['8:15 auth.jwt.providers[0].name: must be 1-128 characters of A-Z a-z 0-9 . _ : -'],
  },
  {
    name: 'API key identity values that cannot come back exactly from a header',
    yaml: `version: 1\n${UP}auth:\n  apiKeys:\n    keys:\n      - { id: k1, hash: "sha256:${'a'.repeat(64)}", tenant: "acme ", subject: s }\n      - { id: k2, hash: "sha256:${'b'.repeat(64)}", tenant: acme, scopes: ["read write"] }\n${ROUTE}`,
    issues: [
      '8:108 auth.apiKeys.keys[0].tenant: must be visible ASCII, without spaces at either end (it is sent as a header value)',
      '9:122 auth.apiKeys.keys[1].scopes: each scope must be visible ASCII without spaces (it is sent as a header value)',
    ],
  },
  {
    name: 'two routes with one name',
    yaml: `version: 1\n${UP}routes:\n  - name: all\n    match: { path: /a }\n    auth: none\n  - name: all\n    match: { path: /b }\n    auth: none\n`,
    issues: ['9:11 routes[1].name: route "all" is defined twice'],
  },
  {
    name: 'a route naming an unknown policy',
    yaml: `version: 1\n${UP}routes:\n  - name: all\n    match: { path: /a }\n    auth: none\n    rateLimit: [nope]\n`,
    issues: ['9:16 routes[0].rateLimit: no policy named "nope"'],
  },
  {
    name: 'a route naming an unknown upstream',
    yaml: `version: 1\n${UP}routes:\n  - name: all\n    match: { path: /a }\n    auth: none\n    upstream: other\n`,
    issues: ['9:15 routes[0].upstream: no upstream named "other"'],
  },
  {
    name: 'route auth naming an unknown provider',
    yaml: `version: 1\n${UP}auth:\n  apiKeys:\n    keys: []\nroutes:\n  - name: all\n    match: { path: /a }\n    auth: [sso, api-key]\n`,
    issues: ['11:11 routes[0].auth: unknown provider "sso" (use any, none, jwt, api-key or provider names)'],
  },
  {
    name: 'a by: tenant policy on an auth: none route',
    yaml: `version: 1\n${UP}rateLimit:\n  policies:\n    std: { limit: 10, window: 1m, by: tenant }\nroutes:\n  - name: all\n    match: { path: /a }\n    auth: none\n    rateLimit: [std]\n`,
    issues: ['12:16 routes[0].rateLimit: policy "std" is by tenant, but the route has auth: none (only by: ip works without a caller)'],
  },
  {
    name: '** that is not the last segment',
    yaml: `version: 1\n${UP}routes:\n  - name: all\n    match: { path: /api/**/x }\n    auth: none\n`,
    issues: ['7:20 routes[0].match.path: ** may only be the last segment'],
  },
  { name: 'YAML syntax error: tab indentation', yaml: 'version: 1\nserver:\n\tport: 1\n', issues: ['3:1 Tabs are not allowed as indentation'] },
  { name: 'YAML syntax error: nested compact mapping', yaml: 'version: 1\nkey: value: other\n', issues: ['2:6 Nested mappings are not allowed in compact mappings'] },
  { name: 'YAML duplicate key', yaml: `version: 1\nserver:\n  port: 1\n  port: 2\n${UP}${ROUTE}`, issues: ['4:3 Map keys must be unique'] },
  {
    name: 'identity headers cannot take framing, credential or forwarding header names, in any spelling',
    yaml: `version: 1\n${UP}${ROUTE}identity:\n  headers:\n    tenant: Content-Length\n    subject: x_forwarded_for\n  claimHeaders:\n    Authorization: email\n    HOST: org\n`,
    issues: [
      '11:13 identity.headers.tenant: "Content-Length" is reserved (HTTP or gatehouse itself sets it)',
      '12:14 identity.headers.subject: "x_forwarded_for" is reserved (HTTP or gatehouse itself sets it)',
      '14:5 identity.claimHeaders.Authorization: "Authorization" is reserved (HTTP or gatehouse itself sets it)',
      '15:5 identity.claimHeaders.HOST: "HOST" is reserved (HTTP or gatehouse itself sets it)',
    ],
  },
  {
    name: 'two injected headers under one name (case and _ do not make them different)',
    yaml: `version: 1\n${UP}${ROUTE}identity:\n  headers:\n    role: X-Auth-Tenant\n  claimHeaders:\n    x_auth_subject: sub\n    X-Email: email\n`,
    issues: [
      '11:11 identity.headers.role: "X-Auth-Tenant" is already the name of identity.headers.tenant',
      '13:5 identity.claimHeaders.x_auth_subject: "x_auth_subject" is already the name of identity.headers.subject',
    ],
  },
  {
    name: 'several errors are all reported at once',
    yaml: [
      'version: 2',
      'servr: {}',
      'upstreams:',
      '  default:',
      '    url: ftp://x',
      '    timeout: soon',
      'routes:',
      '  - name: a',
      '    match: { path: /a/**/b, methods: [get] }',
      '    auth: bogus',
      '    upstream: nowhere',
      '',
    ].join('\n'),
    issues: [
      '1:10 version: must be a whole number from 1 to 1',
      '5:10 upstreams.default.url: must be an http:// or https:// URL without query or credentials',
      '6:14 upstreams.default.timeout: must be a duration such as 250ms, 30s, 5m, 1h, 1d or a number of seconds',
      '9:20 routes[0].match.path: ** may only be the last segment',
      '9:38 routes[0].match.methods: "get" is not one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, TRACE (upper case)',
      '10:11 routes[0].auth: unknown provider "bogus" (use any, none, jwt, api-key or provider names)',
      '11:15 routes[0].upstream: no upstream named "nowhere"',
      '2:1 servr: unknown key',
    ],
  },
];

t.test('config errors name the file, line and column of the offending key or value', async (t) => {
  for (const c of cases) {
    const { file, issues } = load(c.yaml, c.env);
    t.strictSame(issues, c.issues.map((i) => `${file}:${i}`), c.name);
  }
});

t.test('several errors are reported together (counted), one per line of the error message', async (t) => {
  const several = cases.find((c) => c.name.startsWith('several'))!;
  const file = join(dir, 'several.yaml');
  writeFileSync(file, several.yaml);
  const err = t.throws(() => loadConfig(file, {})) as ConfigError;
  t.equal(err.issues.length, 8);
  t.equal(err.message.split('\n').length, 8);
  t.equal(err.message.split('\n')[0], `${file}:1:10 version: must be a whole number from 1 to 1`);
});

t.test('headersTimeout defaults to 10s, or to a shorter requestTimeout; with requestTimeout 0 (off) anything goes', async (t) => {
  const server = (lines: string) => load(`version: 1\nserver:\n${lines}${UP}${ROUTE}`);
  t.strictSame(server('  requestTimeout: 5s\n').config?.server.headersTimeoutMs, 5_000);
  t.strictSame(server('  requestTimeout: 30s\n').config?.server.headersTimeoutMs, 10_000);
  t.strictSame(server('  requestTimeout: 0\n').config?.server.headersTimeoutMs, 10_000);
  t.strictSame(server('  requestTimeout: 0\n  headersTimeout: 1h\n').issues, []);
  t.strictSame(server('  requestTimeout: 5s\n  headersTimeout: 0\n').issues, []);
  t.strictSame(server('  requestTimeout: 5s\n  headersTimeout: 5s\n').issues, []);
});

t.test('a missing file is a config error at 1:1', async (t) => {
  const file = join(dir, 'does-not-exist.yaml');
  const err = t.throws(() => loadConfig(file, {})) as ConfigError;
  t.strictSame(err.issues.map(String), [`${file}:1:1 cannot read file (ENOENT)`]);
});

t.test('${VAR:-default} gives the default when VAR is unset and the value when it is set', async (t) => {
  const yaml = `version: 1\nupstreams:\n  default:\n    url: \${UPSTREAM:-http://10.0.0.1:81/base}\n${ROUTE}`;
  t.equal(load(yaml).config?.upstreams.default.url, 'http://10.0.0.1:81/base');
  t.equal(load(yaml, { UPSTREAM: 'https://api.internal/v2' }).config?.upstreams.default.url, 'https://api.internal/v2');
  t.equal(load(`version: 1\nupstreams:\n  default:\n    url: http://h\${SUFFIX:-}/\n${ROUTE}`).config?.upstreams.default.url, 'http://h/', 'an empty default');
});

t.test('an environment variable can fill an integer (port) and a duration', async (t) => {
  const yaml = `version: 1\nserver:\n  port: \${PORT}\n  shutdownTimeout: \${GRACE}\n${UP}${ROUTE}`;
  const { config, issues } = load(yaml, { PORT: '9090', GRACE: '250ms' });
  t.strictSame(issues, []);
  t.equal(config?.server.port, 9090);
  t.equal(config?.server.shutdownTimeoutMs, 250);
});

t.test('durations: every unit and plain seconds', async (t) => {
  const cases: [string, number][] = [
    ['250ms', 250],
    ['30s', 30_000],
    ['5m', 300_000],
    ['1h', 3_600_000],
    ['1d', 86_400_000],
    ['2', 2_000],
    ['1.5', 1_500],
    ['0', 0],
  ];
  for (const [text, ms] of cases) {
    const { config, issues } = load(`version: 1\nserver:\n  shutdownTimeout: ${text}\n${UP}${ROUTE}`);
    t.strictSame(issues, [], text);
    t.equal(config?.server.shutdownTimeoutMs, ms, text);
  }
});

t.test('config.example.yaml loads cleanly', async (t) => {
  const config = loadConfig(resolve(import.meta.dirname, '../../config.example.yaml'), {});
  t.strictSame(
    config.routes.map((r) => r.name),
    ['login', 'whoami', 'reports', 'api'],
  );
  t.equal(config.auth.apiKeys?.keys.length, 2);
  t.equal(config.auth.jwt.providers.length, 1);
  t.strictSame(Object.keys(config.rateLimit.policies), ['standard', 'reports', 'login']);
});

t.test('a minimal config gets every default of SPEC section 2', async (t) => {
  const yaml = [
    'version: 1',
    'admin: {}',
    'upstreams:',
    '  default:',
    '    url: http://127.0.0.1:3000',
    'auth:',
    '  jwt:',
    '    providers:',
    '      - name: sso',
    '        issuer: https://issuer/',
    '        audience: api',
    '        algorithms: [RS256]',
    '        jwksUrl: https://issuer/jwks.json',
    '  apiKeys:',
    '    keys:',
    `      - { id: ci, hash: "sha256:${'ab'.repeat(32)}", tenant: acme }`,
    'routes:',
    '  - name: all',
    '    match: { path: /** }',
    '',
  ].join('\n');
  const { config, issues } = load(yaml);
  t.strictSame(issues, []);
  const c = config!;
  t.strictSame(c.server, {
    host: '0.0.0.0',
    port: 8080,
    trustProxy: false,
    shutdownTimeoutMs: 10_000,
    maxHeaderBytes: 16_384,
    headersTimeoutMs: 10_000,
    requestTimeoutMs: 300_000,
    keepAliveTimeoutMs: 5_000,
    sendTimeoutMs: 60_000,
  });
  t.strictSame(c.admin, { host: '127.0.0.1', port: 9901 });
  t.strictSame(c.upstreams.default, { name: 'default', url: 'http://127.0.0.1:3000', connectTimeoutMs: 5_000, timeoutMs: 30_000, keepAlive: true, maxConnections: 1_024, maxPending: 1_024 });
  const p = c.auth.jwt.providers[0];
  t.strictSame(p.audience, ['api'], 'a single audience string becomes a list');
  t.equal(p.clockToleranceMs, 30_000);
  t.equal(p.jwksCooldownMs, 10_000);
  t.equal(p.jwksCacheMaxAgeMs, 600_000);
  t.equal(p.defaultTenant, null);
  t.strictSame(c.auth.apiKeys?.sources, ['authorization', 'x-api-key']);
  t.equal(c.auth.apiKeys?.file, null);
  t.strictSame(c.auth.apiKeys?.keys[0], {
    id: 'ci',
    hash: 'ab'.repeat(32),
    tenant: 'acme',
    subject: 'ci',
    role: null,
    scopes: [],
    access: 'full',
    plan: null,
    expiresAt: null,
    disabled: false,
  });
  t.equal(c.auth.failedAuth, null, 'failedAuth is off unless configured');
  t.strictSame(plain(c.identity), {
    headers: {
      tenant: 'X-Auth-Tenant',
      subject: 'X-Auth-Subject',
      role: 'X-Auth-Role',
      scopes: 'X-Auth-Scopes',
      method: 'X-Auth-Method',
      keyId: 'X-Auth-Key-Id',
    },
    claimHeaders: {},
    stripPrefixes: ['X-Auth-'],
    forwardAuthorization: false,
  });
  t.strictSame(plain(c.rateLimit), {
    store: 'memory',
    maxKeys: 100_000,
    redis: { url: 'redis://127.0.0.1:6379', keyPrefix: 'gatehouse:', commandTimeoutMs: 100, onError: 'allow' },
    headers: 'both',
    policies: {},
    plans: {},
    tenants: {},
  });
  t.strictSame(c.log, { level: 'info' });
  t.strictSame(c.routes[0], {
    name: 'all',
    path: '/**',
    methods: null,
    auth: { kind: 'some', jwtProviders: 'all', apiKeys: true },
    require: { scopes: [], roles: [] },
    rateLimit: [],
    upstream: 'default',
    respond: null,
  });
});

t.test('names that are Object.prototype members are names like any other: no inherited policy, upstream or override', async (t) => {
  const route = (limits: string) => `routes:\n  - name: all\n    match: { path: /** }\n    auth: none\n    rateLimit: [${limits}]\n`;
  // A route naming an undefined policy "toString" or "constructor" is an error, not the inherited function.
  const undefinedPolicy = load(`version: 1\n${UP}rateLimit:\n  policies:\n    std: { limit: 5, window: 1m, by: ip }\n${route('toString')}`);
  t.match(undefinedPolicy.issues, [/routes\[0\]\.rateLimit: no policy named "toString"/]);
  const override = load(`version: 1\n${UP}rateLimit:\n  policies:\n    std: { limit: 5, window: 1m, by: ip }\n  tenants:\n    acme: { valueOf: { limit: 1, window: 1m } }\n${route('std')}`);
  t.match(override.issues, [/rateLimit\.tenants\.acme\.valueOf: no policy named "valueOf"/]);
  // Defined under such names, they work, and a tenant named __proto__ is a tenant.
  const named = load(
    `version: 1\n${UP}rateLimit:\n  policies:\n    constructor: { limit: 5, window: 1m, by: ip }\n    std: { limit: 9, window: 1m, by: ip }\n` +
      `  tenants:\n    __proto__: { constructor: { limit: 2, window: 1m } }\n    alpha: { std: { limit: 3, window: 1m } }\n${route('constructor, std')}`,
  );
  t.strictSame(named.issues, []);
  const c = named.config!.rateLimit;
  t.strictSame(plain(c.policies.constructor), { name: 'constructor', limit: 5, windowMs: 60_000, by: 'ip' });
  // As text: tap compares objects by their `constructor` property too, which here is a policy.
  t.equal(JSON.stringify(c.tenants['__proto__']), JSON.stringify({ constructor: { limit: 2, windowMs: 60_000 } }));
  t.equal(Object.hasOwn(c.tenants, '__proto__'), true, 'an own entry, not the prototype');
  t.equal(c.tenants.alpha.constructor, undefined, 'alpha has no override of "constructor"');
});

t.test('failedAuth takes the limit (20) and window (1m) of the SPEC example for what is left out', async (t) => {
  const base = `version: 1\n${UP}${ROUTE}auth:\n`;
  t.strictSame(load(`${base}  failedAuth: {}\n`).config!.auth.failedAuth, { limit: 20, windowMs: 60_000 });
  for (const empty of ['', ' ~', ' null']) {
    t.strictSame(load(`${base}  failedAuth:${empty}\n`).config!.auth.failedAuth, { limit: 20, windowMs: 60_000 }, `failedAuth:${empty} is on, not off`);
  }
  t.strictSame(load(`${base}  failedAuth: { limit: 5 }\n`).config!.auth.failedAuth, { limit: 5, windowMs: 60_000 });
  t.strictSame(load(`${base}  failedAuth: { window: 10m }\n`).config!.auth.failedAuth, { limit: 20, windowMs: 600_000 });
});

t.test('${NAME} is expanded in a name as in any string: a tenant override keyed by an environment variable', async (t) => {
  const yaml = `version: 1\n${UP}rateLimit:\n  policies:\n    std: { limit: 10, window: 1m, by: tenant }\n  tenants:\n    \${BIG_TENANT}:\n      std: { limit: 5000, window: 1h }\n${ROUTE}`;
  const { config, issues } = load(yaml, { BIG_TENANT: 'acme' });
  t.strictSame(issues, []);
  t.strictSame(plain(config!.rateLimit.tenants), { acme: { std: { limit: 5000, windowMs: 3_600_000 } } });
});
