// Rate-limit response headers (SPEC section 5): IETF RateLimit / RateLimit-Policy, legacy X-RateLimit-*.
import type { BucketState } from './store.js';

export type RateLimitHeaderMode = 'both' | 'ietf' | 'legacy' | 'none';

/** Whole seconds, rounded up: a client that waits this long is never early. */
function seconds(ms: number): number {
  return Math.max(0, Math.ceil(ms / 1000));
}

/** Policy names as structured-field strings, by name: there are as many as the config has policies. */
const quoted = new Map<string, string>();

/** The policy name as a structured-field string (RFC 8941 sf-string): quoted, `\` and `"` escaped. */
function sfString(name: string): string {
  let q = quoted.get(name);
  if (q === undefined) {
    q = `"${name.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
    // Bounded even if names were made up at run time; config names never come close.
    if (quoted.size >= 1024) quoted.clear();
    quoted.set(name, q);
  }
  return q;
}

/** Headers for one policy's bucket state; names lowercase, as node:http sends them. */
export function rateLimitHeaders(
  mode: RateLimitHeaderMode,
  policyName: string,
  limit: number,
  windowMs: number,
  state: BucketState,
): Record<string, string> {
  const headers: Record<string, string> = {};
  const reset = String(seconds(state.resetMs));
  if (mode === 'ietf' || mode === 'both') {
    const name = sfString(policyName);
    headers['ratelimit-policy'] = `${name};q=${limit};w=${seconds(windowMs)}`;
    headers['ratelimit'] = `${name};r=${state.remaining};t=${reset}`;
  }
  if (mode === 'legacy' || mode === 'both') {
    headers['x-ratelimit-limit'] = String(limit);
    headers['x-ratelimit-remaining'] = String(state.remaining);
    headers['x-ratelimit-reset'] = reset;
  }
  return headers;
}

/** Retry-After for a refusal: whole seconds, rounded up, at least 1 (0 would invite a busy loop). */
export function retryAfterSeconds(ms: number): number {
  return Math.max(1, Math.ceil(ms / 1000));
}
