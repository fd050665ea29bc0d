// Who the caller is, whatever credential proved it. Every authenticator resolves to this.
export interface Identity {
  readonly tenant: string;
  readonly subject: string;
  readonly role: string | null;
  readonly scopes: readonly string[];
  readonly plan: string | null;
  readonly method: 'jwt' | 'api-key';
  /** API key id, or JWT provider name. */
  readonly keyId: string;
  /** Epoch milliseconds, or null when the credential never expires. */
  readonly expiresAt: number | null;
  /** read-only API keys may only use GET, HEAD and OPTIONS. */
  readonly readOnly: boolean;
  /** The verified JWT payload (for claimHeaders); null for API keys. */
  readonly claims: Readonly<Record<string, unknown>> | null;
}

/**
 * API key ids and JWT provider names: sent as X-Auth-Key-Id and written in logs, so short, visible and without
 * anything a header, a log line or a YAML plain scalar would read differently.
 */
export const KEY_NAME = /^[A-Za-z0-9._:-]{1,128}$/;
export const KEY_NAME_RULE = '1-128 characters of A-Z a-z 0-9 . _ : -';

/**
 * Identity values become header values (identity.headers). An upstream must read back exactly what gatehouse
 * decided on: visible ASCII with inner spaces or tabs, never a control character (header injection), non-ASCII
 * text (no single reading in HTTP/1.1) or whitespace at either end (parsers trim it, so `alice ` would reach
 * the upstream as `alice`, another caller). Every authenticator refuses other values when it builds an Identity.
 */
const HEADER_VALUE = /^[\x21-\x7e](?:[\t\x20-\x7e]*[\x21-\x7e])?$/;
/** A scope is one token of a space-separated list: visible ASCII, no whitespace at all. */
const SCOPE = /^[\x21-\x7e]+$/;

/** Which identity field cannot be sent as it is (see HEADER_VALUE), or null when all can. */
export function unsafeIdentityField(v: {
  tenant: string;
  subject: string;
  role: string | null;
  scopes: readonly string[];
}): 'tenant' | 'subject' | 'role' | 'scopes' | null {
  if (!HEADER_VALUE.test(v.tenant)) return 'tenant';
  if (!HEADER_VALUE.test(v.subject)) return 'subject';
  if (v.role !== null && !HEADER_VALUE.test(v.role)) return 'role';
  if (!v.scopes.every((s) => SCOPE.test(s))) return 'scopes';
  return null;
}
