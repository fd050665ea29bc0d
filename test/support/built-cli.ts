// The built CLI (dist/cli.js) for tests that run gatehouse as a child process: rebuilt when src/ is newer.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const CLI = join(ROOT, 'dist/cli.js');
const LOCK = join(ROOT, 'dist/.test-build.lock');
const LOCK_STALE_MS = 60_000;

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs);
  }
  return newest;
}

const stale = () => !existsSync(CLI) || statSync(CLI).mtimeMs < newestMtime(join(ROOT, 'src'));

/**
 * Builds dist/ when it is missing or older than src/. Test files run in parallel, so one build at a
 * time (a mkdir lock): a child must never start from a half-written dist/.
 */
export async function ensureBuilt(): Promise<string> {
  if (!stale()) return CLI;
  mkdirSync(dirname(LOCK), { recursive: true });
  for (;;) {
    try {
      mkdirSync(LOCK);
      break;
    } catch {
      // A lock older than any build is left over from a killed run.
      const since = statSync(LOCK, { throwIfNoEntry: false })?.mtimeMs;
      if (since !== undefined && Date.now() - since > LOCK_STALE_MS) rmSync(LOCK, { recursive: true, force: true });
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  try {
    if (stale()) {
      const tsc = join(ROOT, 'node_modules/typescript/bin/tsc');
      const built = spawnSync(process.execPath, [tsc, '-p', join(ROOT, 'tsconfig.build.json')], { cwd: ROOT, encoding: 'utf8' });
      if (built.status !== 0) throw new Error(`build failed:\n${built.stdout}${built.stderr}`);
    }
  } finally {
    rmdirSync(LOCK);
  }
  return CLI;
}

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the built CLI to completion. */
export function runCli(args: string[], options: { env?: Record<string, string>; input?: string } = {}): CliRun {
  const run = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, ...options.env }, input: options.input });
  return { code: run.status, stdout: run.stdout, stderr: run.stderr };
}

export interface ServingChild {
  child: ChildProcess;
  url: string;
  port: number;
  adminUrl: string | null;
  /** Every stdout line, parsed as pino JSON where possible. */
  logs: Array<Record<string, unknown>>;
  /** SIGTERM and wait for exit; resolves with the exit code. */
  stop(): Promise<number | null>;
}

/** `gatehouse serve --config FILE` as a child; resolves once it logs the ports it listens on. */
export function serveCli(configPath: string, env: Record<string, string> = {}, timeoutMs = 10_000): Promise<ServingChild> {
  const child = spawn(process.execPath, [CLI, 'serve', '--config', configPath], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: Array<Record<string, unknown>> = [];
  let stderr = '';
  let buffered = '';
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    return exited;
  };
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`gatehouse serve did not start within ${timeoutMs} ms: ${stderr}`));
    }, timeoutMs);
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`gatehouse serve exited with ${code}: ${stderr}`));
    });
    child.stdout!.on('data', (c: Buffer) => {
      buffered += c.toString();
      let nl: number;
      while ((nl = buffered.indexOf('\n')) !== -1) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        let entry: Record<string, unknown>;
        try {
          entry = JSON.parse(line);
        } catch {
          continue;
        }
        logs.push(entry);
        if (entry.msg === 'gatehouse listening') {
          clearTimeout(timer);
          const port = entry.port as number;
          const admin = entry.admin_port as number | null;
          resolvePromise({ child, url: `http://127.0.0.1:${port}`, port, adminUrl: admin ? `http://127.0.0.1:${admin}` : null, logs, stop });
        }
      }
    });
  });
}
