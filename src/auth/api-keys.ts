// Verifies API keys: the SHA-256 of the presented key indexes a table of configured keys, built once per config.
import { hash } from 'node:crypto';
import type { Clock } from '../clock.js';
import type { ApiKeyEntry } from '../config/types.js';
import { ProxyError } from '../http/errors.js';
import type { Authenticator, Credential } from './authenticator.js';
import type { Identity } from './identity.js';

/** Lowercase hex SHA-256 of the whole key, as stored in `ApiKeyEntry.hash` (without `sha256:`). */
export function hashApiKey(key: string): string {
  return hash('sha256', key, 'hex');
}

/**
 * The same SHA-256 as the lookup key of the in-memory table: its 32 bytes as a 32-character latin1 string,
 * which takes half the memory of the 64 hex digits (100,000 keys: a few MiB).
 */
const digest = (key: string): string => hash('sha256', key, 'binary');
const digestOfHex = (hex: string): string => Buffer.from(hex, 'hex').toString('latin1');

const SHA256_HEX = /^[0-9a-f]{64}$/;

/**
 * One message per duplicate id or duplicate hash, for the config validator.
 * A message names key ids only: a hash is the lookup index of a key, so it stays out of logs and output.
 */
export function duplicateKeyErrors(entries: readonly Pick<ApiKeyEntry, 'id' | 'hash'>[]): string[] {
  const errors: string[] = [];
  const byId = new Map<string, number>();
  const byHash = new Map<string, string>();
  for (const [index, entry] of entries.entries()) {
    const firstIndex = byId.get(entry.id);
    if (firstIndex === undefined) byId.set(entry.id, index);
    else errors.push(`duplicate API key id "${entry.id}" (entries ${firstIndex + 1} and ${index + 1})`);

    // Two ids for one key would make the identity depend on table order; refuse instead of picking one.
    const hash = entry.hash.toLowerCase();
    const firstId = byHash.get(hash);
    if (firstId === undefined) byHash.set(hash, entry.id);
    else errors.push(`API keys "${firstId}" and "${entry.id}" have the same hash: one key is listed twice`);
  }
  return errors;
}


export interface ApiKeyAuthenticatorOptions {
  readonly clock: Clock;
}

export class ApiKeyAuthenticator implements Authenticator {
  readonly kind = 'api-key' as const;
  private readonly clock: Clock;
  /** Key digest -> the key's identity, precomputed and frozen so the hot path only reads (expiry is on it). */
  private readonly byHash: ReadonlyMap<string, Identity>;
  /** Digests of disabled keys: few, so a set of their own rather than a flag on every key. */
  private readonly disabled: ReadonlySet<string>;

  /**
   * Throws when an entry has a malformed hash or when ids/hashes repeat: the config validator reports those
   * with file positions first, so reaching this is a programming error, and a silently unusable key is not an option.
   */
  constructor(entries: readonly ApiKeyEntry[], options: ApiKeyAuthenticatorOptions) {
    this.clock = options.clock;
    const byHash = new Map<string, Identity>();
    const disabled = new Set<string>();
    const ids = new Set<string>();
    const shared = new Interner();
    let sound = true;
    for (const entry of entries) {
      const key = SHA256_HEX.test(entry.hash) ? digestOfHex(entry.hash) : '';
      sound &&= key !== '' && !byHash.has(key) && !ids.has(entry.id);
      ids.add(entry.id);
      byHash.set(key, toIdentity(entry, shared));
      if (entry.disabled) disabled.add(key);
    }
    if (!sound) {
      // Only the failing path pays for building the messages.
      const malformed = entries.filter((e) => !SHA256_HEX.test(e.hash)).map((e) => `API key "${e.id}" has a malformed hash`);
      throw new Error(`invalid API key table: ${[...malformed, ...duplicateKeyErrors(entries)].join('; ')}`);
    }
    this.byHash = byHash;
    this.disabled = disabled;
  }

  /** Number of configured keys (for the `check` summary and metrics). */
  get size(): number {
    return this.byHash.size;
  }

  authenticate(credential: Credential): Identity {
    if (credential.kind !== 'api-key') {
      throw new ProxyError('invalid_token', 'the credential is not an API key', 'wrong_credential_kind');
    }
    // The key is hashed exactly as presented: whitespace or case differences are a different key.
    // A Map lookup is not constant-time, but it compares hashes, whose preimage the caller cannot steer.
    const key = credential.key.length === 0 ? '' : digest(credential.key);
    const identity = key === '' ? undefined : this.byHash.get(key);
    if (identity === undefined) {
      throw new ProxyError('invalid_token', INVALID_MESSAGE, credential.key.length === 0 ? 'empty_key' : 'unknown_key');
    }
    // Disabled wins over expired, and shares the unknown-key message so callers cannot probe which keys exist.
    if (this.disabled.size > 0 && this.disabled.has(key)) throw new ProxyError('invalid_token', INVALID_MESSAGE, 'disabled_key');
    if (identity.expiresAt !== null && this.clock.now() >= identity.expiresAt) {
      throw new ProxyError('token_expired', 'the API key has expired', 'expired_key');
    }
    return identity;
  }

  ready(): boolean {
    return true;
  }

  close(): void {
    // Nothing to release: the keys file watcher belongs to the config loader.
  }
}

const INVALID_MESSAGE = 'the API key is not valid';

/**
 * One copy of each tenant, role, plan and scope list across the table: thousands of keys share a handful of
 * them, and a parsed keys file holds a separate string (and array) for every occurrence.
 */
class Interner {
  private readonly strings = new Map<string, string>();
  private readonly lists = new Map<string, readonly string[]>();

  string<T extends string | null>(s: T): T {
    if (s === null) return s;
    const known = this.strings.get(s);
    if (known !== undefined) return known as T;
    this.strings.set(s, s);
    return s;
  }

  list(items: readonly string[]): readonly string[] {
    const id = items.join('\n');
    let known = this.lists.get(id);
    if (known === undefined) this.lists.set(id, (known = Object.freeze(items.map((s) => this.string(s)))));
    return known;
  }
}

function toIdentity(entry: ApiKeyEntry, shared: Interner): Identity {
  return Object.freeze({
    tenant: shared.string(entry.tenant),
    subject: entry.subject,
    role: shared.string(entry.role),
    scopes: shared.list(entry.scopes),
    plan: shared.string(entry.plan),
    method: 'api-key' as const,
    keyId: entry.id,
    expiresAt: entry.expiresAt,
    readOnly: entry.access === 'read-only',
    claims: null,
  });
}
