#!/usr/bin/env node
// gatehouse memory benchmark (`npm run bench:memory`): startup time and RSS with 100,000 API keys and a
// memory rate limit keyed per key, after driving every key through it once; plus an optional soak.
//
// Same CPU layout as bench/run.mjs (core 0: wrk, upstream, runner; core 1: gatehouse).
// Runs: 1 key (baseline), the keys as a JSON keys file (gatehouse's fast path), and as a block-YAML keys file.
// Env: KEYS (default 100000), QUICK=1 (drives a quarter of the keys, and only through the JSON run), DRIVE,
// SOAK_SECONDS=300: afterwards, run scenario 5 of bench/run.mjs (JWT, 10k tokens rotating) that long
// and sample gatehouse's RSS every 10 s, to show growth or none.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { BENCH_PATH, makeApiKeys, signTokens, writeConfig } from './gatehouse-config.mjs';
import { cpuSeconds, freePort, layout, pinSelf, rssBytes, stop } from './processes.mjs';
import { startGatehouse, startGatehouseTimed, startUpstream } from './servers.mjs';
import { LOAD_GENERATOR_MISSING, rotatingScript, runWrk, loadGenerator } from './wrk.mjs';

const QUICK = process.env.QUICK === '1';
const KEYS = Number(process.env.KEYS ?? 100_000);
const DRIVE = Math.min(KEYS, Number(process.env.DRIVE ?? (QUICK ? Math.ceil(KEYS / 4) : KEYS)));
const SOAK_SECONDS = Number(process.env.SOAK_SECONDS ?? 0);
const SAMPLE_EVERY_S = 10;
/** Seconds between the end of the drive and the settled RSS reading. */
const SETTLE_S = Number(process.env.SETTLE_SECONDS ?? 2);
const MiB = 2 ** 20;

if (!loadGenerator) {
  console.error(LOAD_GENERATOR_MISSING);
  process.exit(1);
}
pinSelf();
const here = dirname(fileURLToPath(import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'gatehouse-memory-'));
const cleanup = [];
const lines = [];
const say = (line = '') => {
  console.log(line);
  lines.push(line);
};

/**
 * The keys file in one of the two shapes an operator may write: block YAML (what `gatehouse keys generate`
 * prints) or JSON (`{"keys": [...]}`, valid YAML too), which gatehouse loads on a fast path.
 */
function writeKeysFile(entries, format) {
  const file = join(work, `keys.${format}`);
  if (format === 'json') {
    writeFileSync(file, JSON.stringify({ keys: entries }));
    return file;
  }
  const out = ['keys:'];
  for (const e of entries) {
    out.push(`  - id: ${e.id}`, `    hash: ${e.hash}`, `    tenant: ${e.tenant}`, `    subject: ${e.subject}`, `    role: ${e.role}`, `    scopes: [${e.scopes.join(', ')}]`);
  }
  writeFileSync(file, out.join('\n') + '\n');
  return file;
}

/** Starts gatehouse with `entries` (from a keys file) and a per-key limit; returns startup figures. */
async function startWithKeys(upstream, name, entries, format) {
  const port = await freePort();
  const adminPort = await freePort();
  const keysFile = writeKeysFile(entries, format);
  const config = writeConfig(work, name, { port, adminPort, upstreamUrl: upstream.url, auth: 'full', keysFile, limitBy: 'key' });
  const gh = await startGatehouseTimed(port, config);
  gh.adminPort = adminPort;
  cleanup.push(gh.child);
  const peakAtListen = peakRss(gh.pid);
  await sleep(1000); // let startup garbage be collected before reading the idle RSS
  return { gh, startupMs: gh.startupMs, idleRss: rssBytes(gh.pid), idleHeap: await heapUsed(adminPort), peakRss: peakAtListen };
}

/** V8 heap in use (live objects and not yet collected garbage), from gatehouse's own /metrics. */
async function heapUsed(adminPort) {
  const res = await request(`http://127.0.0.1:${adminPort}/metrics`);
  const m = /^gatehouse_nodejs_heap_size_used_bytes (\S+)$/m.exec(await res.body.text());
  return m ? Number(m[1]) : NaN;
}

/** VmHWM: the highest RSS the process ever had (the startup peak, for a config-heavy start). */
function peakRss(pid) {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

/** One pass over DRIVE distinct keys, each request charging its own bucket (by: key). */
async function drive(gh, keysValues, name) {
  const script = rotatingScript(work, name, BENCH_PATH, 'X-API-Key', keysValues, { stopAfter: DRIVE });
  const cpu0 = cpuSeconds(gh.pid);
  const r = await runWrk({ url: gh.url, script, seconds: 600, connections: 64 });
  const cpu = cpuSeconds(gh.pid) - cpu0;
  const loadedRss = rssBytes(gh.pid);
  for (let waited = 0; waited < SETTLE_S; waited += 2) {
    await sleep(2000);
    if (process.env.TRACE_SETTLE) console.log(`  settle t=${waited + 2}s RSS ${(rssBytes(gh.pid) / MiB).toFixed(1)} MiB`);
  }
  const heap = await heapUsed(gh.adminPort);
  return {
    heapUsed: heap,
    requests: r.requests,
    rps: r.rps,
    p99Ms: r.p99 / 1000,
    non2xx: r.status,
    socketErrors: r.socketErrors,
    cpuUsPerReq: (cpu * 1e6) / r.requests,
    rssAfterLoad: loadedRss,
    rssSettled: rssBytes(gh.pid),
    peakRss: peakRss(gh.pid),
  };
}

async function main() {
  say(`gatehouse memory bench: ${KEYS.toLocaleString('en')} API keys, driving ${DRIVE.toLocaleString('en')} of them; ${layout.note}`);
  const upstream = await startUpstream(await freePort());
  cleanup.push(upstream.child);
  const result = { date: new Date().toISOString(), keys: KEYS, driven: DRIVE, layout, runs: {} };

  const t0 = performance.now();
  const { keys, entries } = makeApiKeys(KEYS);
  const generatedMs = performance.now() - t0;
  const keysValues = join(work, 'keys.txt');
  writeFileSync(keysValues, keys.slice(0, DRIVE).join('\n') + '\n');

  // Baseline: one key, to tell the keys' share of startup and memory apart. Then both file formats;
  // QUICK drives only the JSON one (the running state is the same, only loading differs).
  const plan = [
    { name: '1 key', entries: makeApiKeys(1).entries, format: 'json', drive: false },
    { name: `${KEYS / 1000}k keys, JSON file`, entries, format: 'json', drive: true },
    { name: `${KEYS / 1000}k keys, YAML file`, entries, format: 'yaml', drive: !QUICK },
  ];
  for (const [i, p] of plan.entries()) {
    const run = await startWithKeys(upstream, `run${i}`, p.entries, p.format);
    const driven = p.drive ? await drive(run.gh, keysValues, `drive${i}`) : null;
    await stop(run.gh.child);
    result.runs[p.name] = {
      format: p.format,
      keys: p.entries.length,
      startupMs: run.startupMs,
      peakRssAtListenMiB: run.peakRss / MiB,
      idleRssMiB: run.idleRss / MiB,
      idleHeapMiB: run.idleHeap / MiB,
      drive: driven && {
        ...driven,
        rssAfterLoadMiB: driven.rssAfterLoad / MiB,
        rssSettledMiB: driven.rssSettled / MiB,
        heapUsedMiB: driven.heapUsed / MiB,
        peakRssMiB: driven.peakRss / MiB,
      },
    };
  }

  const f = (n, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : '-');
  const cols = Object.keys(result.runs);
  const row = (label, get) => say(label.padEnd(34) + cols.map((c) => get(result.runs[c]).padStart(22)).join(''));
  say('');
  row('', (r) => Object.keys(result.runs).find((k) => result.runs[k] === r));
  row('startup (spawn -> "listening")', (r) => `${f(r.startupMs, 0)} ms`);
  row('peak RSS during startup (VmHWM)', (r) => `${f(r.peakRssAtListenMiB)} MiB`);
  row('RSS idle, 1 s after listening', (r) => `${f(r.idleRssMiB)} MiB`);
  row(`RSS after ${DRIVE.toLocaleString('en')} distinct keys`, (r) => (r.drive ? `${f(r.drive.rssAfterLoadMiB)} MiB` : '-'));
  row('RSS 2 s later', (r) => (r.drive ? `${f(r.drive.rssSettledMiB)} MiB` : '-'));
  row('V8 heap used, idle / after drive', (r) => `${f(r.idleHeapMiB, 0)} / ${r.drive ? f(r.drive.heapUsedMiB, 0) : '-'} MiB`);
  row('drive req/s (new key each)', (r) => (r.drive ? f(r.drive.rps, 0) : '-'));
  row('drive CPU µs/req', (r) => (r.drive ? f(r.drive.cpuUsPerReq) : '-'));
  row('drive non-2xx / socket errors', (r) => (r.drive ? `${r.drive.non2xx} / ${r.drive.socketErrors}` : '-'));
  say(`(generating ${KEYS.toLocaleString('en')} keys and their hashes in the runner took ${f(generatedMs, 0)} ms; not part of startup.`);
  say(' gatehouse stdout is piped to the runner here, to time startup by its "gatehouse listening" line; rate limit: one bucket per key.)');

  if (SOAK_SECONDS > 0) result.soak = await soak(upstream);

  mkdirSync(join(here, 'results'), { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  writeFileSync(join(here, 'results', `memory-${stamp}.json`), JSON.stringify(result, null, 2));
  writeFileSync(join(here, 'results', `memory-${stamp}.txt`), lines.join('\n') + '\n');
  console.log(`\nwritten: bench/results/memory-${stamp}.{json,txt}`);
}

/** Scenario 5 (JWT, 10k tokens rotating, memory store) for SOAK_SECONDS, RSS sampled every 10 s. */
async function soak(upstream) {
  say('');
  say(`soak: scenario 5 (JWT, 10,000 tokens rotating) for ${SOAK_SECONDS} s, RSS every ${SAMPLE_EVERY_S} s`);
  const tokens = await signTokens(10_000);
  const tokensFile = join(work, 'tokens.txt');
  writeFileSync(tokensFile, tokens.join('\n') + '\n');
  const port = await freePort();
  const config = writeConfig(work, 'soak', { port, adminPort: await freePort(), upstreamUrl: upstream.url, auth: 'full', keyEntries: makeApiKeys(1).entries });
  const gh = await startGatehouse(port, config);
  cleanup.push(gh.child);
  const script = rotatingScript(work, 'soak', BENCH_PATH, 'Authorization', tokensFile, { prefix: 'Bearer ' });
  const started = performance.now();
  const load = runWrk({ url: gh.url, script, seconds: SOAK_SECONDS, connections: 50 });
  const samples = [];
  let finished = false;
  const done = () => (finished = true);
  load.then(done, done);
  while (!finished) {
    const t = (performance.now() - started) / 1000;
    samples.push({ t: Math.round(t), rssMiB: rssBytes(gh.pid) / MiB, cpuSeconds: cpuSeconds(gh.pid) });
    say(`  t=${String(Math.round(t)).padStart(4)} s  RSS ${(rssBytes(gh.pid) / MiB).toFixed(1)} MiB`);
    const next = started + samples.length * SAMPLE_EVERY_S * 1000;
    while (!finished && performance.now() < next) await sleep(Math.min(250, next - performance.now()));
  }
  const r = await load;
  samples.push({ t: Math.round((performance.now() - started) / 1000), rssMiB: rssBytes(gh.pid) / MiB, cpuSeconds: cpuSeconds(gh.pid) });
  await stop(gh.child);
  // Growth is judged after the first minute (or the first third), once caches and buckets are full: as the
  // least-squares slope of all samples since (one sample caught mid-GC cannot swing it the way it swings
  // last-minus-first), and as the median RSS of the first and the second half of that stretch.
  const fromT = Math.min(60, SOAK_SECONDS / 3);
  const settled = samples.filter((s) => s.t >= fromT);
  const last = samples[samples.length - 1];
  const perMinute = slope(settled.map((s) => [s.t, s.rssMiB])) * 60;
  const half = Math.floor(settled.length / 2);
  const [early, late] = [median(settled.slice(0, half).map((s) => s.rssMiB)), median(settled.slice(half).map((s) => s.rssMiB))];
  say(
    `soak: ${r.requests} requests at ${r.rps.toFixed(0)} req/s, ${r.status} non-2xx; RSS ${samples[0].rssMiB.toFixed(1)} -> ${last.rssMiB.toFixed(1)} MiB; ` +
      `from t=${fromT} s: slope ${perMinute >= 0 ? '+' : ''}${perMinute.toFixed(2)} MiB/min, median ${early.toFixed(1)} MiB (first half) vs ${late.toFixed(1)} MiB (second half)`,
  );
  return { seconds: SOAK_SECONDS, requests: r.requests, rps: r.rps, non2xx: r.status, samples, growthMiBPerMinute: perMinute, medianEarlyMiB: early, medianLateMiB: late };
}

/** Least-squares slope of [x, y] points (y per unit of x); 0 for fewer than two. */
function slope(points) {
  if (points.length < 2) return 0;
  const n = points.length;
  const mx = points.reduce((a, [x]) => a + x, 0) / n;
  const my = points.reduce((a, [, y]) => a + y, 0) / n;
  const sxx = points.reduce((a, [x]) => a + (x - mx) ** 2, 0);
  return sxx === 0 ? 0 : points.reduce((a, [x, y]) => a + (x - mx) * (y - my), 0) / sxx;
}

function median(values) {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
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
