// The load generator when wrk is not installed: autocannon, in a process of its own on the load core.
// Usage: node bench/autocannon-driver.mjs SPEC_JSON  where SPEC_JSON =
//   { url, seconds, connections, timeoutSeconds, script: { path, headers } | { path, headerName, valuesFile, prefix, stopAfter, posFile } }
// Prints the same `WRK_JSON {...}` summary line as the wrk scripts (latencies in µs), so the runner reads either.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import autocannon from 'autocannon';

const spec = JSON.parse(process.argv[2]);
const { script } = spec;
const request = { method: 'GET', path: script.path, headers: { ...(script.headers ?? {}) } };
let position = 0;
let values = null;
if (script.valuesFile) {
  values = readFileSync(script.valuesFile, 'utf8').split('\n').filter(Boolean);
  if (existsSync(script.posFile)) position = (Number(readFileSync(script.posFile, 'utf8')) || 0) % values.length;
  // One value per request, in turn, continuing where the previous run of this script stopped.
  request.setupRequest = (req) => {
    req.headers = { ...req.headers, [script.headerName]: script.prefix + values[position] };
    position = (position + 1) % values.length;
    return req;
  };
}

const result = await autocannon({
  url: spec.url,
  connections: spec.connections,
  timeout: spec.timeoutSeconds,
  requests: [request],
  ...(script.stopAfter ? { amount: script.stopAfter } : { duration: spec.seconds }),
});
if (values) writeFileSync(script.posFile, String(position));
const us = (ms) => Math.round(ms * 1000);
const summary = {
  requests: result.requests.total,
  duration_us: Math.round(result.duration * 1e6),
  bytes: result.throughput.total,
  connect: 0,
  read: result.errors - result.timeouts,
  write: 0,
  status: result.non2xx,
  timeout: result.timeouts,
  p50: us(result.latency.p50),
  p90: us(result.latency.p90),
  p99: us(result.latency.p99),
  max: us(result.latency.max),
  mean: us(result.latency.mean),
};
console.log(`WRK_JSON ${JSON.stringify(summary)}`);
