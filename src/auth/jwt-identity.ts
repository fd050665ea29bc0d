// Turns a verified JWT payload into an Identity, following the provider's claims mapping.
import type { JWTPayload } from 'jose';
import type { ClaimsMapping, JwtProviderConfig } from '../config/types.js';
import { unsafeIdentityField, type Identity } from './identity.js';
import { ProxyError } from '../http/errors.js';

type Payload = Readonly<Record<string, unknown>>;
type ClaimReader = (payload: Payload) => unknown;

/**
 * A claim name is first tried as one key, so namespaced claims such as
 * "https://example.com/org" (dots included) work; otherwise it is a dot path ("org.id").
 */
function compilePath(path: string): ClaimReader {
  const segments = path.split('.');
  return (payload) => {
    if (Object.hasOwn(payload, path)) return payload[path];
    let node: unknown = payload;
    for (const segment of segments) {
      if (typeof node !== 'object' || node === null || !Object.hasOwn(node, segment)) return undefined;
      node = (node as Record<string, unknown>)[segment];
    }
    return node;
  };
}

/** Identifiers may be numeric in some IdPs (org ids); anything else is treated as absent. */
function asIdentifier(value: unknown): string | null {
  if (typeof value === 'string') return value === '' ? null : value;
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  return null;
}

function asScopes(value: unknown): string[] {
  if (typeof value === 'string') return value.split(/\s+/).filter((s) => s !== '');
  if (Array.isArray(value)) return value.filter((s): s is string => typeof s === 'string' && s !== '');
  return [];
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

export type IdentityMapper = (payload: JWTPayload) => Identity;

/** The last second a JavaScript Date can hold. */
const MAX_EXP_S = 8.64e12;

/** Built once per provider so the hot path only runs the pre-split readers. */
export function compileIdentityMapper(provider: JwtProviderConfig): IdentityMapper {
  const read = Object.fromEntries(
    (Object.keys(provider.claims) as (keyof ClaimsMapping)[]).map((k) => [k, compilePath(provider.claims[k])]),
  ) as Record<keyof ClaimsMapping, ClaimReader>;
  return (payload) => {
    // JSON reads 1e400 as Infinity, and a Date ends at 8.64e12 s (year 275760): a token that never expires, or
    // outlives every date, is not one an IdP means to issue (and `respond: identity` could not write its expiry).
    if (!Number.isFinite(payload.exp) || (payload.exp as number) > MAX_EXP_S) throw new ProxyError('invalid_token', 'the token has an invalid claim', 'invalid_claims');
    const tenant = asIdentifier(read.tenant(payload)) ?? provider.defaultTenant;
    if (tenant === null) {
      throw new ProxyError('invalid_token', 'the token does not name a tenant', 'no_tenant');
    }
    const subject = asIdentifier(read.subject(payload));
    if (subject === null) {
      // Rate limits and audit lines key on the subject; an anonymous identity would merge callers.
      throw new ProxyError('invalid_token', 'the token does not name a subject', 'no_subject');
    }
    const role = asIdentifier(read.role(payload));
    const scopes = asScopes(read.scopes(payload));
    const unsafe = unsafeIdentityField({ tenant, subject, role, scopes });
    if (unsafe) throw new ProxyError('invalid_token', `the token's ${unsafe} holds characters not allowed in a header`, 'unsafe_identity_value');
    // The identity is cached and shared between requests, so nothing downstream may change it.
    return deepFreeze({
      tenant,
      subject,
      role,
      scopes,
      plan: asIdentifier(read.plan(payload)),
      method: 'jwt',
      keyId: provider.name,
      expiresAt: (payload.exp as number) * 1000,
      readOnly: false,
      claims: payload,
    } satisfies Identity);
  };
}
