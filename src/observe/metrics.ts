// Prometheus series of SPEC section 8, in a registry per process (tests make their own).
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { LatencyHistogram } from './latency-histogram.js';

/** What the upstream gauges read of an upstream's line (pipeline/upstream-queue.ts). */
export interface UpstreamLoad {
  readonly active: number;
  readonly waiting: number;
}

/**
 * Counts of the series touched on every request are kept in plain fields and maps and handed to prom-client only
 * when /metrics is scraped: its inc() hashes the label object on each call, which showed in the profile.
 */
export class Metrics {
  readonly registry = new Registry();
  /** route ('' when none matched) -> status -> requests answered. */
  private readonly requestCounts = new Map<string, Map<number, number>>();
  private readonly tokenCacheCounts = { hit: 0, miss: 0 };
  readonly requests: Counter<'route' | 'status'> = new Counter({
    name: 'gatehouse_requests_total',
    help: 'Requests answered, by route and status',
    labelNames: ['route', 'status'] as const,
    registers: [this.registry],
    collect: () => {
      this.requests.reset();
      for (const [route, byStatus] of this.requestCounts) {
        for (const [status, count] of byStatus) this.requests.inc({ route, status }, count);
      }
    },
  });
  readonly authFailures = new Counter({
    name: 'gatehouse_auth_failures_total',
    help: 'Refused credentials, by reason',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly rateLimitRefusals = new Counter({
    name: 'gatehouse_rate_limit_refusals_total',
    help: 'Requests refused by a rate-limit policy',
    labelNames: ['policy'] as const,
    registers: [this.registry],
  });
  readonly rateLimitStoreErrors = new Counter({
    name: 'gatehouse_rate_limit_store_errors_total',
    help: 'Rate-limit store calls that failed or timed out, by the onError outcome',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly upstreamLatency = new LatencyHistogram(
    'gatehouse_upstream_duration_seconds',
    'Time from forwarding a request until the upstream response headers arrived',
    'upstream',
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    this.registry,
  );
  readonly jwksFetches = new Counter({
    name: 'gatehouse_jwks_fetches_total',
    help: 'JWKS fetches, by provider and outcome (ok | error)',
    labelNames: ['provider', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly reloads = new Counter({
    name: 'gatehouse_config_reloads_total',
    help: 'Config reloads, by outcome (ok | invalid | restart_required)',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly verifiedTokenCache: Counter<'result'> = new Counter({
    name: 'gatehouse_verified_token_cache_total',
    help: 'Verified-token cache lookups, by result (hit | miss)',
    labelNames: ['result'] as const,
    registers: [this.registry],
    collect: () => {
      this.verifiedTokenCache.reset();
      this.verifiedTokenCache.inc({ result: 'hit' }, this.tokenCacheCounts.hit);
      this.verifiedTokenCache.inc({ result: 'miss' }, this.tokenCacheCounts.miss);
    },
  });
  /** Requests being handled; the gateway counts, the gauge reads it when scraped. */
  requestsInFlight = 0;
  readonly inFlight: Gauge = new Gauge({
    name: 'gatehouse_requests_in_flight',
    help: 'Requests being handled',
    registers: [this.registry],
    collect: () => {
      this.inFlight.set(this.requestsInFlight);
    },
  });

  /** The upstream lines by name, set by the gateway. */
  upstreamQueues: () => Iterable<readonly [string, UpstreamLoad]> = () => [];
  readonly upstreamActive: Gauge<'upstream'> = new Gauge({
    name: 'gatehouse_upstream_requests_active',
    help: 'Requests sent to the upstream and not finished yet (at most maxConnections)',
    labelNames: ['upstream'] as const,
    registers: [this.registry],
    collect: () => this.setUpstreamGauge(this.upstreamActive, (q) => q.active),
  });
  readonly upstreamWaiting: Gauge<'upstream'> = new Gauge({
    name: 'gatehouse_upstream_requests_waiting',
    help: 'Requests waiting for a free upstream connection (at most maxPending)',
    labelNames: ['upstream'] as const,
    registers: [this.registry],
    collect: () => this.setUpstreamGauge(this.upstreamWaiting, (q) => q.waiting),
  });

  private setUpstreamGauge(gauge: Gauge<'upstream'>, count: (queue: UpstreamLoad) => number): void {
    gauge.reset();
    for (const [upstream, queue] of this.upstreamQueues()) gauge.set({ upstream }, count(queue));
  }

  constructor(options: { defaults?: boolean } = {}) {
    if (options.defaults) collectDefaultMetrics({ register: this.registry, prefix: 'gatehouse_' });
  }

  countRequest(route: string, status: number): void {
    let byStatus = this.requestCounts.get(route);
    if (byStatus === undefined) this.requestCounts.set(route, (byStatus = new Map()));
    byStatus.set(status, (byStatus.get(status) ?? 0) + 1);
  }

  countTokenCache(result: 'hit' | 'miss'): void {
    this.tokenCacheCounts[result]++;
  }
}
