// Logic of `gatehouse keys generate` and `gatehouse keys hash`: new random keys and their config entries. No I/O.
import { randomBytes } from 'node:crypto';
import { stringify } from 'yaml';
import { hashApiKey } from './api-keys.js';
import { KEY_NAME, KEY_NAME_RULE, unsafeIdentityField } from './identity.js';

/** One entry under `auth.apiKeys.keys`, as written in the YAML file. */
export interface ApiKeyEntryYaml {
  id: string;
  hash: `sha256:${string}`;
  tenant: string;
  subject: string;
  role?: string;
  scopes?: string[];
  access: 'full' | 'read-only';
  /** ISO-8601 UTC, whole seconds. */
  expiresAt?: string;
}

export interface GenerateApiKeyOptions {
  prefix?: string;
  id?: string;
  tenant?: string;
  subject?: string;
  role?: string;
  scopes?: string[];
  access?: 'full' | 'read-only';
  /** A duration from `now`: `90d`, `12h`, `30m`, `45s`. */
  expires?: string;
  /** Epoch ms the expiry counts from; defaults to the current time. */
  now?: number;
}

export interface GeneratedApiKey {
  /** The key itself: shown once, never written to config. */
  key: string;
  entry: ApiKeyEntryYaml;
  /** A one-item YAML list holding `entry`, to paste under `auth.apiKeys.keys`. */
  yaml: string;
}

export const DEFAULT_KEY_PREFIX = 'gh_live_';
/** 32 bytes = 256 bits of entropy: guessing is hopeless, so a plain SHA-256 (no slow KDF) is a sound index. */
const KEY_BYTES = 32;

// No `.` in a prefix: a `Bearer` value with dots could be mistaken for a JWT (SPEC section 3).
const PREFIX = /^[A-Za-z0-9_-]{0,32}$/;

const UNIT_MS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** Parses an expiry duration (`90d`, `12h`, `30m`, `45s`) into milliseconds. */
export function parseExpires(text: string): number {
  const match = /^([0-9]+)([dhms])$/.exec(text);
  if (match === null) {
    throw new Error(`--expires must be a whole number followed by d, h, m or s (like 90d, 12h, 30m, 45s), got "${text}"`);
  }
  const ms = Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS];
  if (ms <= 0) throw new Error(`--expires must be greater than zero, got "${text}"`);
  if (!Number.isSafeInteger(ms)) throw new Error(`--expires is too large: "${text}"`);
  return ms;
}

/** A new random key and the entry that lets gatehouse recognise it, which holds its hash but never the key. */
export function generateApiKey(options: GenerateApiKeyOptions = {}): GeneratedApiKey {
  const prefix = options.prefix ?? DEFAULT_KEY_PREFIX;
  if (!PREFIX.test(prefix)) {
    throw new Error(`--prefix may only use letters, digits, "_" and "-" (at most 32), got "${prefix}"`);
  }
  const id = options.id ?? `key-${randomBytes(4).toString('hex')}`;
  // The same rules as the config's (config/validate-auth.ts): a printed entry must pass `gatehouse check`.
  if (!KEY_NAME.test(id)) throw new Error(`--id must be ${KEY_NAME_RULE}, got "${id}"`);
  const tenant = options.tenant ?? 'default';
  const subject = options.subject ?? id;
  const access = options.access ?? 'full';
  if (access !== 'full' && access !== 'read-only') throw new Error(`--access must be full or read-only, got "${String(access)}"`);
  const role = options.role;
  const scopes = options.scopes === undefined || options.scopes.length === 0 ? undefined : options.scopes;
  const unsafe = unsafeIdentityField({ tenant, subject, role: role ?? null, scopes: scopes ?? [] });
  if (unsafe === 'scopes') throw new Error(`--scopes entries must be visible ASCII without spaces, got ${JSON.stringify(scopes)}`);
  if (unsafe) throw new Error(`--${unsafe} must be visible ASCII, inner spaces allowed, none at either end, got ${JSON.stringify({ tenant, subject, role }[unsafe])}`);

  const key = prefix + randomBytes(KEY_BYTES).toString('base64url');
  const expiresAt =
    options.expires === undefined ? undefined : isoSeconds((options.now ?? Date.now()) + parseExpires(options.expires));
  // Field order follows the documented example, so the pasted entry reads like its neighbours.
  const entry: ApiKeyEntryYaml = {
    id,
    hash: `sha256:${hashApiKey(key)}`,
    tenant,
    subject,
    ...(role === undefined ? {} : { role }),
    ...(scopes === undefined ? {} : { scopes }),
    access,
    ...(expiresAt === undefined ? {} : { expiresAt }),
  };
  return { key, entry, yaml: stringify([entry]) };
}

/**
 * `keys hash`: the `sha256:<hex>` of a key read from stdin. Exactly one trailing newline (LF or CRLF), as
 * `echo` or a file adds, is dropped; anything else is part of the key, because keys are compared exactly.
 */
export function hashKeyInput(stdinText: string): `sha256:${string}` {
  const key = stdinText.endsWith('\r\n') ? stdinText.slice(0, -2) : stdinText.endsWith('\n') ? stdinText.slice(0, -1) : stdinText;
  if (key.length === 0) throw new Error('no key on stdin: pipe the API key in, e.g. `printf %s "$KEY" | gatehouse keys hash`');
  // A key with a line break could never arrive in an HTTP header, so it is a paste mistake, not a key.
  if (key.includes('\n') || key.includes('\r')) {
    throw new Error('stdin holds more than one line: pass exactly one API key');
  }
  return `sha256:${hashApiKey(key)}`;
}

/** ISO-8601 UTC without milliseconds (truncated: a key never outlives what was asked for). */
function isoSeconds(ms: number): string {
  const date = new Date(Math.floor(ms / 1000) * 1000);
  if (Number.isNaN(date.getTime())) throw new Error('--expires reaches past the largest representable date');
  return date.toISOString().replace('.000Z', 'Z');
}
