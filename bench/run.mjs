#!/usr/bin/env node
// gatehouse throughput benchmark (`npm run bench`): the upstream alone, four bare Node proxies, and gatehouse
// in five configurations, each its own process, measured with wrk and compared with the bare undici proxy.
//
// CPU layout (2+ cores and taskset): core 0 runs wrk, the shared upstream, redis and this runner;
// core 1 runs only the server under test. In scenario 1 the server under test is an upstream of its
// own on core 1. Without taskset or with one core nothing is pinned (the table says so).
//
// Env: QUICK=1 (1 round, 3 s, 1 s warm-up), ROUNDS, SECONDS, WARMUP, CONNECTIONS (default 50), ONLY=1,4 (subset).
// The rounds alternate the scenario order (forward, reversed, ...); the table shows medians.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, cpus, totalmem } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { BENCH_PATH, makeApiKeys, signTokens, writeConfig } from './gatehouse-config.mjs';
import { cpuSeconds, foreignShare, foreignSnapshot, freePort, layout, loadAverage, pinSelf, rssBytes, stop } from './processes.mjs';
import { redisAvailable, startBareProxy, startGatehouse, startHttpProxy3, startRedis, startUpstream } from './servers.mjs';
import { LOAD_GENERATOR_MISSING, LOAD_GENERATOR_NOTE, loadGenerator, resetRotation, rotatingScript, runWrk, staticScript } from './wrk.mjs';
import { formatTable, median } from './report.mjs';

const QUICK = process.env.QUICK === '1';
const ROUNDS = Number(process.env.ROUNDS ?? (QUICK ? 1 : 3));
const SECONDS = Number(process.env.SECONDS ?? (QUICK ? 3 : 10));
const WARMUP = Number(process.env.WARMUP ?? (QUICK ? 1 : 3));
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 50);
/** ONLY=4,6: run just these scenarios (2, the baseline of every ratio, always runs). */
const ONLY = process.env.ONLY ? new Set(process.env.ONLY.split(',').map((s) => s.trim())) : null;
/** Scenario 8 cycles more tokens than the verified-token cache holds (10,000 by default in src/auth/jwt.ts). */
const ROTATING_TOKENS = 10_000;
const CACHE_DEFEATING_TOKENS = 20_000;

if (!loadGenerator) {
  console.error(LOAD_GENERATOR_MISSING);
  process.exit(1);
}
pinSelf();

const here = dirname(fileURLToPath(import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'gatehouse-bench-'));
const cleanup = [];
/** The long-lived helpers (upstream, redis), whose CPU is ours when telling other load apart. */
const sharedPids = [];
let interrupted = false;
process.on('SIGINT', () => {
  interrupted = true;
});

async function main() {
  const t0 = Date.now();
  const loadBefore = loadAverage();
  console.log(`gatehouse bench: ${ROUNDS} round(s) x ${SECONDS}s (+${WARMUP}s warm-up), ${loadGenerator === 'wrk' ? 'wrk -t1' : 'autocannon'} -c${CONNECTIONS}; ${layout.note}`);

  const upstream = await startUpstream(await freePort());
  cleanup.push(upstream.child);
  const redis = (await redisAvailable()) ? await startRedis(await freePort()) : null;
  if (redis) cleanup.push(redis.child);
  sharedPids.push(upstream.pid, ...(redis ? [redis.pid] : []));

  const [token] = await signTokens(1);
  const rotating = await signTokens(Math.max(ROTATING_TOKENS, CACHE_DEFEATING_TOKENS));
  const tokensFile = join(work, 'tokens-10k.txt');
  const manyTokensFile = join(work, 'tokens-20k.txt');
  writeFileSync(tokensFile, rotating.slice(0, ROTATING_TOKENS).join('\n') + '\n');
  writeFileSync(manyTokensFile, rotating.slice(0, CACHE_DEFEATING_TOKENS).join('\n') + '\n');
  const { keys: [apiKey], entries: keyEntries } = makeApiKeys(1);

  const bearer = { Authorization: `Bearer ${token}` };
  const gatehouse = (name, options) => async (port, adminPort) =>
    startGatehouse(port, writeConfig(work, name, { port, adminPort, upstreamUrl: upstream.url, keyEntries, ...options }));

  /** id, label, how to start the server under test, the wrk script, the header the pre-check sends. */
  const scenarios = [
    { id: '1', label: 'upstream direct', start: (port) => startUpstream(port, layout.server), script: staticScript(work, 's1', BENCH_PATH, {}), check: {} },
    { id: '2', label: 'bare undici proxy (dispatch)', start: (port) => startBareProxy(port, upstream.url), script: staticScript(work, 's2', BENCH_PATH, {}), check: {} },
    { id: '2s', label: 'bare undici proxy (Pool.stream)', start: (port) => startBareProxy(port, upstream.url, [], 'stream'), script: staticScript(work, 's2s', BENCH_PATH, {}), check: {} },
    { id: '2h', label: 'bare undici proxy + the headers of 4', start: (port) => startBareProxy(port, upstream.url, [], 'headers'), script: staticScript(work, 's2h', BENCH_PATH, {}), check: {}, injects: true },
    { id: '2b', label: 'bare http-proxy-3 proxy', start: (port) => startHttpProxy3(port, upstream.url), script: staticScript(work, 's2b', BENCH_PATH, {}), check: {} },
    { id: '3', label: 'gatehouse auth: none', start: gatehouse('s3', { auth: 'none' }), script: staticScript(work, 's3', BENCH_PATH, {}), check: {}, gatehouse: true },
    { id: '4', label: 'gatehouse JWT, 1 token', start: gatehouse('s4', { auth: 'full' }), script: staticScript(work, 's4', BENCH_PATH, bearer), check: bearer, gatehouse: true, auth: true },
    {
      id: '5',
      label: `gatehouse JWT, ${ROTATING_TOKENS / 1000}k tokens`,
      start: gatehouse('s5', { auth: 'full' }),
      script: rotatingScript(work, 's5', BENCH_PATH, 'Authorization', tokensFile, { prefix: 'Bearer ' }),
      rotating: ROTATING_TOKENS,
      check: bearer,
      gatehouse: true,
      auth: true,
    },
    { id: '6', label: 'gatehouse API key', start: gatehouse('s6', { auth: 'full' }), script: staticScript(work, 's6', BENCH_PATH, { 'X-API-Key': apiKey }), check: { 'X-API-Key': apiKey }, gatehouse: true, auth: true },
    redis && {
      id: '7',
      label: 'gatehouse JWT, redis store',
      start: gatehouse('s7', { auth: 'full', store: 'redis', redisUrl: redis.url }),
      script: staticScript(work, 's7', BENCH_PATH, bearer),
      check: bearer,
      gatehouse: true,
      auth: true,
    },
    {
      id: '8',
      label: `gatehouse JWT, ${CACHE_DEFEATING_TOKENS / 1000}k tokens cycled (cache defeated)`,
      start: gatehouse('s8', { auth: 'full' }),
      script: rotatingScript(work, 's8', BENCH_PATH, 'Authorization', manyTokensFile, { prefix: 'Bearer ' }),
      rotating: CACHE_DEFEATING_TOKENS,
      check: bearer,
      gatehouse: true,
      auth: true,
    },
  ]
    .filter(Boolean)
    .filter((s) => !ONLY || ONLY.has(s.id) || s.id === '2');
  if (!redis) console.log('redis-server not found: scenario 7 skipped');

  const runs = Object.fromEntries(scenarios.map((s) => [s.id, []]));
  for (let round = 0; round < ROUNDS && !interrupted; round++) {
    const order = round % 2 === 0 ? scenarios : [...scenarios].reverse();
    for (const s of order) {
      if (interrupted) break;
      const r = await measure(s);
      runs[s.id].push(r);
      console.log(
        `  round ${round + 1} ${s.id.padEnd(3)} ${s.label.padEnd(48)} ${r.rps.toFixed(0).padStart(7)} req/s  p99 ${(r.p99 / 1000).toFixed(2)} ms  ${r.cpuUsPerReq.toFixed(1)} µs/req` +
          `  other load ${(r.otherLoad * 100).toFixed(0)}%` +
          (r.non2xx || r.socketErrors ? `  !! ${r.non2xx} non-2xx, ${r.socketErrors} socket errors` : ''),
      );
    }
  }

  const summary = scenarios.map((s) => summarize(s, runs[s.id]));
  const base = summary.find((s) => s.id === '2');
  for (const s of summary) {
    s.ratioToBare = s.rps / base.rps;
    s.p99RatioToBare = s.p99Ms / base.p99Ms;
  }
  const notes = [
    `layout: ${layout.note}`,
    LOAD_GENERATOR_NOTE,
    `${loadGenerator === 'wrk' ? 'wrk -t1' : 'autocannon'} -c${CONNECTIONS}, ${ROUNDS} round(s) of ${SECONDS}s after ${WARMUP}s warm-up, order alternating; medians shown`,
    'other load = busy CPU on the machine not spent by the benchmark processes (other jobs, steal), in cores; the highest of the rounds',
    'CPU µs/req = (utime+stime of the server process during the measured run) / requests; CPU % = share of one core',
    'gatehouse logs every request (pino, level info) to /dev/null; identity injection and rate-limit headers on in 4-8',
    `8: cycles ${CACHE_DEFEATING_TOKENS / 1000}k tokens through the verified-token cache at its default size (auth.jwt.cacheSize 10,000), so every request misses and pays full HS256 verification plus the cache bookkeeping`,
  ];
  const text = formatTable(summary, { notes, loadBefore, loadAfter: loadAverage() });
  console.log('\n' + text);

  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const outDir = join(here, 'results');
  mkdirSync(outDir, { recursive: true });
  const result = {
    date: new Date().toISOString(),
    quick: QUICK,
    settings: { rounds: ROUNDS, seconds: SECONDS, warmup: WARMUP, connections: CONNECTIONS, threads: 1 },
    machine: { node: process.version, cpu: cpus()[0]?.model, cores: layout.cores, memGiB: +(totalmem() / 2 ** 30).toFixed(1) },
    layout,
    loadAverage: { before: loadBefore, after: loadAverage() },
    summary,
    runs,
    elapsedSeconds: (Date.now() - t0) / 1000,
  };
  writeFileSync(join(outDir, `${stamp}.json`), JSON.stringify(result, null, 2));
  writeFileSync(join(outDir, `${stamp}.txt`), text + '\n');
  console.log(`\nwritten: bench/results/${stamp}.{json,txt}  (${result.elapsedSeconds.toFixed(0)} s)`);
}

/** One scenario once: fresh process, pre-check, warm-up, measured run with CPU time and RSS of the server. */
async function measure(s) {
  const port = await freePort();
  const adminPort = s.gatehouse ? await freePort() : undefined;
  const server = await s.start(port, adminPort);
  try {
    if (s.gatehouse) await waitReady(adminPort);
    await precheck(s, server);
    const url = `${server.url}`;
    if (s.rotating) {
      // A rotating warm-up must get through the whole token list (s.rotating tokens) once, the cache's steady state,
      // however long that takes: the first pass verifies every token, and a fixed few seconds of it on a slow
      // machine left thousands of first-time misses in the measured run. The measured run goes on from there.
      resetRotation(s.script);
      for (let sent = 0; sent < s.rotating; ) sent += (await runWrk({ url, script: s.script, seconds: WARMUP, connections: CONNECTIONS })).requests;
    } else {
      await runWrk({ url, script: s.script, seconds: WARMUP, connections: CONNECTIONS });
    }
    const cacheBefore = s.auth ? await tokenCacheCounts(adminPort) : null;
    const pids = [server.pid, ...sharedPids];
    const other0 = foreignSnapshot(pids);
    const cpu0 = cpuSeconds(server.pid);
    const r = await runWrk({ url, script: s.script, seconds: SECONDS, connections: CONNECTIONS });
    const cpu1 = cpuSeconds(server.pid);
    const otherLoad = foreignShare(other0, foreignSnapshot(pids));
    const rss = rssBytes(server.pid);
    const cacheAfter = s.auth ? await tokenCacheCounts(adminPort) : null;
    const cpu = cpu1 - cpu0;
    const lookups = cacheAfter && cacheAfter.hit + cacheAfter.miss - cacheBefore.hit - cacheBefore.miss;
    return {
      rps: r.rps,
      requests: r.requests,
      p50: r.p50,
      p90: r.p90,
      p99: r.p99,
      max: r.max,
      non2xx: r.status,
      socketErrors: r.socketErrors,
      cpuUsPerReq: (cpu * 1e6) / r.requests,
      cpuShare: cpu / r.seconds,
      rssBytes: rss,
      tokenCacheHitRatio: lookups ? (cacheAfter.hit - cacheBefore.hit) / lookups : null,
      otherLoad,
    };
  } finally {
    await stop(server.child);
  }
}

/** Refuses to measure a misconfigured scenario: the proxy must answer 200 and (with auth) inject identity. */
async function precheck(s, server) {
  const res = await request(`${server.url}${BENCH_PATH}/__echo`, { headers: s.check });
  const body = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`scenario ${s.id}: pre-check got ${res.statusCode}: ${body}`);
  if (s.auth || s.injects) {
    const seen = JSON.parse(body);
    if (!seen['x-auth-subject'] || seen.authorization || seen['x-api-key']) throw new Error(`scenario ${s.id}: identity not injected or credential forwarded: ${body}`);
  }
}

/** /readyz turns 200 once the config is loaded and, with the Redis store, Redis answers. */
async function waitReady(adminPort) {
  for (let i = 0; i < 200; i++) {
    // The admin listener opens just after the proxy's, so a refused connection is retried too.
    const status = await request(`http://127.0.0.1:${adminPort}/readyz`).then(
      async (res) => (await res.body.dump(), res.statusCode),
      () => 0,
    );
    if (status === 200) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('gatehouse never became ready (/readyz)');
}

async function tokenCacheCounts(adminPort) {
  const res = await request(`http://127.0.0.1:${adminPort}/metrics`);
  const text = await res.body.text();
  const count = (result) => Number(new RegExp(`gatehouse_verified_token_cache_total\\{result="${result}"\\} (\\d+)`).exec(text)?.[1] ?? 0);
  return { hit: count('hit'), miss: count('miss') };
}

function summarize(s, rs) {
  const m = (f) => median(rs.map(f));
  return {
    id: s.id,
    label: s.label,
    rounds: rs.length,
    rps: m((r) => r.rps),
    p50Ms: m((r) => r.p50) / 1000,
    p99Ms: m((r) => r.p99) / 1000,
    cpuUsPerReq: m((r) => r.cpuUsPerReq),
    cpuShare: m((r) => r.cpuShare),
    rssMiB: m((r) => r.rssBytes) / 2 ** 20,
    non2xx: rs.reduce((a, r) => a + r.non2xx, 0),
    socketErrors: rs.reduce((a, r) => a + r.socketErrors, 0),
    tokenCacheHitRatio: rs[0]?.tokenCacheHitRatio == null ? null : m((r) => r.tokenCacheHitRatio),
    otherLoadMax: Math.max(...rs.map((r) => r.otherLoad)),
  };
}

try {
  await main();
} catch (err) {
  console.error(err);
  process.exitCode = 1;
} finally {
  for (const child of cleanup.reverse()) await stop(child);
  rmSync(work, { recursive: true, force: true });
}
