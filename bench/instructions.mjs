#!/usr/bin/env node
// Instructions per request under callgrind (`node bench/instructions.mjs [SCENARIO] [REQUESTS]`): the
// reproducible way to compare two builds on a noisy machine, where req/s moves 10-15% between runs.
// Runs the server under test in valgrind (apt-get install valgrind) on the server core, warms it up
// (WARM requests, default 3000), zeroes the counters, sends REQUESTS (default 2000) one at a time
// (C=1 by default; C=N for N concurrent), dumps, and prints instructions per request for the main thread
// (JavaScript, node, undici, syscall entry) and for all threads (adds V8's background GC and compiler,
// which valgrind's slowness makes start at other moments than a real run: compare main-thread figures).
// SCENARIO: 2 (bare undici proxy), 2h (the same sending the headers of 4), 3 (auth none), 4 (JWT, one token),
// 6 (API key). Takes ~1.5 min.
// GATEHOUSE_CLI=/path/to/dist/cli.js measures another build.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { BENCH_PATH, makeApiKeys, signTokens, writeConfig } from './gatehouse-config.mjs';
import { freePort, layout, stop, waitForPort } from './processes.mjs';
import { GATEHOUSE_CLI, startUpstream } from './servers.mjs';

const scenario = process.argv[2] ?? '4';
const REQUESTS = Number(process.argv[3] ?? 2000);
const WARM = Number(process.env.WARM ?? 3000);
const C = Number(process.env.C ?? 1);
const here = dirname(fileURLToPath(import.meta.url));

if (!['2', '2h', '3', '4', '6'].includes(scenario)) {
  console.error('scenario must be 2, 2h, 3, 4 or 6');
  process.exit(2);
}
for (const tool of ['valgrind', 'callgrind_control', 'callgrind_annotate']) {
  try {
    execFileSync('which', [tool], { stdio: 'ignore' });
  } catch {
    console.error(`${tool} not found: apt-get install valgrind`);
    process.exit(1);
  }
}

const work = mkdtempSync(join(tmpdir(), 'gatehouse-instructions-'));
const upstream = await startUpstream(await freePort());
let child = null;
try {
  const { keys, entries } = makeApiKeys(1);
  const [token] = await signTokens(1);
  const headers = scenario === '6' ? { 'x-api-key': keys[0] } : scenario === '4' ? { authorization: `Bearer ${token}` } : {};
  const port = await freePort();
  const adminPort = await freePort();
  const config = writeConfig(work, 'c', { port, adminPort, upstreamUrl: upstream.url, auth: scenario === '2' || scenario === '2h' || scenario === '3' ? 'none' : 'full', keyEntries: entries });
  const out = join(work, 'callgrind.out');
  const server = scenario.startsWith('2') ? [join(here, 'bare-proxy.mjs'), String(port), upstream.url, scenario === '2h' ? 'headers' : 'dispatch'] : [GATEHOUSE_CLI, 'serve', '--config', config];
  const valgrind = ['valgrind', '--tool=callgrind', `--callgrind-out-file=${out}`, '--smc-check=all-non-file', process.execPath, ...server];
  child = layout.pinned ? spawn('taskset', ['-c', layout.server, ...valgrind], { stdio: 'ignore' }) : spawn(valgrind[0], valgrind.slice(1), { stdio: 'ignore' });
  await waitForPort(port, child, 120_000);
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections: C });
  const drive = async (count) => {
    let left = count;
    const worker = async () => {
      while (left-- > 0) {
        const r = await pool.request({ path: BENCH_PATH, method: 'GET', headers });
        await r.body.text();
        if (r.statusCode !== 200) throw new Error(`status ${r.statusCode}`);
      }
    };
    await Promise.all(Array.from({ length: C }, worker));
  };
  await drive(WARM);
  execFileSync('callgrind_control', ['-z', String(child.pid)], { stdio: 'ignore' });
  await drive(REQUESTS);
  execFileSync('callgrind_control', ['-d', String(child.pid)], { stdio: 'ignore' });
  await pool.close();
  await stop(child, 120_000);
  const dump = join(work, readdirSync(work).filter((f) => f.startsWith('callgrind.out.')).sort().at(-1));
  const total = Number(/summary: (\d+)/.exec(readFileSync(dump, 'utf8'))[1]);
  const annotated = execFileSync('callgrind_annotate', ['--threshold=100', dump], { encoding: 'utf8', maxBuffer: 1 << 28 });
  const main = Number(/([\d,]+) \([ \d.]+%\)\s+\S*:__libc_start_main/.exec(annotated)[1].replace(/,/g, ''));
  const k = (n) => `${(n / REQUESTS / 1000).toFixed(1)}k`;
  console.log(`scenario ${scenario}, ${REQUESTS} requests at concurrency ${C} after ${WARM} warm-up: ${k(main)} instructions per request on the main thread, ${k(total)} in all threads`);
} finally {
  if (child) await stop(child, 120_000);
  await stop(upstream.child);
  rmSync(work, { recursive: true, force: true });
}
