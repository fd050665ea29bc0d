// Which JWS algorithms a provider may use with which key, checked once at config time and per JWKS key.
import { createPublicKey, type KeyObject } from 'node:crypto';
import type { JwtProviderConfig } from '../config/types.js';

export const SYMMETRIC_ALGORITHMS: ReadonlySet<string> = new Set(['HS256', 'HS384', 'HS512']);

/** The key an asymmetric algorithm needs: JWK key type and, for curves, the curve. */
interface KeyShape {
  readonly kty: 'RSA' | 'EC' | 'OKP';
  readonly crv?: string;
}

export const ASYMMETRIC_ALGORITHMS: ReadonlyMap<string, KeyShape> = new Map<string, KeyShape>([
  ['RS256', { kty: 'RSA' }],
  ['RS384', { kty: 'RSA' }],
  ['RS512', { kty: 'RSA' }],
  ['PS256', { kty: 'RSA' }],
  ['PS384', { kty: 'RSA' }],
  ['PS512', { kty: 'RSA' }],
  ['ES256', { kty: 'EC', crv: 'P-256' }],
  ['ES384', { kty: 'EC', crv: 'P-384' }],
  ['ES512', { kty: 'EC', crv: 'P-521' }],
  ['EdDSA', { kty: 'OKP', crv: 'Ed25519' }],
  ['Ed25519', { kty: 'OKP', crv: 'Ed25519' }],
]);

/** jose refuses RSA keys below this size; we refuse them earlier, where the operator can see why. */
export const MIN_RSA_BITS = 2048;

/** True when a JWK (as published in a JWKS) can verify tokens of `alg`. */
export function jwkFitsAlgorithm(jwk: { kty?: unknown; crv?: unknown; alg?: unknown }, alg: string): boolean {
  const shape = ASYMMETRIC_ALGORITHMS.get(alg);
  if (!shape || jwk.kty !== shape.kty) return false;
  if (shape.crv !== undefined && jwk.crv !== shape.crv) return false;
  return jwk.alg === undefined || jwk.alg === alg;
}

/** The JWK shape of a Node public key, so PEM keys and JWKS keys are checked by one rule. */
function shapeOfKeyObject(key: KeyObject): { kty: string; crv?: string } {
  const jwk = key.export({ format: 'jwk' });
  return { kty: String(jwk.kty), crv: typeof jwk.crv === 'string' ? jwk.crv : undefined };
}

function keySources(p: JwtProviderConfig): string[] {
  return (['jwksUrl', 'jwksFile', 'publicKey', 'secret'] as const).filter((k) => p[k] !== undefined);
}

function checkPublicKey(pem: string, algorithms: readonly string[]): string[] {
  // A private key would "work" (Node derives the public half), but it must never sit in a proxy config.
  if (/PRIVATE KEY-----/.test(pem)) return ['publicKey: this is a private key; configure the public key instead'];
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch {
    return ['publicKey: not a valid PEM public key'];
  }
  const errors: string[] = [];
  const bits = key.asymmetricKeyDetails?.modulusLength;
  if (bits !== undefined && bits < MIN_RSA_BITS) {
    errors.push(`publicKey: RSA keys must have at least ${MIN_RSA_BITS} bits (this one has ${bits})`);
  }
  let shape: { kty: string; crv?: string };
  try {
    shape = shapeOfKeyObject(key);
  } catch {
    return [...errors, `publicKey: unsupported key type ${key.asymmetricKeyType ?? 'unknown'}`];
  }
  for (const alg of algorithms) {
    if (ASYMMETRIC_ALGORITHMS.has(alg) && !jwkFitsAlgorithm(shape, alg)) {
      errors.push(`algorithms: "${alg}" cannot be verified with this publicKey (a ${shape.kty}${shape.crv ? ` ${shape.crv}` : ''} key)`);
    }
  }
  return errors;
}

/**
 * Config-time checks that make algorithm confusion impossible: a shared secret only verifies HMAC
 * algorithms, a public key or JWKS only asymmetric ones, and "none" is never accepted.
 * Returns every problem found (empty when the provider is sound), for the config validator to show.
 */
export function validateProviderAlgorithms(p: JwtProviderConfig): string[] {
  const errors: string[] = [];
  const sources = keySources(p);
  if (sources.length !== 1) {
    errors.push(`exactly one of jwksUrl, jwksFile, publicKey, secret must be set (found ${sources.length ? sources.join(', ') : 'none'})`);
  }
  if (p.algorithms.length === 0) errors.push('algorithms: list at least one algorithm; there is no default');
  const symmetric = p.secret !== undefined;
  for (const alg of p.algorithms) {
    if (alg.toLowerCase() === 'none') {
      errors.push('algorithms: "none" is never accepted');
    } else if (SYMMETRIC_ALGORITHMS.has(alg)) {
      if (!symmetric) errors.push(`algorithms: "${alg}" is symmetric, but this provider verifies with a public key (${sources.join(', ')}); use an asymmetric algorithm`);
    } else if (ASYMMETRIC_ALGORITHMS.has(alg)) {
      if (symmetric) errors.push(`algorithms: "${alg}" is asymmetric, but this provider verifies with a shared secret; use HS256, HS384 or HS512`);
    } else {
      errors.push(`algorithms: "${alg}" is not a supported algorithm (supported: ${[...SYMMETRIC_ALGORITHMS, ...ASYMMETRIC_ALGORITHMS.keys()].join(', ')})`);
    }
  }
  if (symmetric && p.secret === '') errors.push('secret: must not be empty');
  if (p.publicKey !== undefined) errors.push(...checkPublicKey(p.publicKey, p.algorithms));
  return errors;
}
