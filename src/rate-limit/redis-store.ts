// Redis rate-limit store: every bucket of a request decided in one atomic Lua script (one round
// trip), exact across replicas; bounded by a command timeout, reconnecting on its own.
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import { toMicros } from './gcra.js';
import { StoreUnavailableError, type BucketRequest, type BucketState, type Decision, type RateLimitStore } from './store.js';

export interface RedisStoreOptions {
  readonly url: string;
  /** Prepended to every bucket key, so several proxies or tests can share one Redis. */
  readonly keyPrefix: string;
  /** Upper bound on one consume, including a dead or unreachable Redis. */
  readonly commandTimeoutMs: number;
  /** Only for tests: replaces Redis TIME so a manual clock drives the buckets. */
  readonly clock?: Clock;
  readonly logger?: Logger;
}

// The arithmetic of gcra.ts (gcra and peek) transcribed to Lua, in integer microseconds (see there
// for why); test/support/store-contract.ts holds both stores to the same exact numbers.
// KEYS: bucket keys. ARGV[1]: now in µs, or '' to use Redis TIME, so replicas whose clocks
// disagree still share one timeline. ARGV[2k], ARGV[2k+1]: limit and window (ms) of KEYS[k].
// Returns {allowed, remaining1, resetMs1, retryAfterMs1, remaining2, ...}; when refused, every
// bucket's uncharged state (gcra.ts peek), since nothing was written.
const CONSUME_LUA = `
local now
if ARGV[1] == '' then
  if redis.replicate_commands then redis.replicate_commands() end
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end
local allowed = 1
local charged = {}
local uncharged = {}
local pending = {}
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[2 * i])
  local window = tonumber(ARGV[2 * i + 1])
  local interval = math.max(1, math.floor(window * 1000 / limit + 0.5))
  local span = interval * limit
  local tat = pending[key]
  if tat == nil then tat = tonumber(redis.call('GET', key)) end
  local base = now
  if tat ~= nil and tat >= now then base = tat end
  local new_tat = base + interval
  table.insert(uncharged, math.max(0, math.floor((span - (base - now)) / interval)))
  table.insert(uncharged, math.ceil((base - now) / 1000))
  table.insert(uncharged, math.max(0, math.ceil((base + interval - now - span) / 1000)))
  if new_tat - now <= span then
    pending[key] = new_tat
    table.insert(charged, math.floor((span - (new_tat - now)) / interval))
    table.insert(charged, math.ceil((new_tat - now) / 1000))
    table.insert(charged, 0)
  else
    allowed = 0
  end
end
if allowed == 0 then
  table.insert(uncharged, 1, 0)
  return uncharged
end
for key, tat in pairs(pending) do
  -- The key lives exactly until its bucket is full again; after that its absence means full.
  redis.call('SET', key, string.format('%.0f', tat), 'PX', math.max(1, math.ceil((tat - now) / 1000)))
end
table.insert(charged, 1, 1)
return charged
`;

/** While Redis is connected but not answering, how often a PING checks whether it answers again. */
const STALL_PROBE_MS = 250;

interface ConsumeClient extends Redis {
  gatehouseConsume(numKeys: number, ...args: string[]): Promise<number[]>;
}

export class RedisStore implements RateLimitStore {
  private readonly client: ConsumeClient;
  private readonly options: RedisStoreOptions;
  private down = false;
  private closed = false;
  /** Connected but a command failed (a hung Redis times out without dropping the socket): not ready. */
  private stalled = false;
  private probe: NodeJS.Timeout | null = null;

  constructor(options: RedisStoreOptions) {
    this.options = options;
    const client = new Redis(options.url, {
      commandTimeout: options.commandTimeoutMs,
      // Without a connection, reject at once instead of queueing until commandTimeout (or forever).
      enableOfflineQueue: false,
      // Never resend a consume after a dropped connection: it may already have been charged.
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      connectTimeout: Math.max(1000, options.commandTimeoutMs),
      retryStrategy: (times) => Math.min(times * 50, 1000),
    });
    // EVALSHA, falling back to EVAL on NOSCRIPT (after a Redis restart, for instance).
    client.defineCommand('gatehouseConsume', { lua: CONSUME_LUA });
    this.client = client as ConsumeClient;
    // Without an 'error' listener ioredis prints every failed reconnect; log once per outage instead.
    client.on('error', (err: Error) => this.markDown(err.message));
    client.on('reconnecting', () => this.markDown('connection lost'));
    client.on('ready', () => {
      if (this.down) this.options.logger?.info('rate-limit redis reconnected');
      this.down = false;
      this.stalled = false;
    });
  }

  async consume(buckets: readonly BucketRequest[]): Promise<Decision> {
    if (buckets.length === 0) return { allowed: true, buckets: [] };
    const keys = buckets.map((b) => this.options.keyPrefix + b.key);
    const now = this.options.clock ? String(toMicros(this.options.clock.now())) : '';
    const args = buckets.flatMap((b) => [String(b.limit), String(b.windowMs)]);
    let reply: number[];
    try {
      reply = await this.client.gatehouseConsume(keys.length, ...keys, now, ...args);
    } catch (err) {
      if (this.client.status === 'ready') this.markStalled();
      throw new StoreUnavailableError(`rate-limit redis: ${(err as Error).message}`, { cause: err });
    }
    if (this.stalled) this.answering();
    const states: BucketState[] = buckets.map((_, i) => ({
      remaining: reply[1 + 3 * i],
      resetMs: reply[2 + 3 * i],
      retryAfterMs: reply[3 + 3 * i],
    }));
    return { allowed: reply[0] === 1, buckets: states };
  }

  ready(): boolean {
    // The flag, because the status stays 'ready' for a moment after QUIT is answered.
    return !this.closed && !this.stalled && this.client.status === 'ready';
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.probe) clearTimeout(this.probe);
    if (this.client.status === 'end') return;
    try {
      await this.client.quit();
    } catch {
      // Not connected (quit cannot be sent): drop the socket and stop reconnecting.
      this.client.disconnect();
    }
  }

  /**
   * A command failed on a live connection: most likely Redis hangs (the socket stays open, so
   * ioredis never reconnects). Readiness must say so, and must recover even when no request comes
   * (a load balancer stops sending to an unready replica), so a PING probes until Redis answers.
   */
  private markStalled(): void {
    if (this.stalled || this.closed) return;
    this.stalled = true;
    this.markDown('not answering within commandTimeout');
    const check = () => {
      this.probe = null;
      this.client.ping().then(
        () => this.answering(),
        () => {
          if (this.stalled && !this.closed) this.probe = setTimeout(check, STALL_PROBE_MS).unref();
        },
      );
    };
    this.probe = setTimeout(check, STALL_PROBE_MS).unref();
  }

  /** Redis answered on the connection that had stalled. */
  private answering(): void {
    if (!this.stalled || this.closed) return;
    this.stalled = false;
    if (this.down && this.client.status === 'ready') {
      this.down = false;
      this.options.logger?.info('rate-limit redis answering again');
    }
  }

  private markDown(reason: string): void {
    if (this.down || this.closed) return;
    this.down = true;
    this.options.logger?.warn({ reason }, 'rate-limit redis unavailable; reconnecting');
  }
}
