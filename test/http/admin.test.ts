// The admin listener: liveness, readiness, Prometheus metrics, and nothing else (SPEC section 8).
import t, { type Test } from 'tap';
import { call, configYaml, startGatehouse, startUpstream, type Answer, type Running, type Upstream } from '../support/harness.js';
import { until } from '../support/until.js';
import type { RateLimitStore } from '../../src/rate-limit/store.js';

const ROUTES = `  - name: api
    match: { path: /api/** }
    auth: none
`;

let upstream: Upstream;
let gw: Running;
t.before(async () => {
  upstream = await startUpstream();
  gw = await startGatehouse(configYaml({ admin: true, routes: ROUTES }), { UPSTREAM: upstream.url });
});
t.teardown(async () => {
  await gw.close();
  await upstream.close();
});

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function assertError(t: Test, answer: Answer, status: number, error: string): void {
  t.equal(answer.status, status);
  t.equal(answer.headers['content-type'], 'application/json');
  t.strictSame(Object.keys(answer.json ?? {}), ['error', 'message', 'status', 'request_id']);
  t.match(answer.json, { error, status });
  t.match(answer.json.request_id, UUID);
  t.equal(answer.headers['x-request-id'], answer.json.request_id);
}

t.test('/healthz is 200', async (t) => {
  const answer = await call(`${gw.adminUrl}/healthz`);
  t.equal(answer.status, 200);
  t.equal(answer.headers['content-type'], 'application/json');
  t.strictSame(answer.json, { status: 'ok' });
  t.equal((await call(`${gw.adminUrl}/healthz?verbose=1`)).status, 200, 'a query string does not matter');
  t.equal((await call(`${gw.adminUrl}/healthz`, { method: 'HEAD' })).status, 200, 'HEAD works for probes');
});

t.test('/readyz is 200 with the memory store', async (t) => {
  const answer = await call(`${gw.adminUrl}/readyz`);
  t.equal(answer.status, 200);
  t.strictSame(answer.json, { status: 'ready' });
});

t.test('/readyz is 503 while the rate-limit store cannot answer, /healthz stays 200', async (t) => {
  const down: RateLimitStore = {
    consume: async () => ({ allowed: true, buckets: [] }),
    ready: () => false,
    close: async () => undefined,
  };
  const notReady = await startGatehouse(configYaml({ admin: true }), { UPSTREAM: upstream.url }, { store: down });
  t.teardown(() => notReady.close());
  const ready = await call(`${notReady.adminUrl}/readyz`);
  t.equal(ready.status, 503);
  t.strictSame(ready.json, { status: 'not_ready', reason: 'rate-limit store unavailable' });
  t.equal((await call(`${notReady.adminUrl}/healthz`)).status, 200);
});

t.test('/metrics counts requests by route and status and the upstream latency after traffic', async (t) => {
  t.equal((await call(`${gw.url}/api/a`)).status, 200);
  t.equal((await call(`${gw.url}/api/b?x=1`)).status, 200);
  t.equal((await call(`${gw.url}/elsewhere`)).status, 404);
  const expected = [
    'gatehouse_requests_total{route="api",status="200"} 2',
    'gatehouse_requests_total{route="",status="404"} 1',
    'gatehouse_upstream_duration_seconds_count{upstream="default"} 2',
    'gatehouse_upstream_duration_seconds_bucket{le="+Inf",upstream="default"} 2',
  ];
  let metrics: Answer | undefined;
  await until(
    async () => {
      metrics = await call(`${gw.adminUrl}/metrics`);
      return expected.every((line) => metrics!.text.split('\n').includes(line));
    },
    2000,
    'the metrics show the traffic',
  );
  t.equal(metrics!.status, 200);
  t.match(metrics!.headers['content-type'], /^text\/plain; version=0\.0\.4/);
  for (const line of expected) t.ok(metrics!.text.split('\n').includes(line), line);
  t.match(metrics!.text, /^# TYPE gatehouse_upstream_duration_seconds histogram$/m);
  t.match(metrics!.text, /^gatehouse_upstream_duration_seconds_sum\{upstream="default"\} \d+(\.\d+)?(e-\d+)?$/m);
});

t.test('anything else on the admin listener is a 404 in the SPEC error shape, and is never proxied', async (t) => {
  const before = upstream.requests.length;
  for (const path of ['/', '/api/a', '/healthz/', '/metrics/x', '/HEALTHZ']) {
    assertError(t, await call(gw.adminUrl + path), 404, 'not_found');
  }
  t.equal(upstream.requests.length, before, 'the upstream saw nothing');
});

t.test('writes to the admin listener are a 405 in the SPEC error shape', async (t) => {
  const answer = await call(`${gw.adminUrl}/healthz`, { method: 'POST', body: 'x' });
  assertError(t, answer, 405, 'method_not_allowed');
  t.equal(answer.headers['allow'], 'GET, HEAD');
});
