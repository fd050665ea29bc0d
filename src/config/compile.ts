// Compiles a validated config into a frozen Plan: matchers, header sets, verifiers, limiters, upstream pools.
import { ApiKeyAuthenticator } from '../auth/api-keys.js';
import { FailedAuthGuard } from '../auth/failed-auth.js';
import { createJwtAuthenticator, type JwtAuthenticator } from '../auth/jwt.js';
import type { CredentialSources } from '../auth/credential.js';
import type { Clock } from '../clock.js';
import { clientIpResolver, peerTrust, type ClientIpResolver, type PeerTrust } from '../http/client-ip.js';
import type { Logger } from '../observe/logger.js';
import type { Metrics } from '../observe/metrics.js';
import { compilePattern, type Matchable } from '../pipeline/match-route.js';
import { HeaderPlan, trustsProxy } from '../pipeline/sanitize-headers.js';
import { compileUpstream, type Upstream } from '../pipeline/forward.js';
import { UpstreamQueue } from '../pipeline/upstream-queue.js';
import { compilePolicy, type CompiledPolicy } from '../pipeline/rate-limit.js';
import type { RateLimitStore } from '../rate-limit/store.js';
import type { GatehouseConfig, RouteAuth, RouteConfig } from './types.js';

/** Long-lived parts shared by every plan of a process (they survive reloads). */
export interface Runtime {
  readonly clock: Clock;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly store: RateLimitStore;
  /**
   * One line per upstream name for the life of the process (pipeline/upstream-queue.ts): a changed upstream's new
   * pool, or one dropped by a reload and brought back by a later one, counts the requests the old one still runs.
   */
  readonly upstreamQueues: Map<string, UpstreamQueue>;
}

export interface CompiledRoute extends Matchable {
  readonly config: RouteConfig;
  readonly auth: RouteAuth;
  /** Provider names a JWT must come from, or null for any configured provider. */
  readonly jwtProviders: ReadonlySet<string> | null;
  readonly requireScopes: readonly string[];
  readonly requireRoles: ReadonlySet<string> | null;
  readonly policies: readonly CompiledPolicy[];
  readonly upstream: Upstream | null;
  readonly respondIdentity: boolean;
}

export interface Plan {
  /** The validated config, but for the API key entries: those live on only compiled, in `apiKeys`. */
  readonly config: GatehouseConfig;
  readonly routes: readonly CompiledRoute[];
  readonly headers: HeaderPlan;
  readonly sources: CredentialSources;
  readonly jwt: JwtAuthenticator | null;
  readonly apiKeys: ApiKeyAuthenticator | null;
  readonly failedAuth: FailedAuthGuard | null;
  readonly clientIp: ClientIpResolver;
  readonly trustsPeer: PeerTrust;
  readonly upstreams: ReadonlyMap<string, Upstream>;
  readonly runtime: Runtime;
}

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

/**
 * Builds a plan. Stateful parts whose config did not change are taken over from `previous`
 * (JWKS caches, the failed-auth counters, upstream pools), so a reload keeps them warm.
 */
export function compilePlan(config: GatehouseConfig, runtime: Runtime, previous?: Plan): Plan {
  const { clock, logger, metrics } = runtime;
  const providers = config.auth.jwt.providers;
  const jwt =
    previous?.jwt && same(previous.config.auth.jwt, config.auth.jwt)
      ? previous.jwt
      : providers.length
        ? createJwtAuthenticator(providers, { clock, metrics, logger, cacheSize: config.auth.jwt.cacheSize, predecessor: previous?.jwt })
        : null;
  const apiKeys = config.auth.apiKeys ? new ApiKeyAuthenticator(config.auth.apiKeys.keys, { clock }) : null;
  const failedAuth =
    previous?.failedAuth && same(previous.config.auth.failedAuth, config.auth.failedAuth)
      ? previous.failedAuth
      : config.auth.failedAuth
        ? new FailedAuthGuard(config.auth.failedAuth, { clock })
        : null;
  const upstreams = new Map<string, Upstream>();
  for (const [name, u] of Object.entries(config.upstreams)) {
    const old = previous?.upstreams.get(name);
    let queue = runtime.upstreamQueues.get(name);
    if (queue === undefined) runtime.upstreamQueues.set(name, (queue = new UpstreamQueue()));
    upstreams.set(name, old && same(old.config, u) ? old : compileUpstream(u, metrics, queue));
  }
  const routes = config.routes.map((r) => compileRoute(r, config, upstreams));
  const sources = config.auth.apiKeys?.sources ?? [];
  const plan: Plan = {
    config: withoutKeyEntries(config),
    routes,
    headers: new HeaderPlan(config.identity, sources.includes('x-api-key'), trustsProxy(config.server.trustProxy)),
    sources: { authorization: sources.includes('authorization'), xApiKey: sources.includes('x-api-key') },
    jwt,
    apiKeys,
    failedAuth,
    clientIp: clientIpResolver(config.server.trustProxy),
    trustsPeer: peerTrust(config.server.trustProxy),
    upstreams,
    runtime,
  };
  return Object.freeze(plan);
}

/** A large key table would otherwise be held twice for the life of the plan: as entries and as compiled records. */
function withoutKeyEntries(config: GatehouseConfig): GatehouseConfig {
  const apiKeys = config.auth.apiKeys;
  if (!apiKeys || apiKeys.keys.length === 0) return config;
  return { ...config, auth: { ...config.auth, apiKeys: { ...apiKeys, keys: [] } } };
}

function compileRoute(r: RouteConfig, config: GatehouseConfig, upstreams: Map<string, Upstream>): CompiledRoute {
  const limits = config.rateLimit;
  return Object.freeze({
    name: r.name,
    config: r,
    matches: compilePattern(r.path),
    methods: r.methods ? new Set(r.methods) : null,
    auth: r.auth,
    jwtProviders: r.auth.kind === 'some' && r.auth.jwtProviders !== 'all' ? new Set(r.auth.jwtProviders) : null,
    requireScopes: r.require.scopes,
    requireRoles: r.require.roles.length ? new Set(r.require.roles) : null,
    policies: r.rateLimit.map((name) => compilePolicy(limits.policies[name], limits)),
    upstream: r.respond ? null : (upstreams.get(r.upstream) ?? null),
    respondIdentity: r.respond === 'identity',
  });
}

/**
 * Releases the JWKS timers and upstream pools of `retired` plans that no `live` plan shares. A pool
 * can pass from plan to plan across reloads, so it is closed once, by the last plan that held it.
 */
export async function retirePlans(retired: readonly Plan[], live: readonly Plan[], how: 'close' | 'destroy' = 'close'): Promise<void> {
  const kept = new Set<unknown>(live.flatMap((p) => [p.jwt, ...p.upstreams.values()]));
  const jwts = new Set(retired.map((p) => p.jwt).filter((j): j is JwtAuthenticator => j !== null && !kept.has(j)));
  for (const jwt of jwts) jwt.close();
  const pools = new Set(retired.flatMap((p) => [...p.upstreams.values()]).filter((u) => !kept.has(u)));
  await Promise.all([...pools].map((u) => (how === 'close' ? u.pool.close() : u.pool.destroy())));
}
