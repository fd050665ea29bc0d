// `gatehouse serve` as operators run it: SIGHUP reloads, a file change reloads, and every SPEC section 8
// metric series is exposed once traffic has flowed.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { call, startUpstream, writeTempFile } from '../support/harness.js';
import { ensureBuilt, serveCli } from '../support/built-cli.js';
import { until } from '../support/until.js';

const KEY = 'gh_test_signals_0123456789abcdefghij';
const hash = createHash('sha256').update(KEY).digest('hex');

const config = (upstream: string, extraRoute: string) => `version: 1
server: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
upstreams:
  default: { url: "${upstream}" }
auth:
  jwt:
    providers:
      - { name: demo, issuer: "https://issuer.test/", audience: api, algorithms: [HS256], secret: "0123456789abcdef0123456789abcdef" }
  apiKeys:
    keys:
      - { id: ops, hash: "sha256:${hash}", tenant: acme }
rateLimit:
  policies:
    tiny: { limit: 1, window: 1h, by: tenant }
routes:
${extraRoute}  - name: api
    match: { path: /api/** }
    auth: any
    rateLimit: [tiny]
`;

t.test('SIGHUP and a file change both reload; the metrics of SPEC section 8 are all exposed', async (t) => {
  await ensureBuilt();
  const upstream = await startUpstream();
  t.teardown(() => upstream.close());
  const path = writeTempFile('gatehouse.yaml', config(upstream.url, ''));
  const gh = await serveCli(path);
  t.teardown(() => gh.stop());
  const reloads = () => gh.logs.filter((l) => l.msg === 'config reloaded').length;

  t.equal((await call(`${gh.url}/health`)).status, 404, 'no such route yet');
  writeFileSync(path, config(upstream.url, '  - name: health\n    match: { path: /health }\n    auth: none\n'));
  await until(() => reloads() === 1, 5000, 'the file change reloads');
  t.equal((await call(`${gh.url}/health`)).status, 200, 'the new route answers');

  gh.child.kill('SIGHUP');
  await until(() => reloads() === 2, 5000, 'SIGHUP reloads');

  // Traffic that feeds every series: an auth failure, an admitted request, a rate-limit refusal.
  t.equal((await call(`${gh.url}/api/x`, { headers: { 'x-api-key': 'wrong' } })).status, 401);
  t.equal((await call(`${gh.url}/api/x`, { headers: { 'x-api-key': KEY } })).status, 200);
  t.equal((await call(`${gh.url}/api/x`, { headers: { 'x-api-key': KEY } })).status, 429);
  const metrics = (await call(`${gh.adminUrl}/metrics`)).text;
  for (const series of [
    'gatehouse_requests_total{route="api",status="200"} 1',
    'gatehouse_requests_total{route="api",status="429"} 1',
    'gatehouse_auth_failures_total{reason="unknown_key"} 1',
    'gatehouse_rate_limit_refusals_total{policy="tiny"} 1',
    'gatehouse_config_reloads_total{outcome="ok"} 2',
  ]) {
    t.ok(metrics.split('\n').includes(series), series);
  }
  for (const name of ['gatehouse_upstream_duration_seconds_bucket', 'gatehouse_jwks_fetches_total', 'gatehouse_verified_token_cache_total', 'gatehouse_requests_in_flight', 'gatehouse_process_cpu_seconds_total']) {
    t.match(metrics, new RegExp(`^# (TYPE|HELP) ${name.replace(/_bucket$/, '')} `, 'm'), `${name} is exposed`);
  }
  t.equal(await gh.stop(), 0, 'SIGTERM exits 0');
});
