// Redis rate-limit store: every bucket of a request decided in one atomic Lua script, exact across
// replicas; the requests of one event-loop turn share one script call (one round trip); bounded by a
// command timeout, reconnecting on its own.
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

// The arithmetic of gcra.ts (gcra, peek and carryOver) transcribed to Lua, in integer microseconds (see
// there for why); test/support/store-contract.ts holds both stores to the same exact numbers. A bucket is
// held as "TAT:interval" (µs), with a TTL until it is full again; a bare "TAT" (written before intervals
// were kept) is taken as charged under the current interval.
// One call decides several requests, one after the other, each all-or-nothing over its own buckets.
// KEYS: the bucket keys of every request, in order. ARGV[1]: the deadline in Redis TIME µs, or ''.
// ARGV[2]: the number of requests. Then per request: its now in µs, or '' to use Redis TIME (so
// replicas whose clocks disagree still share one timeline), its bucket count n, and n pairs of limit
// and window (ms).
// Returns {-1} when Redis runs the call after its deadline: the sender gave up on it at its command
// timeout (a hung Redis) and has answered those requests already, so nothing is decided or charged.
// Otherwise, per request, {allowed, remaining1, resetMs1, retryAfterMs1, remaining2, ...}; when
// refused, every bucket's uncharged state (gcra.ts peek), since nothing was written for it.
const CONSUME_LUA = `
local redis_now
local function time_now()
  if redis_now == nil then
    if redis.replicate_commands then redis.replicate_commands() end
    local t = redis.call('TIME')
    redis_now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  end
  return redis_now
end
if ARGV[1] ~= '' and time_now() > tonumber(ARGV[1]) then return {-1} end
local out = {}
local k = 0
local a = 3
for r = 1, tonumber(ARGV[2]) do
  local now
  if ARGV[a] == '' then
    now = time_now()
  else
    now = tonumber(ARGV[a])
  end
  local n = tonumber(ARGV[a + 1])
  a = a + 2
  local allowed = 1
  local charged = {}
  local uncharged = {}
  local pending = {}
  local pending_interval = {}
  for i = 1, n do
    local key = KEYS[k + i]
    local limit = tonumber(ARGV[a])
    local window = tonumber(ARGV[a + 1])
    a = a + 2
    local interval = math.max(1, math.floor(window * 1000 / limit + 0.5))
    local span = interval * limit
    local tat = pending[key]
    local held_interval = pending_interval[key]
    if tat == nil then
      local held = redis.call('GET', key)
      if held then
        local sep = string.find(held, ':', 1, true)
        if sep then
          tat = tonumber(string.sub(held, 1, sep - 1))
          held_interval = tonumber(string.sub(held, sep + 1))
        else
          tat = tonumber(held)
        end
      end
    end
    if tat ~= nil and tat > now and held_interval ~= nil and held_interval ~= interval then
      tat = now + math.floor((tat - now) / held_interval * interval + 0.5)
      if pending[key] == nil then
        redis.call('SET', key, string.format('%.0f:%.0f', tat, interval), 'PX', math.max(1, math.ceil((tat - now) / 1000)))
      else
        pending[key] = tat
        pending_interval[key] = interval
      end
    end
    local base = now
    if tat ~= nil and tat >= now then base = tat end
    local new_tat = base + interval
    table.insert(uncharged, math.max(0, math.floor((span - (base - now)) / interval)))
    table.insert(uncharged, math.ceil((base - now) / 1000))
    table.insert(uncharged, math.max(0, math.ceil((base + interval - now - span) / 1000)))
    if new_tat - now <= span then
      pending[key] = new_tat
      pending_interval[key] = interval
      table.insert(charged, math.floor((span - (new_tat - now)) / interval))
      table.insert(charged, math.ceil((new_tat - now) / 1000))
      table.insert(charged, 0)
    else
      allowed = 0
    end
  end
  k = k + n
  local decided = charged
  if allowed == 0 then
    decided = uncharged
  else
    for key, tat in pairs(pending) do
      -- The key lives exactly until its bucket is full again; after that its absence means full.
      redis.call('SET', key, string.format('%.0f:%.0f', tat, pending_interval[key]), 'PX', math.max(1, math.ceil((tat - now) / 1000)))
    end
  end
  table.insert(out, allowed)
  for _, v in ipairs(decided) do table.insert(out, v) end
end
return out
`;

// Gives back one unit of each bucket in KEYS: the charges of a call whose answer came back after the sender's
// command timeout, when it had already answered those requests (503, or admitted uncounted). One unit is one
// emission interval of the TAT as held now ("TAT:interval"); a bucket that falls back to full is deleted, as a
// full one is absent. ARGV[1]: now in µs, or '' for Redis TIME.
const REFUND_LUA = `
local now
if ARGV[1] == '' then
  if redis.replicate_commands then redis.replicate_commands() end
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end
for i = 1, #KEYS do
  local held = redis.call('GET', KEYS[i])
  local sep = held and string.find(held, ':', 1, true)
  if sep then
    local interval = tonumber(string.sub(held, sep + 1))
    local tat = tonumber(string.sub(held, 1, sep - 1)) - interval
    if tat <= now then
      redis.call('DEL', KEYS[i])
    else
      redis.call('SET', KEYS[i], string.format('%.0f:%.0f', tat, interval), 'PX', math.max(1, math.ceil((tat - now) / 1000)))
    end
  end
end
return #KEYS
`;

/**
 * How long ioredis itself waits for an answer. A consume gives up after commandTimeout by its own timer, so that an
 * answer arriving later is still read, and its charges refunded; past this, a late answer is dropped unread.
 */
const LATE_ANSWER_MS = 10_000;

/** While Redis is connected but not answering, how often a PING checks whether it answers again. */
const STALL_PROBE_MS = 250;
/** How often the offset between this host's clock and Redis TIME is measured again (clocks drift, and step). */
const CLOCK_SYNC_MS = 30_000;

/** This host's time in µs, on a monotonic clock (an NTP step here does not move it). */
const localMicros = (): number => Math.round((performance.timeOrigin + performance.now()) * 1000);
/**
 * Most requests one script call decides. A turn with more sends several calls: one long script would
 * hold Redis (single-threaded) from every other client for its whole run.
 */
const MAX_BATCH = 64;

interface Waiting {
  readonly buckets: readonly BucketRequest[];
  /** Microseconds of the injected clock at consume time, or '' for Redis TIME. */
  readonly now: string;
  readonly resolve: (decision: Decision) => void;
  readonly reject: (err: unknown) => void;
}

interface ConsumeClient extends Redis {
  gatehouseConsume(numKeys: number, ...args: string[]): Promise<number[]>;
  gatehouseRefund(numKeys: number, ...args: string[]): Promise<number>;
}

export class RedisStore implements RateLimitStore {
  private readonly client: ConsumeClient;
  private readonly options: RedisStoreOptions;
  private down = false;
  private closed = false;
  /** Connected but a command failed (a hung Redis times out without dropping the socket): not ready. */
  private stalled = false;
  private probe: NodeJS.Timeout | null = null;
  /**
   * Redis TIME minus this host's time, and the round trip of that measurement (µs), or null before the first.
   * A call carries the Redis time after which it must not run: its command timeout here, less one round trip.
   */
  private clockOffset: { offsetUs: number; rttUs: number } | null = null;
  private clockSync: NodeJS.Timeout | null = null;
  /** Consumes of this event-loop turn, sent together by flush. */
  private waiting: Waiting[] = [];

  constructor(options: RedisStoreOptions) {
    this.options = options;
    const client = new Redis(options.url, {
      commandTimeout: Math.max(LATE_ANSWER_MS, options.commandTimeoutMs),
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
    client.defineCommand('gatehouseRefund', { lua: REFUND_LUA });
    this.client = client as ConsumeClient;
    // Without an 'error' listener ioredis prints every failed reconnect; log once per outage instead.
    client.on('error', (err: Error) => this.markDown(err.message));
    client.on('reconnecting', () => this.markDown('connection lost'));
    client.on('ready', () => {
      if (this.down) this.options.logger?.info('rate-limit redis reconnected');
      this.down = false;
      this.stalled = false;
      this.syncClock();
    });
  }

  /** Measures the offset to Redis TIME now, then every CLOCK_SYNC_MS while connected. */
  private syncClock(): void {
    if (this.clockSync) clearTimeout(this.clockSync);
    this.clockSync = null;
    if (this.closed) return;
    const sent = localMicros();
    this.client.time().then(
      ([seconds, micros]) => {
        const received = localMicros();
        const redisUs = Number(seconds) * 1_000_000 + Number(micros);
        this.clockOffset = { offsetUs: redisUs - (sent + received) / 2, rttUs: received - sent };
      },
      () => {},
    );
    this.clockSync = setTimeout(() => this.syncClock(), CLOCK_SYNC_MS).unref();
  }

  /** The Redis time after which a call sent now would come back too late to be used, or '' before the first sync. */
  private deadline(): string {
    const clock = this.clockOffset;
    if (clock === null) return '';
    return String(Math.round(localMicros() + clock.offsetUs + this.options.commandTimeoutMs * 1000 - clock.rttUs));
  }

  /**
   * Queued until the end of this event-loop turn (setImmediate runs right after the turn's I/O
   * callbacks), then sent with every other consume of the turn as one script call: under load that
   * is one command, one write and one reply for many requests instead of one each. A lone request
   * still goes out in the same turn, so no request waits for another.
   */
  consume(buckets: readonly BucketRequest[]): Promise<Decision> {
    if (buckets.length === 0) return Promise.resolve({ allowed: true, buckets: [] });
    const now = this.options.clock ? String(toMicros(this.options.clock.now())) : '';
    return new Promise<Decision>((resolve, reject) => {
      if (this.waiting.length === 0) setImmediate(this.flush);
      this.waiting.push({ buckets, now, resolve, reject });
      if (this.waiting.length === MAX_BATCH) this.flush();
    });
  }

  private readonly flush = (): void => {
    const batch = this.waiting;
    if (batch.length === 0) return;
    this.waiting = [];
    const keys: string[] = [];
    const args: string[] = [this.deadline(), String(batch.length)];
    for (const { buckets, now } of batch) {
      args.push(now, String(buckets.length));
      for (const b of buckets) {
        keys.push(this.options.keyPrefix + b.key);
        args.push(String(b.limit), String(b.windowMs));
      }
    }
    let answered = false;
    const fail = (failure: StoreUnavailableError) => {
      answered = true;
      if (this.client.status === 'ready') this.markStalled();
      for (const w of batch) w.reject(failure);
    };
    const timer = setTimeout(() => fail(new StoreUnavailableError(`rate-limit redis: no answer within ${this.options.commandTimeoutMs}ms`)), this.options.commandTimeoutMs);
    this.client.gatehouseConsume(keys.length, ...keys, ...args).then(
      (reply) => {
        clearTimeout(timer);
        if (!answered) this.decided(batch, reply);
        else this.refund(batch, reply);
      },
      (err: Error) => {
        clearTimeout(timer);
        if (!answered) fail(new StoreUnavailableError(`rate-limit redis: ${err.message}`, { cause: err }));
      },
    );
  };

  /**
   * An answer that came back after commandTimeout, when its requests had been answered already as the store
   * failing: whatever it charged is given back, so those requests cost nothing (SPEC section 5: a refused request
   * consumes nothing; with onError allow, an admitted one was not counted either). Best effort: if Redis cannot
   * be reached for the refund, the charges stand.
   */
  private refund(batch: readonly Waiting[], reply: number[]): void {
    if (reply[0] === -1) return; // Redis ran it after its deadline: it charged nothing
    const keys: string[] = [];
    let at = 0;
    for (const { buckets } of batch) {
      if (reply[at] === 1) for (const b of buckets) keys.push(this.options.keyPrefix + b.key);
      at += 1 + 3 * buckets.length;
    }
    if (keys.length > 0) this.client.gatehouseRefund(keys.length, ...keys, batch[0].now).catch(() => {});
  }

  private decided(batch: readonly Waiting[], reply: number[]): void {
    if (this.stalled) this.answering();
    if (reply[0] === -1) {
      // Redis judged the call late, yet its answer came back in time: the clock offset is off (a clock stepped).
      // Calls go without a deadline until it is measured again.
      this.clockOffset = null;
      this.syncClock();
      const failure = new StoreUnavailableError('rate-limit redis: the call reached Redis after its deadline');
      for (const w of batch) w.reject(failure);
      return;
    }
    let at = 0;
    for (const { buckets, resolve } of batch) {
      const allowed = reply[at] === 1;
      const states = new Array<BucketState>(buckets.length);
      for (let i = 0; i < buckets.length; i++) {
        states[i] = { remaining: reply[at + 1 + 3 * i], resetMs: reply[at + 2 + 3 * i], retryAfterMs: reply[at + 3 + 3 * i] };
      }
      at += 1 + 3 * buckets.length;
      resolve({ allowed, buckets: states });
    }
  }

  ready(): boolean {
    // The flag, because the status stays 'ready' for a moment after QUIT is answered.
    return !this.closed && !this.stalled && this.client.status === 'ready';
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.probe) clearTimeout(this.probe);
    if (this.clockSync) clearTimeout(this.clockSync);
    if (this.client.status === 'end') return;
    // QUIT within commandTimeout, as any command: a hung Redis must not hold a shutdown for ioredis's longer wait.
    let timer: NodeJS.Timeout | undefined;
    const gaveUp = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), this.options.commandTimeoutMs)));
    try {
      const quitting = this.client.quit();
      quitting.catch(() => {}); // given up on below: its rejection when the socket is dropped is expected
      if ((await Promise.race([quitting, gaveUp])) === 'late') this.client.disconnect();
    } catch {
      // Not connected (quit cannot be sent): drop the socket and stop reconnecting.
      this.client.disconnect();
    } finally {
      clearTimeout(timer);
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
