// Benchmark process control: free ports, CPU pinning with taskset, readiness polling, /proc CPU time and RSS.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { availableParallelism } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';

/** Clock ticks per second of /proc/PID/stat utime and stime. */
export const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

const hasTaskset = spawnSync('taskset', ['-V']).status === 0;

/**
 * Which cores each role runs on. With 2+ cores and taskset: the load side (wrk, the upstream, redis,
 * this runner) on core 0, the server under test alone on core 1. Otherwise nothing is pinned.
 */
export const layout = (() => {
  const cores = availableParallelism();
  if (!hasTaskset || cores < 2) return { pinned: false, cores, load: null, server: null, note: `not pinned (${hasTaskset ? `${cores} core(s)` : 'taskset missing'})` };
  return { pinned: true, cores, load: '0', server: '1', note: 'core 0: load generator + upstream + redis + runner; core 1: the server under test (in scenario 1 that is the upstream itself)' };
})();

/** Pins this runner to the load core, so it never steals time from the server under test. */
export function pinSelf() {
  if (layout.pinned) spawnSync('taskset', ['-pc', layout.load, String(process.pid)]);
}

/** Starts `cmd args` on the given cores (or unpinned). taskset execs, so child.pid is the program's own pid. */
export function startPinned(cores, cmd, args, options = {}) {
  const [file, argv] = layout.pinned && cores !== null ? ['taskset', ['-c', cores, cmd, ...args]] : [cmd, args];
  const child = spawn(file, argv, { stdio: ['ignore', 'ignore', 'pipe'], ...options });
  child.stderrText = '';
  child.stderr?.on('data', (chunk) => {
    if (child.stderrText.length < 20_000) child.stderrText += chunk;
  });
  return child;
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Resolves once something accepts TCP connections on the port; rejects when the process died or time ran out. */
export async function waitForPort(port, child, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child && child.exitCode !== null) throw new Error(`process exited with ${child.exitCode} before listening:\n${child.stderrText}`);
    const ok = await new Promise((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(20);
  }
  throw new Error(`nothing listening on ${port} after ${timeoutMs} ms`);
}

/** utime + stime of a process in seconds (all its threads: GC, libuv pool). */
export function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Field 2 (comm) may hold spaces; count fields after its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

/** Resident set size in bytes. */
export function rssBytes(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

export async function stop(child, timeoutMs = 5_000) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  await exited;
  clearTimeout(timer);
}

export function loadAverage() {
  try {
    return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number);
  } catch {
    return null;
  }
}

/** CPU seconds all cores spent busy (user, nice, system, irq, softirq, steal) since boot. */
export function machineBusySeconds() {
  const [, ...f] = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/);
  const [user, nice, system, , , irq, softirq, steal] = f.map(Number);
  return (user + nice + system + irq + softirq + steal) / CLK_TCK;
}

/** This runner's CPU seconds, including its reaped children (every finished wrk run). */
export function selfAndChildrenCpuSeconds() {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])) / CLK_TCK;
}

/**
 * Busy CPU on the machine that none of our processes account for: other people's work (tests,
 * builds) or hypervisor steal. Take one snapshot before a run and one after; the difference per
 * wall second is how much of a core was stolen from the benchmark.
 */
export function foreignSnapshot(pids) {
  let ours = selfAndChildrenCpuSeconds();
  for (const pid of pids) {
    try {
      ours += cpuSeconds(pid);
    } catch {
      // A process that already exited counts no more.
    }
  }
  return { busy: machineBusySeconds(), ours, at: performance.now() };
}

export function foreignShare(before, after) {
  const wall = (after.at - before.at) / 1000;
  return Math.max(0, after.busy - before.busy - (after.ours - before.ours)) / wall;
}
