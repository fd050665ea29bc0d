// Rate limits end to end over real sockets, memory store, time moved by a ManualClock (SPEC section 5).
import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { ManualClock } from '../../src/clock.js';
import { loadConfig } from '../../src/config/load.js';
import { call, startGatehouse, startUpstream, type Answer, type Running, type Upstream } from '../support/harness.js';

const sha = (key: string) => `sha256:${createHash('sha256').update(key).digest('hex')}`;

/** API keys by name: the key is `key-NAME`, its id `NAME`. */
const KEYS: Record<string, { tenant: string; subject: string; plan?: string }> = {
  a1: { tenant: 'acme', subject: 'alice' },
  a2: { tenant: 'acme', subject: 'alice' },
  a3: { tenant: 'acme', subject: 'bob' },
  g1: { tenant: 'globex', subject: 'alice' },
  plain: { tenant: 'plainco', subject: 's' },
  gold: { tenant: 'goldco', subject: 's', plan: 'gold' },
  vip: { tenant: 'vip', subject: 's', plan: 'gold' },
  other: { tenant: 'other', subject: 's' },
};

const keysYaml = Object.entries(KEYS)
  .map(
    ([id, k]) =>
      `      - { id: ${id}, hash: "${sha(`key-${id}`)}", tenant: ${k.tenant}, subject: ${k.subject}${k.plan ? `, plan: ${k.plan}` : ''} }`,
  )
  .join('\n');

/** A config with every route the tests use; host and ports fixed so a reload of the file is not a restart. */
function yaml(upstream: string, o: { headers?: string; policies?: string; tenants?: string; plans?: string; extraRoutes?: string } = {}): string {
  const route = (name: string, path: string, policies: string, extra = '') =>
    `  - name: ${name}\n    match: { path: ${path} }\n    auth: any\n    rateLimit: [${policies}]\n${extra}`;
  return `version: 1
server: { host: 127.0.0.1, port: 0, trustProxy: true }
admin: { host: 127.0.0.1, port: 0 }
upstreams:
  default: { url: "${upstream}", timeout: 5s, connectTimeout: 1s }
  dead: { url: "http://127.0.0.1:1", timeout: 5s, connectTimeout: 1s }
auth:
  apiKeys:
    keys:
${keysYaml}
rateLimit:
  headers: ${o.headers ?? 'both'}
  policies:
${o.policies ?? `    burst: { limit: 3, window: 10s, by: tenant }
    small: { limit: 2, window: 1m, by: tenant }
    big: { limit: 5, window: 1m, by: tenant }
    std: { limit: 10, window: 1h, by: tenant }
    ip: { limit: 1, window: 1h, by: ip }
    tenant: { limit: 1, window: 1h, by: tenant }
    subject: { limit: 1, window: 1h, by: subject }
    key: { limit: 1, window: 1h, by: key }`}
  plans:
${o.plans ?? '    gold: { std: { limit: 20, window: 1h } }'}
  tenants:
${o.tenants ?? '    vip: { std: { limit: 30, window: 1h } }'}
routes:
${o.extraRoutes ?? ''}${route('broken', '/broken/**', 'burst', '    upstream: dead\n')}${route('burst', '/burst/**', 'burst')}${route('two', '/two', 'big, small')}${route('big', '/big', 'big')}${route('small', '/small', 'small')}${route('std', '/std', 'std')}  - name: by-ip
    match: { path: /by-ip }
    auth: none
    rateLimit: [ip]
${route('by-tenant', '/by-tenant', 'tenant')}${route('by-subject', '/by-subject', 'subject')}${route('by-key', '/by-key', 'key')}`;
}

const as = (id: string, extra: Record<string, string> = {}) => ({ headers: { 'x-api-key': `key-${id}`, ...extra } });

/** Every rate-limit header of an answer, names lowercased. */
function limitHeaders(answer: Answer): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(answer.headers)) if (/ratelimit/i.test(name)) out[name.toLowerCase()] = String(value);
  return out;
}

let upstream: Upstream;
t.before(async () => {
  upstream = await startUpstream();
});
t.teardown(() => upstream.close());

async function gatehouse(t: Test, o: Parameters<typeof yaml>[1] = {}): Promise<{ gh: Running; clock: ManualClock }> {
  const clock = new ManualClock();
  const gh = await startGatehouse(yaml(upstream.url, o), {}, { clock });
  t.teardown(() => gh.close());
  return { gh, clock };
}

t.test('a tenant bursts to the limit, then gets 429 rate_limit_exceeded with Retry-After rounded up', async (t) => {
  const { gh, clock } = await gatehouse(t);
  // 3 per 10 s: one unit every 3.333 s, so Retry-After must round 3.334 s up to 4.
  for (const remaining of [2, 1, 0]) {
    const ok = await call(`${gh.url}/burst/x`, as('a1'));
    t.equal(ok.status, 200);
    t.same(limitHeaders(ok), {
      'ratelimit-policy': '"burst";q=3;w=10',
      ratelimit: `"burst";r=${remaining};t=${Math.ceil((3 - remaining) * 3.333333)}`,
      'x-ratelimit-limit': '3',
      'x-ratelimit-remaining': String(remaining),
      'x-ratelimit-reset': String(Math.ceil((3 - remaining) * 3.333333)),
    });
  }
  const refused = await call(`${gh.url}/burst/x`, as('a1'));
  t.equal(refused.status, 429);
  t.equal(refused.json.error, 'rate_limit_exceeded');
  t.equal(refused.json.status, 429);
  t.match(refused.headers['content-type'], /^application\/json/);
  t.equal(refused.headers['retry-after'], '4');
  t.same(limitHeaders(refused), {
    'ratelimit-policy': '"burst";q=3;w=10',
    ratelimit: '"burst";r=0;t=10',
    'x-ratelimit-limit': '3',
    'x-ratelimit-remaining': '0',
    'x-ratelimit-reset': '10',
  });
  t.equal(upstream.requests.filter((r) => r.url === '/burst/x').length, 3, 'the refused request never reached the upstream');

  clock.advance(3000);
  const early = await call(`${gh.url}/burst/x`, as('a1'));
  t.equal(early.status, 429, 'waiting less than Retry-After is not enough');
  t.equal(early.headers['retry-after'], '1', '0.334 s left rounds up to 1');
  clock.advance(1000);
  const later = await call(`${gh.url}/burst/x`, as('a1'));
  t.equal(later.status, 200, 'admitted once Retry-After seconds have passed');
  t.equal(later.headers['x-ratelimit-remaining'], '0');
});

t.test('waiting exactly Retry-After seconds admits the next request', async (t) => {
  const { gh, clock } = await gatehouse(t);
  for (let i = 0; i < 2; i++) t.equal((await call(`${gh.url}/small`, as('a1'))).status, 200);
  const refused = await call(`${gh.url}/small`, as('a1'));
  t.equal(refused.status, 429);
  const wait = Number(refused.headers['retry-after']);
  t.equal(wait, 30, '2 per minute: one unit every 30 s');
  clock.advance(wait * 1000);
  t.equal((await call(`${gh.url}/small`, as('a1'))).status, 200);
});

t.test('upstream errors carry the rate-limit headers too', async (t) => {
  const { gh } = await gatehouse(t);
  const broken = await call(`${gh.url}/broken/x`, as('other'));
  t.equal(broken.status, 502);
  t.equal(broken.json.error, 'bad_gateway');
  t.same(limitHeaders(broken), {
    'ratelimit-policy': '"burst";q=3;w=10',
    ratelimit: '"burst";r=2;t=4',
    'x-ratelimit-limit': '3',
    'x-ratelimit-remaining': '2',
    'x-ratelimit-reset': '4',
  });
});

t.test('headers: ietf | legacy | none | both send exactly their header set', async (t) => {
  const ietf = { 'ratelimit-policy': '"std";q=10;w=3600', ratelimit: '"std";r=9;t=360' };
  const legacy = { 'x-ratelimit-limit': '10', 'x-ratelimit-remaining': '9', 'x-ratelimit-reset': '360' };
  const expected: Record<string, Record<string, string>> = { ietf, legacy, none: {}, both: { ...ietf, ...legacy } };
  for (const [mode, headers] of Object.entries(expected)) {
    const { gh } = await gatehouse(t, { headers: mode });
    const ok = await call(`${gh.url}/std`, as('plain'));
    t.equal(ok.status, 200);
    t.same(limitHeaders(ok), headers, `headers: ${mode}`);
  }
});

t.test('two policies: headers describe the one with least remaining; a refusal by one charges neither', async (t) => {
  const { gh } = await gatehouse(t);
  // acme: small (2/min) runs out first.
  const first = await call(`${gh.url}/two`, as('a1'));
  t.equal(first.headers.ratelimit, '"small";r=1;t=30', 'small has 1 left, big 4');
  t.equal(first.headers['x-ratelimit-limit'], '2');
  t.equal((await call(`${gh.url}/two`, as('a1'))).headers.ratelimit, '"small";r=0;t=60');
  const bySmall = await call(`${gh.url}/two`, as('a1'));
  t.equal(bySmall.status, 429);
  t.equal(bySmall.headers['retry-after'], '30', 'the refusing policy sets Retry-After');
  t.equal(bySmall.headers.ratelimit, '"small";r=0;t=60');
  const big = await call(`${gh.url}/big`, as('a1'));
  t.equal(big.headers.ratelimit, '"big";r=2;t=36', 'big was charged twice, not three times');

  // globex: big runs out first (charged through /big), then /two is refused by big alone.
  for (let i = 0; i < 4; i++) t.equal((await call(`${gh.url}/big`, as('g1'))).status, 200);
  const last = await call(`${gh.url}/two`, as('g1'));
  t.equal(last.status, 200);
  t.equal(last.headers.ratelimit, '"big";r=0;t=60', 'big has 0 left, small 1');
  const byBig = await call(`${gh.url}/two`, as('g1'));
  t.equal(byBig.status, 429);
  t.equal(byBig.headers['retry-after'], '12');
  t.equal(byBig.headers['ratelimit-policy'], '"big";q=5;w=60');
  const small = await call(`${gh.url}/small`, as('g1'));
  t.equal(small.status, 200, 'the request refused by big took nothing from small');
  t.equal(small.headers.ratelimit, '"small";r=0;t=60');
});

t.test('effective limit: tenant override beats plan override beats policy', async (t) => {
  const { gh } = await gatehouse(t);
  const cases = [
    { key: 'plain', limit: 10, why: 'no override: the policy' },
    { key: 'gold', limit: 20, why: 'plan gold' },
    { key: 'vip', limit: 30, why: 'tenant vip wins over its plan gold' },
  ];
  for (const { key, limit, why } of cases) {
    let admitted = 0;
    let policy = '';
    for (let i = 0; i <= limit; i++) {
      const answer = await call(`${gh.url}/std`, as(key));
      if (answer.status === 200) admitted++;
      policy ||= String(answer.headers['ratelimit-policy']);
    }
    t.equal(admitted, limit, `${key}: ${why}`);
    t.equal(policy, `"std";q=${limit};w=3600`);
  }
});

t.test('by: ip | tenant | subject | key separate callers by that dimension', async (t) => {
  const { gh } = await gatehouse(t);
  const status = async (path: string, id: string | null, xff?: string) =>
    (await call(`${gh.url}${path}`, { headers: { ...(id ? { 'x-api-key': `key-${id}` } : {}), ...(xff ? { 'x-forwarded-for': xff } : {}) } })).status;
  t.same(
    [await status('/by-ip', null, '10.0.0.1'), await status('/by-ip', null, '10.0.0.1'), await status('/by-ip', null, '10.0.0.2')],
    [200, 429, 200],
    'ip: the second request from 10.0.0.1 is refused, 10.0.0.2 has its own bucket',
  );
  t.same(
    [await status('/by-tenant', 'a1'), await status('/by-tenant', 'a2'), await status('/by-tenant', 'a3'), await status('/by-tenant', 'g1')],
    [200, 429, 429, 200],
    'tenant: every acme key shares one bucket, globex has its own',
  );
  t.same(
    [await status('/by-subject', 'a1'), await status('/by-subject', 'a2'), await status('/by-subject', 'a3'), await status('/by-subject', 'g1')],
    [200, 429, 200, 200],
    'subject: two keys of acme/alice share, acme/bob and globex/alice do not',
  );
  t.same(
    [await status('/by-key', 'a1'), await status('/by-key', 'a2'), await status('/by-key', 'a1')],
    [200, 200, 429],
    'key: two keys of the same subject are limited apart',
  );
});

t.test('limits survive a reload of an unrelated route; a changed override applies after reload', async (t) => {
  const base = { tenants: '    acme: { std: { limit: 10, window: 1h } }' };
  const { gh } = await gatehouse(t, base);
  const reload = (o: Parameters<typeof yaml>[1]) => {
    writeFileSync(gh.configPath, yaml(upstream.url, o));
    return gh.gateway.reload(loadConfig(gh.configPath));
  };
  for (let i = 0; i < 3; i++) t.equal((await call(`${gh.url}/burst/y`, as('a1'))).status, 200);
  const before = await call(`${gh.url}/burst/y`, as('a1'));
  t.equal(before.status, 429);
  t.equal((await call(`${gh.url}/std`, as('a1'))).headers.ratelimit, '"std";r=9;t=360');

  const extra = '  - name: added\n    match: { path: /added }\n    auth: none\n';
  t.equal(reload({ ...base, extraRoutes: extra }), 'ok');
  t.equal((await call(`${gh.url}/added`)).status, 200, 'the new route answers');
  const after = await call(`${gh.url}/burst/y`, as('a1'));
  t.equal(after.status, 429, 'still limited after the reload');
  t.equal(after.headers['retry-after'], before.headers['retry-after']);

  // Lowering acme's std limit to 2/h: the unit already used leaves exactly one.
  t.equal(reload({ tenants: '    acme: { std: { limit: 2, window: 1h } }', extraRoutes: extra }), 'ok');
  const lowered = await call(`${gh.url}/std`, as('a1'));
  t.equal(lowered.status, 200);
  t.equal(lowered.headers['ratelimit-policy'], '"std";q=2;w=3600', 'the new override applies');
  t.equal(lowered.headers.ratelimit, '"std";r=0;t=3600', 'two units used of 2/h: full again in an hour');
  t.equal((await call(`${gh.url}/std`, as('a1'))).status, 429);
});

t.test('refusals are counted per policy in gatehouse_rate_limit_refusals_total', async (t) => {
  const { gh } = await gatehouse(t);
  for (let i = 0; i < 5; i++) await call(`${gh.url}/small`, as('a1')); // 2 admitted, 3 refused
  for (let i = 0; i < 2; i++) await call(`${gh.url}/by-key`, as('a2')); // 1 refused
  const metrics = await call(`${gh.adminUrl}/metrics`);
  t.equal(metrics.status, 200);
  t.match(metrics.text, /^gatehouse_rate_limit_refusals_total\{policy="small"\} 3$/m);
  t.match(metrics.text, /^gatehouse_rate_limit_refusals_total\{policy="key"\} 1$/m);
  t.notMatch(metrics.text, /gatehouse_rate_limit_refusals_total\{policy="big"\}/);
  t.match(metrics.text, /^gatehouse_requests_total\{route="small",status="429"\} 3$/m);
});
