// Validation of the `rateLimit` block: store, Redis settings, policies and their plan/tenant overrides.
import type { Node } from 'yaml';
import { POSITIVE, TIMER } from './duration.js';
import { MapReader, type ReadContext, record } from './reader.js';
import type { LimitOverride, PolicyConfig, RateLimitConfig } from './types.js';

const BY = ['tenant', 'subject', 'key', 'ip'] as const;

export function readRateLimit(cx: ReadContext, root: MapReader): RateLimitConfig {
  const r = root.map('rateLimit');
  const store = r?.oneOf('store', ['memory', 'redis'] as const, 'memory') ?? 'memory';
  const maxKeys = r?.int('maxKeys', 100_000, 1, 100_000_000) ?? 100_000;
  const rd = r?.map('redis');
  const redis = {
    url: rd?.str('url', 'redis://127.0.0.1:6379') ?? '',
    keyPrefix: rd?.str('keyPrefix', 'gatehouse:') ?? '',
    commandTimeoutMs: rd?.duration('commandTimeout', 100, TIMER) ?? 100,
    onError: rd?.oneOf('onError', ['allow', 'deny'] as const, 'allow') ?? 'allow',
  };
  if (!/^rediss?:\/\//.test(redis.url)) cx.issues.at(rd?.get('url') ?? rd?.anchor, 'rateLimit.redis.url: must be a redis:// or rediss:// URL');
  rd?.done();
  const headers = r?.oneOf('headers', ['both', 'ietf', 'legacy', 'none'] as const, 'both') ?? 'both';

  const policies = record<PolicyConfig>();
  const p = r?.map('policies');
  for (const [name, node] of p?.entries() ?? []) {
    const pr = MapReader.of(cx, node, `rateLimit.policies.${name}`, node);
    const limit = pr?.int('limit', undefined, 1, 1_000_000_000);
    const windowMs = pr?.duration('window', undefined, POSITIVE);
    const by = pr?.oneOf('by', BY);
    pr?.done();
    if (limit && windowMs && by) policies[name] = { name, limit, windowMs, by };
  }
  const plans = readOverrides(cx, r?.map('plans') ?? null, 'rateLimit.plans', policies);
  const tenants = readOverrides(cx, r?.map('tenants') ?? null, 'rateLimit.tenants', policies);
  r?.done();
  return { store, maxKeys, redis, headers, policies, plans, tenants };
}

function readOverrides(
  cx: ReadContext,
  section: MapReader | null,
  path: string,
  policies: Record<string, PolicyConfig>,
): Record<string, Record<string, LimitOverride>> {
  const out = record<Record<string, LimitOverride>>();
  for (const [owner, node] of section?.entries() ?? []) {
    const o = MapReader.of(cx, node, `${path}.${owner}`, node);
    out[owner] = record<LimitOverride>();
    for (const [policy, pnode, keyNode] of o?.entries() ?? []) {
      const override = readOverride(cx, pnode, `${path}.${owner}.${policy}`, keyNode);
      if (!policies[policy]) cx.issues.at(keyNode, `${path}.${owner}.${policy}: no policy named "${policy}"`);
      else if (override) out[owner][policy] = override;
    }
  }
  return out;
}

function readOverride(cx: ReadContext, node: Node | null, path: string, keyNode: Node): LimitOverride | undefined {
  const o = MapReader.of(cx, node, path, keyNode);
  const limit = o?.int('limit', undefined, 1, 1_000_000_000);
  const windowMs = o?.duration('window', undefined, POSITIVE);
  o?.done();
  return limit && windowMs ? { limit, windowMs } : undefined;
}
