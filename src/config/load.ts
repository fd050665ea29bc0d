// Reads a config file: YAML with positions, env expansion, validation. Throws ConfigError with every issue.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { LineCounter, parseDocument, type Node } from 'yaml';
import { ConfigError, IssueList } from './issues.js';
import { MapReader, ReadContext } from './reader.js';
import { validate } from './validate.js';
import { readKeyEntries } from './validate-auth.js';
import { fastKeyEntries } from './keys-json.js';
import type { ApiKeyEntry, GatehouseConfig } from './types.js';
import type { Env } from './env.js';

interface Parsed {
  cx: ReadContext;
  issues: IssueList;
  root: Node | null;
}

function parseFile(file: string, env: Env): Parsed {
  const lines = new LineCounter();
  const issues = new IssueList(file, lines);
  const cx = new ReadContext(issues, env);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    issues.atOffset(0, `cannot read file (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    throw new ConfigError(issues.items);
  }
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  for (const e of doc.errors) issues.atOffset(e.pos[0], e.message.split('\n')[0]);
  if (doc.errors.length) throw new ConfigError(issues.items);
  return { cx, issues, root: doc.contents as Node | null };
}

/** Loads and validates the whole config, including the API keys file it names. */
export function loadConfig(path: string, env: Env = process.env): GatehouseConfig {
  const file = resolve(path);
  const { cx, issues, root } = parseFile(file, env);
  const config = validate(cx, root, file);
  if (issues.items.length || !config) throw new ConfigError(issues.items);
  const keysFile = config.auth.apiKeys?.file;
  if (config.auth.apiKeys && keysFile) {
    const fromFile = loadKeysFile(keysFile, env);
    const ids = new Set(config.auth.apiKeys.keys.map((k) => k.id));
    const hashes = new Set(config.auth.apiKeys.keys.map((k) => k.hash));
    const clashes = fromFile.filter((k) => ids.has(k.id) || hashes.has(k.hash));
    if (clashes.length) throw new ConfigError(keyClashes(keysFile, clashes));
    config.auth.apiKeys.keys = [...config.auth.apiKeys.keys, ...fromFile];
  }
  return config;
}

/** Every entry of the keys file that the main config defines too; named by id (a JSON keys file keeps no positions). */
function keyClashes(file: string, keys: readonly ApiKeyEntry[]) {
  const list = new IssueList(file, new LineCounter());
  for (const key of keys) list.atOffset(0, `key "${key.id}" is also defined in the main config (same id or hash)`);
  return list.items;
}

/** The keys file: `keys:` with entries shaped like auth.apiKeys.keys. */
export function loadKeysFile(path: string, env: Env = process.env): ApiKeyEntry[] {
  let fast: ApiKeyEntry[] | null = null;
  try {
    fast = fastKeyEntries(readFileSync(path, 'utf8'));
  } catch {
    // Unreadable: the positioned reader below reports it.
  }
  if (fast) return fast;
  const { cx, issues, root } = parseFile(path, env);
  const top = MapReader.of(cx, root, '', root);
  const keys = top ? readKeyEntries(cx, top.list('keys') ?? [], 'keys') : [];
  top?.done();
  if (issues.items.length) throw new ConfigError(issues.items);
  return keys;
}
