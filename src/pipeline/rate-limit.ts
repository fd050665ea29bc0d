// Stage: charge one unit of every policy of the route, all or nothing; refuse with 429 and Retry-After.
import type { Identity } from '../auth/identity.js';
import type { PolicyConfig, RateLimitConfig } from '../config/types.js';
import { addressBlock } from '../http/client-ip.js';
import { ProxyError } from '../http/errors.js';
import { rateLimitHeaders, retryAfterSeconds } from '../rate-limit/headers.js';
import type { BucketRequest, Decision } from '../rate-limit/store.js';
import type { Exchange } from './exchange.js';

interface Limit {
  readonly limit: number;
  readonly windowMs: number;
}

export interface CompiledPolicy {
  readonly name: string;
  readonly by: PolicyConfig['by'];
  /** The bucket this request charges: the effective limit for its tenant/plan, keyed by the policy's dimension. */
  bucket(identity: Identity | null, clientIp: string): BucketRequest;
}

export function compilePolicy(policy: PolicyConfig, limits: RateLimitConfig): CompiledPolicy {
  const overrides = (table: Record<string, Record<string, Limit>>) =>
    new Map(Object.entries(table).flatMap(([owner, byPolicy]) => (byPolicy[policy.name] ? [[owner, byPolicy[policy.name]] as const] : [])));
  const tenants = overrides(limits.tenants);
  const plans = overrides(limits.plans);
  const base: Limit = { limit: policy.limit, windowMs: policy.windowMs };
  const prefix = `${policy.name}:${policy.by}:`;
  const dimension = dimensionOf(policy.by);
  return {
    name: policy.name,
    by: policy.by,
    bucket(identity, clientIp) {
      const effective = (identity && (tenants.get(identity.tenant) ?? (identity.plan !== null ? plans.get(identity.plan) : undefined))) || base;
      return { key: prefix + dimension(identity, clientIp), limit: effective.limit, windowMs: effective.windowMs };
    },
  };
}

/**
 * A part of a composite bucket key, length-prefixed: tenants and subjects come from tokens and may hold any
 * separator, and tenant `a/b` with subject `c` must not share a bucket with tenant `a` and subject `b/c`.
 */
const part = (s: string): string => `${s.length}:${s}`;

/** Subjects (and JWT callers under `key`) are namespaced by tenant: two tenants may both have a user "alice". */
function dimensionOf(by: PolicyConfig['by']): (identity: Identity | null, ip: string) => string {
  switch (by) {
    case 'ip':
      return (_identity, ip) => addressBlock(ip);
    case 'tenant':
      return (identity) => identity!.tenant;
    case 'subject':
      return (identity) => `${part(identity!.tenant)}/${identity!.subject}`;
    case 'key':
      // An API key id is unique in the table; a JWT caller is its provider, tenant and subject.
      return (identity) =>
        identity!.method === 'api-key' ? `key/${identity!.keyId}` : `jwt/${part(identity!.keyId)}/${part(identity!.tenant)}/${identity!.subject}`;
  }
}

/** Charges the route's policies; synchronous when the store answers without a promise (the memory store). */
export function rateLimit(ex: Exchange): void | Promise<void> {
  const policies = ex.route!.policies;
  if (policies.length === 0) return;
  const buckets = policies.map((p) => p.bucket(ex.identity, ex.clientIp));
  let decision: Decision | Promise<Decision>;
  try {
    decision = ex.plan.runtime.store.consume(buckets);
  } catch (err) {
    return storeFailed(ex, err);
  }
  if (decision instanceof Promise) {
    return decision.then(
      (d) => decide(ex, buckets, d),
      (err: unknown) => storeFailed(ex, err),
    );
  }
  decide(ex, buckets, decision);
}

function storeFailed(ex: Exchange, err: unknown): void {
  const { metrics, logger } = ex.plan.runtime;
  const onError = ex.plan.config.rateLimit.redis.onError;
  metrics.rateLimitStoreErrors.inc({ outcome: onError });
  logger.warn({ err: (err as Error).message, request_id: ex.requestId }, 'rate-limit store unavailable');
  if (onError === 'allow') return;
  throw new ProxyError('service_unavailable', 'the rate-limit store is unavailable', 'store_unavailable');
}

function decide(ex: Exchange, buckets: readonly BucketRequest[], decision: Decision): void {
  const policies = ex.route!.policies;
  const limits = ex.plan.config.rateLimit;
  let least = 0;
  for (let i = 1; i < buckets.length; i++) if (decision.buckets[i].remaining < decision.buckets[least].remaining) least = i;
  if (limits.headers !== 'none') {
    const b = buckets[least];
    ex.responseHeaders = rateLimitHeaders(limits.headers, policies[least].name, b.limit, b.windowMs, decision.buckets[least]);
  }
  if (decision.allowed) return;
  let wait = 0;
  const refused: string[] = [];
  decision.buckets.forEach((state, i) => {
    if (state.retryAfterMs > 0) {
      refused.push(policies[i].name);
      ex.plan.runtime.metrics.rateLimitRefusals.inc({ policy: policies[i].name });
      wait = Math.max(wait, state.retryAfterMs);
    }
  });
  throw new ProxyError('rate_limit_exceeded', `rate limit exceeded (policy ${refused.join(', ')})`, `rate_limited:${refused.join(',')}`, {
    'retry-after': String(retryAfterSeconds(wait)),
  });
}
