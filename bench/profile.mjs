#!/usr/bin/env node
// CPU profile of gatehouse under wrk load (`node bench/profile.mjs [SCENARIO]`, default 4): runs
// `node --cpu-prof dist/cli.js serve` on the server core, drives it like bench/run.mjs does, stops it
// with SIGTERM (which writes the profile) and prints the top self-time functions and files.
// SCENARIO: 2 (the bare undici proxy, for comparison), 3 (auth none), 4 (JWT, one token), 5 (JWT, 10k tokens), 6 (API key),
// 7 (JWT, Redis store: starts its own redis-server), 8 (JWT, cache defeated).
// Env: SECONDS (default 10), TOP (default 30). Keeps the .cpuprofile under bench/results/.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BENCH_PATH, makeApiKeys, signTokens, writeConfig } from './gatehouse-config.mjs';
import { freePort, pinSelf, stop } from './processes.mjs';
import { startBareProxy, startGatehouse, startRedis, startUpstream } from './servers.mjs';
import { LOAD_GENERATOR_MISSING, rotatingScript, runWrk, staticScript, loadGenerator } from './wrk.mjs';

const scenario = process.argv[2] ?? '4';
const SECONDS = Number(process.env.SECONDS ?? 10);
const TOP = Number(process.env.TOP ?? 30);
const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');

if (!loadGenerator) {
  console.error(LOAD_GENERATOR_MISSING);
  process.exit(1);
}
pinSelf();
const work = mkdtempSync(join(tmpdir(), 'gatehouse-profile-'));
const upstream = await startUpstream(await freePort());
const redis = scenario === '7' ? await startRedis(await freePort()) : null;
try {
  const { keys, entries } = makeApiKeys(1);
  const tokens = await signTokens(scenario === '8' ? 20_000 : scenario === '5' ? 10_000 : 1);
  const tokensFile = join(work, 'tokens.txt');
  writeFileSync(tokensFile, tokens.join('\n') + '\n');
  const script =
    scenario === '3' || scenario === '2'
      ? staticScript(work, 'p', BENCH_PATH, {})
      : scenario === '6'
        ? staticScript(work, 'p', BENCH_PATH, { 'X-API-Key': keys[0] })
        : tokens.length > 1
          ? rotatingScript(work, 'p', BENCH_PATH, 'Authorization', tokensFile, { prefix: 'Bearer ' })
          : staticScript(work, 'p', BENCH_PATH, { Authorization: `Bearer ${tokens[0]}` });
  const port = await freePort();
  const adminPort = await freePort();
  const config = writeConfig(work, 'p', { port, adminPort, upstreamUrl: upstream.url, auth: scenario === '3' ? 'none' : 'full', keyEntries: entries, ...(redis ? { store: 'redis', redisUrl: redis.url } : {}) });
  const profDir = join(work, 'prof');
  const profArgs = ['--cpu-prof', `--cpu-prof-dir=${profDir}`];
  const gh = scenario === '2' ? await startBareProxy(port, upstream.url, profArgs) : await startGatehouse(port, config, profArgs);
  const r = await runWrk({ url: gh.url, script, seconds: SECONDS });
  await stop(gh.child, 15_000);
  console.log(`scenario ${scenario}: ${r.rps.toFixed(0)} req/s over ${r.seconds.toFixed(1)} s (profiling on)`);
  const file = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error('no .cpuprofile written');
  mkdirSync(join(here, 'results'), { recursive: true });
  const kept = join(here, 'results', `profile-s${scenario}-${new Date().toISOString().replace(/[:.]/g, '-')}.cpuprofile`);
  renameSync(join(profDir, file), kept);
  report(JSON.parse(readFileSync(kept, 'utf8')));
  console.log(`\nprofile: ${relative(root, kept)} (open in Chrome DevTools or speedscope)`);
} finally {
  await stop(upstream.child);
  if (redis) await stop(redis.child);
  rmSync(work, { recursive: true, force: true });
}

/** Self time per function (by name, file and line) and per file, as a share of all samples. */
function report(profile) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    self.set(id, (self.get(id) ?? 0) + dt);
    total += dt;
  });
  const fns = new Map();
  const files = new Map();
  for (const [id, t] of self) {
    const { functionName, url, lineNumber } = byId.get(id).callFrame;
    const file = shortFile(url);
    const key = `${functionName || '(anonymous)'}  ${file}${url ? `:${lineNumber + 1}` : ''}`;
    fns.set(key, (fns.get(key) ?? 0) + t);
    files.set(file || functionName, (files.get(file || functionName) ?? 0) + t);
  }
  const print = (title, map, n) => {
    console.log(`\n${title}`);
    for (const [k, t] of [...map].sort((a, b) => b[1] - a[1]).slice(0, n)) console.log(`${((100 * t) / total).toFixed(1).padStart(5)}%  ${k}`);
  };
  print(`top ${TOP} self time by function`, fns, TOP);
  print('self time by file', files, 20);
}

function shortFile(url) {
  if (!url) return '';
  const path = url.replace(/^file:\/\//, '');
  const nm = path.lastIndexOf('node_modules/');
  if (nm !== -1) return path.slice(nm + 'node_modules/'.length);
  if (path.startsWith(root)) return relative(root, path);
  return path;
}
