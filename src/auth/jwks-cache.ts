// A provider's JWKS (remote URL or local file), kept fresh in the background and served from memory.
// Requests never wait for a refresh unless their kid is unknown; a failed fetch keeps the last good set.
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { createPublicKey } from 'node:crypto';
import { request } from 'undici';
import { createLocalJWKSet, type JWK, type JWTVerifyGetKey, type JSONWebKeySet } from 'jose';
import { TIMER_MAX_MS } from '../config/duration.js';
import { ProxyError } from '../http/errors.js';
import type { Clock } from '../clock.js';
import type { Metrics } from '../observe/metrics.js';
import type { Logger } from '../observe/logger.js';
import { ASYMMETRIC_ALGORITHMS, MIN_RSA_BITS, jwkFitsAlgorithm } from './jwt-algorithms.js';

export interface JwksKeySetOptions {
  provider: string;
  source: { kind: 'url'; url: string } | { kind: 'file'; path: string };
  /** Least time between two fetches caused by an unknown kid. */
  cooldownMs: number;
  /** Background refresh period. */
  maxAgeMs: number;
  /** Upper bound for one fetch (connect, headers and body). */
  fetchTimeoutMs?: number;
  /** Larger answers are refused: a JWKS is a few KiB, anything bigger is a misconfiguration or an attack. */
  maxBytes?: number;
  clock: Clock;
  metrics?: Metrics;
  logger: Logger;
}

interface KeySnapshot {
  readonly keys: readonly JWK[];
  readonly getKey: JWTVerifyGetKey;
}

/** A fetch failure with a description safe to log (no key material, no response body). */
class JwksLoadError extends Error {}

const DEFAULT_TIMEOUT_MS = 5_000;
const DEFAULT_MAX_BYTES = 1024 * 1024;
/** After a failed fetch, retry sooner than maxAge, but never faster than this. */
const MIN_RETRY_MS = 1_000;

/**
 * A JWKS URL as logs and `gatehouse check` show it: without user info or query, where an IdP credential
 * (`https://svc:PASSWORD@idp/...`, `?api_key=...`) would sit.
 */
export function displayUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.username || u.password ? '[redacted]@' : ''}${u.host}${u.pathname}${u.search ? '?[redacted]' : ''}`;
  } catch {
    return '[invalid URL]';
  }
}

/**
 * Drops an answer body unread. undici's body emits 'error' (RequestAbortedError) when destroyed before its end, and
 * an 'error' event without a listener ends the process: an IdP answering 503 must not take the proxy down.
 */
function discard(body: Readable): void {
  body.on('error', () => {});
  body.destroy();
}

export class JwksKeySet {
  /**
   * Bumped whenever a load drops a key the previous set had (rotation's last step, or a compromised key pulled):
   * tokens verified before then are verified again, not trusted from the verified-token cache until they expire.
   */
  generation = 0;
  private current: KeySnapshot | null = null;
  private inFlight: Promise<boolean> | null = null;
  private lastFetchStartedAt = Number.NEGATIVE_INFINITY;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly firstLoad: Promise<boolean>;
  private readonly location: string;
  /** A file re-read a reload asked for: verifications wait for it, so a key pulled from the file is gone at once. */
  private reread: Promise<boolean> | null = null;

  constructor(private readonly options: JwksKeySetOptions) {
    this.location = options.source.kind === 'url' ? displayUrl(options.source.url) : options.source.path;
    // Started here, not awaited: the proxy serves (and /readyz reports) while the first fetch runs.
    this.firstLoad = this.refresh();
  }

  ready(): boolean {
    return this.current !== null;
  }

  /** Resolves once the first load attempt finished, whatever its outcome; true when keys are loaded. */
  async whenLoaded(): Promise<boolean> {
    await this.firstLoad;
    return this.ready();
  }

  /**
   * A reload took this key set over (its source is unchanged). A file is read again, as a `publicKey` file is: a
   * reload (SIGHUP) is how an operator pulls a leaked key from a JWKS file at once. A URL keeps its schedule; a
   * reload does not make gatehouse fetch from the identity provider.
   */
  adopted(): void {
    if (this.options.source.kind !== 'file') return;
    const reread = this.refresh();
    this.reread = reread;
    void reread.finally(() => {
      if (this.reread === reread) this.reread = null;
    });
  }

  /** jose key resolver. A cached kid resolves at once, even while a background refresh hangs. */
  readonly getKey: JWTVerifyGetKey = async (header, token) => {
    const alg = header.alg ?? '';
    if (this.reread) await this.reread;
    let snapshot = this.current;
    if (!snapshot || !hasKid(snapshot, header.kid)) {
      await this.refreshForUnknownKid();
      snapshot = this.current;
    }
    if (!snapshot) {
      // The identity provider being down is not the caller's fault: 503, so clients keep their good tokens.
      throw new ProxyError('service_unavailable', 'the signing keys for this token are not available yet; retry later', 'jwks_unavailable');
    }
    const named = snapshot.keys.filter((k) => header.kid === undefined || k.kid === header.kid);
    if (named.length === 0) {
      throw new ProxyError('invalid_token', 'the token was signed with an unknown key', 'unknown_kid');
    }
    if (!named.some((k) => jwkFitsAlgorithm(k, alg))) {
      if (header.kid === undefined) throw new ProxyError('invalid_token', 'no signing key matches the token algorithm', 'no_matching_key');
      throw new ProxyError('invalid_token', 'the token key id names a key of another type than its algorithm', 'key_type_mismatch');
    }
    return snapshot.getKey(header, token);
  };

  /** Fetches now, sharing a fetch already under way. Resolves true when a new set was loaded. */
  refresh(): Promise<boolean> {
    if (this.inFlight) return this.inFlight;
    this.lastFetchStartedAt = this.options.clock.now();
    this.inFlight = this.load().finally(() => {
      this.inFlight = null;
    });
    return this.inFlight;
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
  }

  /** An unknown kid may mean the issuer rotated keys; re-fetch, but at most once per cooldown. */
  private async refreshForUnknownKid(): Promise<void> {
    if (this.inFlight) {
      await this.inFlight;
      return;
    }
    if (this.options.clock.now() - this.lastFetchStartedAt < this.options.cooldownMs) return;
    await this.refresh();
  }

  private async load(): Promise<boolean> {
    const { provider, metrics, logger } = this.options;
    let ok = false;
    try {
      const snapshot = this.parse(await this.read());
      if (this.current && dropsAKey(this.current, snapshot)) this.generation++;
      this.current = snapshot;
      ok = true;
      metrics?.jwksFetches.inc({ provider, outcome: 'ok' });
      logger.debug({ provider, url: this.location, keys: snapshot.keys.length }, 'JWKS loaded');
    } catch (err) {
      metrics?.jwksFetches.inc({ provider, outcome: 'error' });
      const reason = err instanceof JwksLoadError ? err.message : 'unexpected error';
      const kept = this.current ? 'keeping the last good key set' : 'no keys loaded yet';
      logger.warn({ provider, url: this.location, reason }, `JWKS fetch failed; ${kept}`);
    }
    this.schedule(ok);
    return ok;
  }

  private schedule(lastFetchOk: boolean): void {
    if (this.closed) return;
    clearTimeout(this.timer);
    const delay = lastFetchOk ? this.options.maxAgeMs : Math.max(MIN_RETRY_MS, Math.min(this.options.cooldownMs, this.options.maxAgeMs));
    this.timer = setTimeout(() => void this.refresh(), Math.min(delay, TIMER_MAX_MS));
    // A background refresh must never keep the process alive on shutdown.
    this.timer.unref();
  }

  private async read(): Promise<string> {
    const { source, fetchTimeoutMs = DEFAULT_TIMEOUT_MS, maxBytes = DEFAULT_MAX_BYTES } = this.options;
    if (source.kind === 'file') {
      let text: Buffer;
      try {
        text = await readFile(source.path);
      } catch (err) {
        throw new JwksLoadError(`cannot read the file (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
      }
      if (text.length > maxBytes) throw new JwksLoadError(`the file is larger than ${maxBytes} bytes`);
      return text.toString('utf8');
    }
    try {
      const res = await request(source.url, {
        method: 'GET',
        headers: { accept: 'application/json' },
        signal: AbortSignal.timeout(fetchTimeoutMs),
        headersTimeout: fetchTimeoutMs,
        bodyTimeout: fetchTimeoutMs,
      });
      if (res.statusCode !== 200) {
        discard(res.body);
        throw new JwksLoadError(`HTTP ${res.statusCode}`);
      }
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of res.body) {
        size += (chunk as Buffer).length;
        if (size > maxBytes) {
          discard(res.body);
          throw new JwksLoadError(`the answer is larger than ${maxBytes} bytes`);
        }
        chunks.push(chunk as Buffer);
      }
      return Buffer.concat(chunks).toString('utf8');
    } catch (err) {
      if (err instanceof JwksLoadError) throw err;
      const name = (err as Error).name;
      if (name === 'TimeoutError' || name === 'AbortError') throw new JwksLoadError(`no answer within ${fetchTimeoutMs}ms`);
      throw new JwksLoadError(`request failed (${(err as { code?: string }).code ?? name})`);
    }
  }

  /** Keeps only keys that can verify a signature; refuses the whole answer if none is left. */
  private parse(text: string): KeySnapshot {
    const { usable, dropped } = usableKeys(text);
    if (dropped > 0) this.options.logger.warn({ provider: this.options.provider, url: this.location, dropped }, 'JWKS keys ignored (private, symmetric, weak or invalid)');
    const set: JSONWebKeySet = { keys: usable };
    try {
      return { keys: usable, getKey: createLocalJWKSet(set) };
    } catch {
      throw new JwksLoadError('the JWKS is malformed');
    }
  }
}

/** The keys of a JWKS document that can verify a signature, and how many others it had; throws if none. */
function usableKeys(text: string): { usable: JWK[]; dropped: number } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new JwksLoadError('the answer is not JSON');
  }
  const keys = (json as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys)) throw new JwksLoadError('the answer is not a JWKS (no "keys" array)');
  const usable = keys.filter(isUsableVerificationKey);
  if (usable.length === 0) throw new JwksLoadError('the JWKS has no usable signature key');
  return { usable, dropped: keys.length - usable.length };
}

/**
 * What is wrong with a `jwksFile` now (unreadable, too large, not a JWKS, no usable key), or null: config
 * validation reads it as it reads a `publicKey` file, so `check` and a reload refuse a file serve could not use.
 */
export function jwksFileProblem(path: string): string | null {
  try {
    const text = readFileSync(path);
    if (text.length > DEFAULT_MAX_BYTES) return `the file is larger than ${DEFAULT_MAX_BYTES} bytes`;
    usableKeys(text.toString('utf8'));
    return null;
  } catch (err) {
    if (err instanceof JwksLoadError) return err.message.replace('the answer', 'the file');
    return `cannot read the file (${(err as NodeJS.ErrnoException).code ?? 'error'})`;
  }
}

function dropsAKey(before: KeySnapshot, after: KeySnapshot): boolean {
  const kept = new Set(after.keys.map((k) => JSON.stringify(k)));
  return before.keys.some((k) => !kept.has(JSON.stringify(k)));
}

function hasKid(snapshot: KeySnapshot, kid: string | undefined): boolean {
  // A token without kid is matched by algorithm against the whole set.
  return kid === undefined || snapshot.keys.some((k) => k.kid === kid);
}

/** A public asymmetric signature key whose material Node can load. */
function isUsableVerificationKey(value: unknown): value is JWK {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const jwk = value as JWK;
  if (jwk.kty !== 'RSA' && jwk.kty !== 'EC' && jwk.kty !== 'OKP') return false;
  if (jwk.d !== undefined) return false;
  if (jwk.use !== undefined && jwk.use !== 'sig') return false;
  if (jwk.kid !== undefined && typeof jwk.kid !== 'string') return false;
  if (jwk.alg !== undefined && !ASYMMETRIC_ALGORITHMS.has(jwk.alg)) return false;
  if (![...ASYMMETRIC_ALGORITHMS.keys()].some((alg) => jwkFitsAlgorithm(jwk, alg))) return false;
  try {
    const key = createPublicKey({ key: jwk as import('node:crypto').JsonWebKey, format: 'jwk' });
    const bits = key.asymmetricKeyDetails?.modulusLength;
    return bits === undefined || bits >= MIN_RSA_BITS;
  } catch {
    return false;
  }
}
