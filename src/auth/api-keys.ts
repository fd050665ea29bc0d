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

/** What a lookup needs, precomputed and frozen so the hot path only reads. */
interface KeyRecord {
  readonly identity: Identity;
  readonly disabled: boolean;
  readonly expiresAt: number | null;
}

export interface ApiKeyAuthenticatorOptions {
  readonly clock: Clock;
}

export class ApiKeyAuthenticator implements Authenticator {
  readonly kind = 'api-key' as const;
  private readonly clock: Clock;
  private readonly byHash: ReadonlyMap<string, KeyRecord>;

  /**
   * Throws when an entry has a malformed hash or when ids/hashes repeat: the config validator reports those
   * with file positions first, so reaching this is a programming error, and a silently unusable key is not an option.
   */
  constructor(entries: readonly ApiKeyEntry[], options: ApiKeyAuthenticatorOptions) {
    this.clock = options.clock;
    const byHash = new Map<string, KeyRecord>();
    const ids = new Set<string>();
    let sound = true;
    for (const entry of entries) {
      sound &&= SHA256_HEX.test(entry.hash) && !byHash.has(entry.hash) && !ids.has(entry.id);
      ids.add(entry.id);
      byHash.set(entry.hash, toRecord(entry));
    }
    if (!sound) {
      // Only the failing path pays for building the messages.
      const malformed = entries.filter((e) => !SHA256_HEX.test(e.hash)).map((e) => `API key "${e.id}" has a malformed hash`);
      throw new Error(`invalid API key table: ${[...malformed, ...duplicateKeyErrors(entries)].join('; ')}`);
    }
    this.byHash = byHash;
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
    const record = credential.key.length === 0 ? undefined : this.byHash.get(hashApiKey(credential.key));
    if (record === undefined) {
      throw new ProxyError('invalid_token', INVALID_MESSAGE, credential.key.length === 0 ? 'empty_key' : 'unknown_key');
    }
    // Disabled wins over expired, and shares the unknown-key message so callers cannot probe which keys exist.
    if (record.disabled) throw new ProxyError('invalid_token', INVALID_MESSAGE, 'disabled_key');
    if (record.expiresAt !== null && this.clock.now() >= record.expiresAt) {
      throw new ProxyError('token_expired', 'the API key has expired', 'expired_key');
    }
    return record.identity;
  }

  ready(): boolean {
    return true;
  }

  close(): void {
    // Nothing to release: the keys file watcher belongs to the config loader.
  }
}

const INVALID_MESSAGE = 'the API key is not valid';

function toRecord(entry: ApiKeyEntry): KeyRecord {
  const identity: Identity = Object.freeze({
    tenant: entry.tenant,
    subject: entry.subject,
    role: entry.role,
    scopes: Object.freeze([...entry.scopes]),
    plan: entry.plan,
    method: 'api-key' as const,
    keyId: entry.id,
    expiresAt: entry.expiresAt,
    readOnly: entry.access === 'read-only',
    claims: null,
  });
  return Object.freeze({ identity, disabled: entry.disabled, expiresAt: entry.expiresAt });
}
