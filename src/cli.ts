#!/usr/bin/env node
// The gatehouse command: serve, check, keys, explain (SPEC section 1). Exit 0 ok, 1 bad config, 2 usage.
import { readFileSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { loadConfig } from './config/load.js';
import { ConfigError } from './config/issues.js';
import type { GatehouseConfig } from './config/types.js';
import { Gateway } from './http/server.js';
import { generateApiKey, hashKeyInput } from './auth/keys-command.js';
import { reloadFrom, watchConfig } from './reload.js';
import { summarize } from './summary.js';
import { explain } from './explain.js';

const HELP: Record<string, string> = {
  main: `gatehouse — a reverse auth proxy

Usage:
  gatehouse serve   [--config FILE]          run the proxy
  gatehouse check   [--config FILE]          validate the config and print a summary
  gatehouse keys generate [options]          print a new API key and its YAML entry
  gatehouse keys hash                        read a key on stdin, print sha256:<hex>
  gatehouse explain [--config FILE] METHOD PATH [-H 'Name: value']...   dry run, no network

--config falls back to $GATEHOUSE_CONFIG, then ./gatehouse.yaml. 'gatehouse COMMAND --help' for more.`,
  serve: `gatehouse serve [--config FILE]
Runs the proxy. SIGTERM/SIGINT drain and exit 0; SIGHUP or a change of the config or keys file reloads.`,
  check: `gatehouse check [--config FILE]
Validates the config. Exit 0 with a summary, or exit 1 with every error as FILE:LINE:COL message.`,
  keys: `gatehouse keys generate [--prefix P] [--id ID] [--tenant T] [--subject S] [--role R]
                        [--scopes a,b] [--access full|read-only] [--expires 90d]
  Prints a new random API key (shown once: store it now) and the YAML entry to paste under
  auth.apiKeys.keys (it holds the key's hash, never the key).
gatehouse keys hash
  Reads a key on stdin (one trailing newline ignored) and prints sha256:<hex>.`,
  explain: `gatehouse explain [--config FILE] METHOD PATH [-H 'Name: value']...
Dry run, no network: prints as JSON the route that matches, the credential found and whether it
verifies, the rate-limit policies with their effective limits, and the headers the upstream would get.`,
};

class UsageError extends Error {}

const str = { type: 'string' } as const;
const help = { type: 'boolean', short: 'h' } as const;
const configOption = { type: 'string', short: 'c' } as const;

function parse<T extends ParseArgsConfig>(config: T) {
  try {
    return parseArgs<T>(config);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

function configPath(value: unknown): string {
  return (typeof value === 'string' && value) || process.env.GATEHOUSE_CONFIG || 'gatehouse.yaml';
}

function load(path: string): GatehouseConfig {
  try {
    return loadConfig(path);
  } catch (err) {
    if (err instanceof ConfigError) {
      for (const issue of err.issues) process.stderr.write(`${issue}\n`);
      process.exit(1);
    }
    throw err;
  }
}

/** Listen failures that are the operator's setting or the machine's state, not a bug: one line, no stack. */
const LISTEN_ERRORS: Record<string, string> = {
  EADDRINUSE: 'the address is already in use',
  EACCES: 'permission denied (ports below 1024 need privileges)',
  EADDRNOTAVAIL: 'the address is not one of this machine',
};

async function serve(args: string[]): Promise<void> {
  const { values } = parse({ args, options: { config: configOption, help } });
  if (values.help) return void console.log(HELP.serve);
  const path = configPath(values.config);
  const gateway = new Gateway(load(path));
  try {
    await gateway.listen();
  } catch (err) {
    const { code, address, port } = err as NodeJS.ErrnoException & { address?: string; port?: number };
    const why = code === undefined ? undefined : LISTEN_ERRORS[code];
    if (why === undefined) throw err;
    process.stderr.write(`gatehouse: cannot listen on ${address}:${port}: ${why}\n`);
    process.exit(1);
  }
  const stopWatching = watchConfig(gateway, path);
  process.on('SIGHUP', () => reloadFrom(gateway, path));
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    gateway.runtime.logger.info({ signal }, 'draining and shutting down');
    stopWatching();
    gateway.close().then(
      () => gateway.runtime.logger.flush(() => process.exit(0)),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

function check(args: string[]): void {
  const { values } = parse({ args, options: { config: configOption, help } });
  if (values.help) return void console.log(HELP.check);
  const path = configPath(values.config);
  console.log(summarize(load(path), path));
}

function keys(args: string[]): void {
  const [sub, ...rest] = args;
  if (sub === 'hash') {
    const { values } = parse({ args: rest, options: { help } });
    if (values.help) return void console.log(HELP.keys);
    let input: string;
    try {
      input = readFileSync(0, 'utf8');
      console.log(hashKeyInput(input));
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
    return;
  }
  if (sub !== 'generate') {
    if (sub === '--help' || sub === '-h') return void console.log(HELP.keys);
    throw new UsageError(`unknown keys command ${sub ?? '(none)'}: use generate or hash`);
  }
  const { values } = parse({ args: rest, options: { prefix: str, id: str, tenant: str, subject: str, role: str, scopes: str, access: str, expires: str, help } });
  if (values.help) return void console.log(HELP.keys);
  if (values.access !== undefined && values.access !== 'full' && values.access !== 'read-only') throw new UsageError('--access must be full or read-only');
  try {
    const generated = generateApiKey({
      ...values,
      scopes: values.scopes?.split(',').map((x) => x.trim()).filter(Boolean),
      access: values.access as 'full' | 'read-only' | undefined,
    });
    console.log(`# Your new API key (shown once; store it in a secret manager now):\n#   ${generated.key}\n# Paste this entry under auth.apiKeys.keys:\n${generated.yaml}`);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

async function explainCommand(args: string[]): Promise<void> {
  const { values, positionals } = parse({
    args,
    options: { config: configOption, header: { type: 'string', short: 'H', multiple: true }, help },
    allowPositionals: true,
  });
  if (values.help) return void console.log(HELP.explain);
  if (positionals.length !== 2) throw new UsageError('explain needs METHOD and PATH');
  const headers = (values.header ?? []).map((h) => {
    const colon = h.indexOf(':');
    if (colon <= 0) throw new UsageError(`-H "${h}" is not "Name: value"`);
    return [h.slice(0, colon).trim(), h.slice(colon + 1).trim()] as [string, string];
  });
  const config = load(configPath(values.config));
  console.log(JSON.stringify(await explain(config, positionals[0].toUpperCase(), positionals[1], headers), null, 2));
}

async function main(argv: string[]): Promise<void> {
  const [command, ...args] = argv;
  switch (command) {
    case 'serve':
      return serve(args);
    case 'check':
      return check(args);
    case 'keys':
      return keys(args);
    case 'explain':
      return explainCommand(args);
    case undefined:
    case '--help':
    case '-h':
    case 'help':
      console.log(HELP.main);
      if (command === undefined) process.exitCode = 2;
      return;
    default:
      throw new UsageError(`unknown command ${command}`);
  }
}

main(process.argv.slice(2)).catch((err) => {
  if (err instanceof UsageError) {
    process.stderr.write(`gatehouse: ${err.message}\n(see gatehouse --help)\n`);
    process.exit(2);
  }
  process.stderr.write(`gatehouse: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
