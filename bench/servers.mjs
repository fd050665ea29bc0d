// Starts the processes a benchmark talks to, each pinned to its core: upstream, bare proxies, gatehouse, redis.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect } from 'node:net';
import { layout, startPinned, waitForPort } from './processes.mjs';

const here = dirname(fileURLToPath(import.meta.url));
/** The built CLI; GATEHOUSE_CLI points the benchmarks at another build (to compare two versions). */
export const GATEHOUSE_CLI = process.env.GATEHOUSE_CLI ?? join(here, '..', 'dist', 'cli.js');

async function started(child, port) {
  await waitForPort(port, child);
  return { child, pid: child.pid, port, url: `http://127.0.0.1:${port}` };
}

export function startUpstream(port, cores = layout.load) {
  return started(startPinned(cores, process.execPath, [join(here, 'upstream.mjs'), String(port)]), port);
}

/** mode 'dispatch' (the ceiling: Pool.dispatch, as gatehouse forwards) or 'stream' (Pool.stream). */
export function startBareProxy(port, upstreamUrl, nodeArgs = [], mode = 'dispatch') {
  return started(startPinned(layout.server, process.execPath, [...nodeArgs, join(here, 'bare-proxy.mjs'), String(port), upstreamUrl, mode]), port);
}

export function startHttpProxy3(port, upstreamUrl) {
  return started(startPinned(layout.server, process.execPath, [join(here, 'http-proxy3-proxy.mjs'), String(port), upstreamUrl]), port);
}

/** gatehouse serve with logging on; its stdout (the access log) goes to /dev/null, never the terminal. */
export function startGatehouse(port, configFile, nodeArgs = []) {
  return started(startPinned(layout.server, process.execPath, [...nodeArgs, GATEHOUSE_CLI, 'serve', '--config', configFile]), port);
}

/**
 * gatehouse serve with stdout piped, to time startup by its "gatehouse listening" log line.
 * After that line the log is read and dropped, so the pipe never fills.
 */
export function startGatehouseTimed(port, configFile) {
  const t0 = performance.now();
  const child = startPinned(layout.server, process.execPath, [GATEHOUSE_CLI, 'serve', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let done = false;
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      if (done || !line.includes('"gatehouse listening"')) return;
      done = true;
      const startupMs = performance.now() - t0;
      lines.close();
      child.stdout.resume();
      resolve({ child, pid: child.pid, port, url: `http://127.0.0.1:${port}`, startupMs });
    });
    child.once('exit', (code) => {
      if (!done) reject(new Error(`gatehouse exited with ${code} before listening:\n${child.stderrText}`));
    });
  });
}

/** A throwaway redis-server on the load core: no persistence, never the default port. */
export async function startRedis(port) {
  const child = startPinned(layout.load, 'redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'yes']);
  await new Promise((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', reject);
  });
  await waitForPort(port, child);
  // Listening is not yet serving while it loads; wait for a PONG.
  for (let i = 0; i < 100; i++) {
    const pong = await new Promise((resolve) => {
      const s = connect(port, '127.0.0.1', () => s.write('PING\r\n'));
      s.once('data', (d) => {
        s.destroy();
        resolve(String(d).startsWith('+PONG'));
      });
      s.once('error', () => resolve(false));
    });
    if (pong) return { child, pid: child.pid, port, url: `redis://127.0.0.1:${port}` };
    await sleep(50);
  }
  throw new Error('redis-server did not answer PING');
}

export function redisAvailable() {
  return new Promise((resolve) => {
    const child = spawn('redis-server', ['--version'], { stdio: 'ignore' });
    child.once('error', () => resolve(false));
    child.once('exit', (code) => resolve(code === 0));
  });
}
