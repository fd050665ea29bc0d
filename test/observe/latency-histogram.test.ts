import t from 'tap';
import { Histogram, Registry } from 'prom-client';
import { LatencyHistogram } from '../../src/observe/latency-histogram.js';
import { Metrics } from '../../src/observe/metrics.js';

const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

t.test('the exposition is exactly what a prom-client Histogram gives for the same observations', async (t) => {
  const ours = new Registry();
  const theirs = new Registry();
  const fast = new LatencyHistogram('x_seconds', 'Latency', 'upstream', BUCKETS, ours);
  const reference = new Histogram({ name: 'x_seconds', help: 'Latency', labelNames: ['upstream'], buckets: BUCKETS, registers: [theirs] });
  const values = [0, 0.001, 0.0010001, 0.003, 0.05, 0.049999, 0.7, 2.5, 9.99, 10, 10.5, 1234];
  for (let i = 0; i < 500; i++) values.push(Math.random() * 3);
  // Series are listed in the order they first appear: prom-client's at their first observation (i = 0 is b).
  const b = fast.recorder('legacy "quoted" \\ name');
  const a = fast.recorder('api');
  for (const [i, v] of values.entries()) {
    (i % 3 ? a : b).observe(v);
    reference.observe({ upstream: i % 3 ? 'api' : 'legacy "quoted" \\ name' }, v);
  }
  t.equal(await ours.metrics(), await theirs.metrics());
  // The JSON form too, but for prom-client's always-null exemplar field.
  const samples = async (r: Registry) =>
    (await r.getMetricsAsJSON()).flatMap((m) => m.values.map((v) => ({ metricName: (v as { metricName?: string }).metricName, labels: v.labels, value: v.value })));
  t.same(await samples(ours), await samples(theirs));
});

t.test('a recorder per label value, shared by every call; zero series from the start; reset', async (t) => {
  const registry = new Registry();
  const h = new LatencyHistogram('y_seconds', 'Latency', 'upstream', [0.1, 1], registry);
  h.recorder('a').observe(0.05);
  h.recorder('a').observe(5);
  h.recorder('b');
  h.recorder('a').observe(Number.NaN);
  const text = await registry.metrics();
  t.match(text, /^y_seconds_bucket\{le="0.1",upstream="a"\} 1$/m);
  t.match(text, /^y_seconds_bucket\{le="1",upstream="a"\} 1$/m);
  t.match(text, /^y_seconds_bucket\{le="\+Inf",upstream="a"\} 2$/m);
  t.match(text, /^y_seconds_sum\{upstream="a"\} 5.05$/m);
  t.match(text, /^y_seconds_count\{upstream="a"\} 2$/m, 'a value that is not a number is not counted');
  t.match(text, /^y_seconds_count\{upstream="b"\} 0$/m, 'an upstream with no requests yet shows zeros');
  registry.resetMetrics();
  t.match(await registry.metrics(), /^y_seconds_count\{upstream="a"\} 0$/m);
});

t.test('gatehouse registers the upstream latency under its SPEC name', async (t) => {
  const metrics = new Metrics();
  metrics.upstreamLatency.recorder('default').observe(0.002);
  t.match(await metrics.registry.metrics(), /^gatehouse_upstream_duration_seconds_bucket\{le="0.0025",upstream="default"\} 1$/m);
});
