// Verifies JWTs against the configured providers (selected by `iss`) and caches verified identities.
import { createPublicKey, hash, webcrypto } from 'node:crypto';
import { decodeJwt, decodeProtectedHeader, errors, jwtVerify, type JWTVerifyGetKey, type JWTVerifyOptions, type JWTPayload } from 'jose';
import { LRUCache } from 'lru-cache';
import type { Authenticator, Credential } from './authenticator.js';
import type { Identity } from './identity.js';
import type { JwtProviderConfig } from '../config/types.js';
import type { Clock } from '../clock.js';
import type { Metrics } from '../observe/metrics.js';
import type { Logger } from '../observe/logger.js';
import { ProxyError, isProxyError } from '../http/errors.js';
import { JwksKeySet } from './jwks-cache.js';
import { compileIdentityMapper, type IdentityMapper } from './jwt-identity.js';
import { validateProviderAlgorithms } from './jwt-algorithms.js';

export { validateProviderAlgorithms } from './jwt-algorithms.js';

export interface JwtAuthenticator extends Authenticator {
  readonly kind: 'jwt';
  /** Provider names, in config order; a verified identity's keyId is one of them. */
  readonly providerNames: readonly string[];
  /**
   * A verified-token cache hit answers directly; anything else is a promise. `accepted`: the providers the route
   * takes (null: any). The identity is the first provider's (config order) that accepts the token; when that one
   * is not accepted but another provider of the same issuer is and accepts the token too, it is that one's.
   */
  authenticate(credential: Credential, accepted?: ReadonlySet<string> | null): Identity | Promise<Identity>;
  /** Resolves once every JWKS had its first load attempt (successful or not); never rejects. */
  whenLoaded(): Promise<void>;
  /**
   * Hands this authenticator's key set for an identical JWKS source to a successor (a reload), or null.
   * A handed-over set is no longer closed by close(): its warm keys and timers now belong to the successor.
   */
  adoptKeySet(source: string): JwksKeySet | null;
}

export interface JwtAuthenticatorDeps {
  clock: Clock;
  metrics?: Metrics;
  logger: Logger;
  /** Verified tokens kept in memory; 0 disables the cache. */
  cacheSize?: number;
  /** Upper bound of one JWKS fetch; default 5s. */
  jwksFetchTimeoutMs?: number;
  /** The authenticator this one replaces: JWKS key sets of unchanged sources are taken over, not re-fetched. */
  predecessor?: JwtAuthenticator | null;
}

/** What makes two providers' JWKS key sets interchangeable. */
const keySetSource = (p: JwtProviderConfig): string =>
  JSON.stringify([p.name, p.jwksUrl, p.jwksFile, p.jwksCooldownMs, p.jwksCacheMaxAgeMs]);

interface CompiledProvider {
  readonly name: string;
  readonly algorithms: ReadonlySet<string>;
  readonly options: Readonly<JWTVerifyOptions>;
  readonly getKey: JWTVerifyGetKey;
  readonly toIdentity: IdentityMapper;
  readonly jwks: JwksKeySet | null;
  /**
   * Longest a verified token is trusted from cache (one JWKS refresh period). A key dropped from the JWKS ends
   * its tokens' entries at the refresh that drops it (JwksKeySet.generation).
   */
  readonly cacheTtlMs: number;
}

interface CachedIdentity {
  readonly identity: Identity;
  readonly validUntil: number;
  /** The provider's JWKS and its generation when the token was verified: a key dropped since ends the entry. */
  readonly jwks: JwksKeySet | null;
  readonly generation: number;
}

const DEFAULT_CACHE_SIZE = 10_000;
/** Bigger headers are not a JWT anyone issues; refusing them keeps looksLikeJwt cheap. */
const MAX_HEADER_CHARS = 4096;
const BASE64URL = /^[A-Za-z0-9_-]+$/;

const invalid = (message: string, reason: string) => new ProxyError('invalid_token', message, reason);
const malformed = () => invalid('the token is not a well-formed JWT', 'malformed');

/**
 * Verdicts on JWT header segments seen before. Tokens of one issuer share a handful of headers (alg, typ, kid),
 * so this spares decoding and parsing the same header on every request; bounded, it cannot grow with traffic.
 */
const headerVerdicts = new Map<string, boolean>();
const MAX_HEADER_VERDICTS = 256;

function isJwtHeader(segment: string): boolean {
  const known = headerVerdicts.get(segment);
  if (known !== undefined) return known;
  let ok = false;
  try {
    const parsed: unknown = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
    ok = typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) && typeof (parsed as { alg?: unknown }).alg === 'string';
  } catch {
    ok = false;
  }
  if (headerVerdicts.size >= MAX_HEADER_VERDICTS) headerVerdicts.clear();
  headerVerdicts.set(segment, ok);
  return ok;
}

/** SPEC section 3: three base64url parts, the first a JSON object with a string `alg`. Never throws. */
export function looksLikeJwt(value: string): boolean {
  const parts = value.split('.');
  if (parts.length !== 3) return false;
  const [header, payload, signature] = parts;
  // An empty signature still counts, so an unsigned token is refused as a JWT with a precise reason.
  if (header.length > MAX_HEADER_CHARS || !BASE64URL.test(header) || !BASE64URL.test(payload)) return false;
  if (signature !== '' && !BASE64URL.test(signature)) return false;
  return isJwtHeader(header);
}

/** jose errors to ProxyError by class code and claim name, never by message text. */
function toProxyError(err: unknown, provider: string, logger: Logger): ProxyError {
  if (isProxyError(err)) return err;
  if (err instanceof errors.JWTExpired) return new ProxyError('token_expired', 'the token has expired', 'token_expired');
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === 'exp' && err.reason === 'missing') return invalid('the token must carry an expiry (exp)', 'missing_exp');
    if (err.claim === 'aud') return invalid('the token audience is not accepted here', 'wrong_audience');
    if (err.claim === 'iss') return invalid('the token issuer is not trusted', 'unknown_issuer');
    if (err.claim === 'nbf' && err.reason === 'check_failed') return invalid('the token is not valid yet (nbf)', 'not_yet_valid');
    return invalid('the token has an invalid claim', 'invalid_claims');
  }
  if (err instanceof errors.JOSEError) {
    switch (err.code) {
      case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
        return invalid('the token signature is invalid', 'bad_signature');
      case 'ERR_JOSE_ALG_NOT_ALLOWED':
        return invalid('the token signing algorithm is not allowed', 'alg_not_allowed');
      case 'ERR_JOSE_NOT_SUPPORTED':
        return invalid('the token uses an unsupported algorithm or header extension', 'unsupported');
      case 'ERR_JWKS_NO_MATCHING_KEY':
        return invalid('the token was signed with an unknown key', 'unknown_kid');
      case 'ERR_JWS_INVALID':
      case 'ERR_JWT_INVALID':
        return malformed();
    }
  }
  // Not a token problem we know: keep the detail in the logs (never the token), refuse the token.
  logger.warn({ provider, error: (err as Error)?.name, code: (err as { code?: unknown })?.code }, 'JWT verification failed unexpectedly');
  return invalid('the token could not be verified', 'verification_error');
}

function compileProvider(p: JwtProviderConfig, deps: JwtAuthenticatorDeps): CompiledProvider {
  const problems = validateProviderAlgorithms(p);
  if (problems.length > 0) throw new Error(`JWT provider "${p.name}": ${problems.join('; ')}`);
  let getKey: JWTVerifyGetKey;
  let jwks: JwksKeySet | null = null;
  if (p.secret !== undefined) {
    // jose verifies HMAC with WebCrypto and would import raw bytes on every verification; a CryptoKey per
    // algorithm, imported once, takes about a third off each verification. The alg was checked against
    // the allowlist before any key lookup, so this map holds at most three entries.
    const raw = new TextEncoder().encode(p.secret);
    const keys = new Map<string, Promise<webcrypto.CryptoKey>>();
    getKey = (header) => {
      const alg = header.alg;
      let key = keys.get(alg);
      if (!key) {
        key = webcrypto.subtle.importKey('raw', raw, { name: 'HMAC', hash: `SHA-${alg.slice(2)}` }, false, ['verify']);
        keys.set(alg, key);
      }
      return key;
    };
  } else if (p.publicKey !== undefined) {
    const key = createPublicKey(p.publicKey);
    getKey = async () => key;
  } else {
    const source = p.jwksUrl !== undefined ? { kind: 'url' as const, url: p.jwksUrl } : { kind: 'file' as const, path: p.jwksFile as string };
    jwks = deps.predecessor?.adoptKeySet(keySetSource(p)) ?? new JwksKeySet({
      provider: p.name,
      source,
      cooldownMs: p.jwksCooldownMs,
      maxAgeMs: p.jwksCacheMaxAgeMs,
      fetchTimeoutMs: deps.jwksFetchTimeoutMs,
      clock: deps.clock,
      metrics: deps.metrics,
      logger: deps.logger,
    });
    getKey = jwks.getKey;
  }
  return {
    name: p.name,
    algorithms: new Set(p.algorithms),
    options: Object.freeze({
      issuer: p.issuer,
      audience: [...p.audience],
      algorithms: [...p.algorithms],
      requiredClaims: ['exp'],
      clockTolerance: p.clockToleranceMs / 1000,
    }),
    getKey,
    toIdentity: compileIdentityMapper(p),
    jwks,
    cacheTtlMs: p.jwksCacheMaxAgeMs,
  };
}

export function createJwtAuthenticator(providers: JwtProviderConfig[], deps: JwtAuthenticatorDeps): JwtAuthenticator {
  const { clock, metrics, logger } = deps;
  const compiled: CompiledProvider[] = [];
  try {
    for (const p of providers) compiled.push(compileProvider(p, deps));
  } catch (err) {
    for (const c of compiled) c.jwks?.close();
    throw err;
  }
  // Several providers may share an issuer (one IdP, two audiences): they are tried in config order.
  const byIssuer = new Map<string, CompiledProvider[]>();
  providers.forEach((p, i) => byIssuer.set(p.issuer, [...(byIssuer.get(p.issuer) ?? []), compiled[i]]));
  const cacheSize = deps.cacheSize ?? DEFAULT_CACHE_SIZE;
  const sources = new Map(providers.map((p, i) => [keySetSource(p), compiled[i]]));
  const handedOver = new Set<JwksKeySet>();
  const cache = cacheSize > 0 ? new LRUCache<string, CachedIdentity>({ max: cacheSize }) : null;

  function decode(token: string): { alg: unknown; crit: unknown; iss: unknown } {
    try {
      const header = decodeProtectedHeader(token);
      return { alg: header.alg, crit: header.crit, iss: decodeJwt(token).iss };
    } catch {
      throw malformed();
    }
  }

  async function verifyWith(p: CompiledProvider, token: string, alg: string): Promise<JWTPayload> {
    // Checked before any key lookup, so a disallowed alg can never cause a JWKS fetch.
    if (!p.algorithms.has(alg)) throw invalid('the token signing algorithm is not allowed', 'alg_not_allowed');
    const options = { ...p.options, currentDate: new Date(clock.now()) };
    try {
      return (await jwtVerify(token, p.getKey, options)).payload;
    } catch (err) {
      if (!(err instanceof errors.JWKSMultipleMatchingKeys)) throw toProxyError(err, p.name, logger);
      // A token without kid against a set with several keys of its type: try each (jose's documented way).
      for await (const key of err) {
        try {
          return (await jwtVerify(token, key, options)).payload;
        } catch (inner) {
          if (!(inner instanceof errors.JWSSignatureVerificationFailed)) throw toProxyError(inner, p.name, logger);
        }
      }
      throw invalid('the token signature is invalid', 'bad_signature');
    }
  }

  async function verify(token: string, only: ReadonlySet<string> | null = null): Promise<Identity> {
    const { alg, crit, iss } = decode(token);
    if (typeof alg !== 'string') throw malformed();
    // We implement no JWS extension, so any critical one must be refused (RFC 7515 section 4.1.11).
    if (crit !== undefined) throw invalid('the token requires an unsupported header extension (crit)', 'unsupported_crit');
    const all = typeof iss === 'string' ? byIssuer.get(iss) : undefined;
    const candidates = only ? all?.filter((p) => only.has(p.name)) : all;
    if (!candidates?.length) throw invalid('the token issuer is not trusted', 'unknown_issuer');
    let firstError: ProxyError | undefined;
    for (const p of candidates) {
      try {
        return p.toIdentity(await verifyWith(p, token, alg));
      } catch (err) {
        const e = toProxyError(err, p.name, logger);
        // With shared issuers, "wrong audience" from one provider says less than another's specific error.
        if (!firstError || (firstError.reason === 'wrong_audience' && e.reason !== 'wrong_audience')) firstError = e;
      }
    }
    throw firstError as ProxyError;
  }

  const byName = new Map(compiled.map((c) => [c.name, c]));
  function remember(key: string, identity: Identity): void {
    const now = clock.now();
    const provider = byName.get(identity.keyId);
    const validUntil = Math.min(identity.expiresAt ?? now, now + (provider?.cacheTtlMs ?? 0));
    const jwks = provider?.jwks ?? null;
    if (cache && validUntil > now) cache.set(key, { identity, validUntil, jwks, generation: jwks?.generation ?? 0 });
  }

  /** A cache entry still to be trusted: within its time, and no key of its provider's JWKS dropped since. */
  function fresh(hit: CachedIdentity | undefined): hit is CachedIdentity {
    return hit !== undefined && hit.validUntil > clock.now() && (hit.jwks === null || hit.jwks.generation === hit.generation);
  }

  async function verifyAndRemember(token: string, key: string): Promise<Identity> {
    const identity = await verify(token);
    if (cache) remember(key, identity);
    return identity;
  }

  /** Provider names by provider, of every provider sharing its issuer (config order). */
  const sameIssuer = new Map(compiled.map((c, i) => [c.name, byIssuer.get(providers[i].issuer)!.map((p) => p.name)]));

  /**
   * The token's identity (config order) is from a provider the route does not take. Providers sharing its issuer
   * that the route does take get their own try (one IdP, two audiences: a token for both passes a route of
   * either); such an identity is cached apart, under the token and its provider, so the config-order entry stays.
   * Without such a provider, or when none of them accepts the token, the identity stands and the route refuses it.
   */
  function forRoute(token: string, key: string, accepted: ReadonlySet<string> | null, identity: Identity): Identity | Promise<Identity> {
    if (accepted === null || accepted.has(identity.keyId)) return identity;
    const others = sameIssuer.get(identity.keyId)?.filter((name) => accepted.has(name)) ?? [];
    if (others.length === 0) return identity;
    for (const name of others) {
      const hit = cache?.get(`${key} ${name}`);
      if (fresh(hit)) return hit.identity;
    }
    return verify(token, accepted).then(
      (own) => {
        if (cache) remember(`${key} ${own.keyId}`, own);
        return own;
      },
      () => identity,
    );
  }

  return {
    kind: 'jwt',
    providerNames: Object.freeze(compiled.map((c) => c.name)),
    authenticate(credential: Credential, accepted: ReadonlySet<string> | null = null): Identity | Promise<Identity> {
      if (credential.kind !== 'jwt') return Promise.reject(invalid('this credential is not a JWT', 'wrong_credential_kind'));
      const token = credential.token;
      const key = cache ? hash('sha256', token, 'base64url') : '';
      const hit = cache?.get(key);
      // The injected clock decides expiry (not lru-cache's TTL, which runs on the real one), so it agrees with jose.
      if (fresh(hit)) {
        metrics?.countTokenCache('hit');
        return forRoute(token, key, accepted, hit.identity);
      }
      if (hit) cache?.delete(key);
      if (cache) metrics?.countTokenCache('miss');
      const verified = verifyAndRemember(token, key);
      return accepted === null ? verified : verified.then((identity) => forRoute(token, key, accepted, identity));
    },
    ready: () => compiled.every((c) => c.jwks === null || c.jwks.ready()),
    async whenLoaded(): Promise<void> {
      await Promise.all(compiled.map((c) => c.jwks?.whenLoaded()));
    },
    adoptKeySet(source: string): JwksKeySet | null {
      const jwks = sources.get(source)?.jwks ?? null;
      if (jwks) {
        handedOver.add(jwks);
        jwks.adopted();
      }
      return jwks;
    },
    close(): void {
      for (const c of compiled) if (c.jwks && !handedOver.has(c.jwks)) c.jwks.close();
    },
  };
}
