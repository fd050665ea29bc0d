// Drives load with wrk: Lua scripts written per scenario, results read back as JSON from wrk's done() hook.
// Without wrk, autocannon (a devDependency) runs the same scripts from the spec kept next to each .lua file.
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { layout } from './processes.mjs';

const here = dirname(fileURLToPath(import.meta.url));

function autocannonInstalled() {
  try {
    import.meta.resolve('autocannon');
    return true;
  } catch {
    return false;
  }
}

/** 'wrk' when installed, else 'autocannon' when installed (npm install), else null. BENCH_LOAD=autocannon forces it. */
export const loadGenerator =
  process.env.BENCH_LOAD !== 'autocannon' && spawnSync('wrk', ['-v']).error === undefined ? 'wrk' : autocannonInstalled() ? 'autocannon' : null;

export const LOAD_GENERATOR_MISSING = `The benchmark needs wrk (preferred) or autocannon, and found neither.
Install wrk (Debian/Ubuntu: apt-get install wrk; macOS: brew install wrk), or run npm install for autocannon.`;

/** A note for result files: which generator ran, and why its figures do not compare with the other's. */
export const LOAD_GENERATOR_NOTE =
  loadGenerator === 'autocannon'
    ? 'load from autocannon (wrk not installed): a Node load generator costs more per request than wrk, so req/s is lower and ratios are not comparable with wrk runs'
    : 'load from wrk';

const lua = (s) => JSON.stringify(s); // JSON string syntax is valid Lua for the ASCII we write.

/** Emits one `WRK_JSON {...}` line at the end of the run: counts, errors, latency percentiles (µs). */
const DONE = `
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
`;

/** Every request the same: wrk pre-builds it once, the cheapest load to generate. */
export function staticScript(dir, name, path, headers) {
  const lines = [`wrk.method = "GET"`, `wrk.path = ${lua(path)}`];
  for (const [k, v] of Object.entries(headers)) lines.push(`wrk.headers[${lua(k)}] = ${lua(v)}`);
  const file = join(dir, `${name}.lua`);
  writeFileSync(file, lines.join('\n') + '\n' + DONE);
  writeFileSync(`${file}.json`, JSON.stringify({ path, headers }));
  return file;
}

/**
 * One header value per line of `valuesFile`, used in turn (round robin): the requests are formatted
 * once in init(), so per request wrk only picks the next prebuilt string. The position is saved in
 * `<script>.pos` at the end of a run and picked up by the next, so a warm-up and the measured run
 * form one continuous cycle (remove the file to start over: resetRotation()).
 * With `stopAfter`, the run ends after that many responses (for "drive every key once" runs; one thread).
 */
export function rotatingScript(dir, name, path, headerName, valuesFile, { prefix = '', stopAfter = 0 } = {}) {
  const file = join(dir, `${name}.lua`);
  const posFile = `${file}.pos`;
  const script = `
local threads = {}
reqs = {}
n = 0
i = 0
local seen = 0
setup = function(thread)
  table.insert(threads, thread)
end
init = function(args)
  for line in io.lines(${lua(valuesFile)}) do
    if #line > 0 then
      n = n + 1
      reqs[n] = wrk.format("GET", ${lua(path)}, { [${lua(headerName)}] = ${lua(prefix)} .. line })
    end
  end
  local f = io.open(${lua(posFile)}, "r")
  if f then
    i = (tonumber(f:read("*l")) or 0) % n
    f:close()
  end
end
request = function()
  i = i % n + 1
  return reqs[i]
end
${stopAfter > 0 ? `response = function(status, headers, body)
  seen = seen + 1
  if seen == ${stopAfter} then
    -- wrk's main thread sleeps out its -d whatever the threads do; the runner sends SIGINT on this line.
    io.write("WRK_STOP\\n")
    io.flush()
    wrk.thread:stop()
  end
end` : ''}
local report = ${DONE.replace('done = function', 'function').trim()}
done = function(summary, latency, requests)
  local f = io.open(${lua(posFile)}, "w")
  if f and threads[1] then
    f:write(tostring(threads[1]:get("i")))
    f:close()
  end
  report(summary, latency, requests)
end
`;
  writeFileSync(file, script);
  writeFileSync(`${file}.json`, JSON.stringify({ path, headerName, valuesFile, prefix, stopAfter, posFile }));
  return file;
}

/** Makes the next run of a rotating script start at the first value again. */
export function resetRotation(script) {
  rmSync(`${script}.pos`, { force: true });
}

/** Runs wrk (or autocannon) on the load core; resolves with its JSON summary plus req/s. */
export function runWrk({ url, script, seconds, connections = 50, threads = 1, timeout = '5s' }) {
  let command;
  let args;
  if (loadGenerator === 'autocannon') {
    const spec = { url, seconds, connections, timeoutSeconds: Number.parseInt(timeout, 10), script: JSON.parse(readFileSync(`${script}.json`, 'utf8')) };
    [command, args] = [process.execPath, [join(here, 'autocannon-driver.mjs'), JSON.stringify(spec)]];
  } else {
    [command, args] = ['wrk', ['-t', String(threads), '-c', String(connections), '-d', `${seconds}s`, '--latency', '--timeout', timeout, '-s', script, url]];
  }
  const [file, argv] = layout.pinned ? ['taskset', ['-c', layout.load, command, ...args]] : [command, args];
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(file, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c) => {
      out += c;
      // SIGINT makes wrk stop and print its summary, as at the end of -d.
      if (out.includes('WRK_STOP') && !child.stopSent) child.stopSent = child.kill('SIGINT');
    });
    child.stderr.on('data', (c) => (err += c));
    child.once('error', reject);
    child.once('exit', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('WRK_JSON '));
      if (code !== 0 || !line) return reject(new Error(`${loadGenerator} failed (exit ${code}):\n${out}\n${err}`));
      const r = JSON.parse(line.slice('WRK_JSON '.length));
      r.wallSeconds = (performance.now() - t0) / 1000;
      r.seconds = r.duration_us / 1e6;
      r.rps = r.requests / r.seconds;
      r.socketErrors = r.connect + r.read + r.write + r.timeout;
      resolve(r);
    });
  });
}
