// In-process rate-limit store: GCRA TATs in an LRU bounded by key count; exact within one process.
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import { systemClock, type Clock } from '../clock.js';
import { carryOver, emissionIntervalUs, gcra, peek, toMicros } from './gcra.js';
import type { BucketRequest, BucketState, Decision, RateLimitStore } from './store.js';

export interface MemoryStoreOptions {
  /**
   * Most keys held. A new key takes the place of a bucket that is full again (its absence means the same),
   * looked for among the least recently used; never of a bucket still in use, which would reset its limit.
   */
  readonly maxKeys: number;
  readonly clock?: Clock;
  readonly logger?: Logger;
}

/** How many of the least recently used keys a new key may look at for a full bucket to replace. */
const EVICTION_SCAN = 16;

/** A bucket as held: its TAT (µs) and the emission interval it was charged under (see gcra.ts carryOver). */
interface Tat {
  tatUs: number;
  intervalUs: number;
}

export class MemoryStore implements RateLimitStore {
  private readonly tats: LRUCache<string, Tat>;
  private readonly clock: Clock;
  private readonly logger: Logger | undefined;
  /** Charges not recorded because every bucket looked at was still in use (the table is full of live buckets). */
  untracked = 0;

  constructor(options: MemoryStoreOptions) {
    if (!Number.isInteger(options.maxKeys) || options.maxKeys < 1) {
      throw new RangeError(`maxKeys must be a positive integer, got ${options.maxKeys}`);
    }
    // No lru-cache TTL: it runs on its own clock, not ours. A stale TAT is harmless (gcra treats a
    // past TAT as a full bucket) and the key bound caps memory either way.
    this.tats = new LRUCache({ max: options.maxKeys });
    this.logger = options.logger;
    this.clock = options.clock ?? systemClock;
  }

  consume(buckets: readonly BucketRequest[]): Decision {
    return this.consumeNow(buckets);
  }

  /** Number of keys held; for tests and metrics. */
  get size(): number {
    return this.tats.size;
  }

  ready(): boolean {
    return true;
  }

  close(): Promise<void> {
    this.tats.clear();
    return Promise.resolve();
  }

  // Synchronous from first read to last write, so no other consume can interleave: that is what
  // makes it exact and all-or-nothing without locks.
  private consumeNow(buckets: readonly BucketRequest[]): Decision {
    const nowUs = toMicros(this.clock.now());
    // Pending TATs, so two buckets that share a key within one request see each other's charge.
    const pending = new Map<string, Tat>();
    const seen: (number | undefined)[] = [];
    const charged: BucketState[] = [];
    let allowed = true;
    for (const { key, limit, windowMs } of buckets) {
      const intervalUs = emissionIntervalUs(limit, windowMs);
      const held = pending.get(key) ?? this.tats.get(key);
      const tat = held && carryOver(held.tatUs, held.intervalUs, nowUs, intervalUs);
      if (held && held.intervalUs !== intervalUs) {
        // Held from now on as carried over, charged or not: the units owed then earn back at the new rate.
        held.tatUs = tat!;
        held.intervalUs = intervalUs;
      }
      const result = gcra(tat, nowUs, limit, windowMs);
      seen.push(tat);
      if (result.allowed) pending.set(key, { tatUs: result.newTatUs, intervalUs });
      else allowed = false;
      charged.push({ remaining: result.remaining, resetMs: result.resetMs, retryAfterMs: result.retryAfterMs });
    }
    if (!allowed) {
      // Nothing is charged, so every bucket reports its state as it stands.
      return { allowed, buckets: buckets.map((b, i) => peek(seen[i], nowUs, b.limit, b.windowMs)) };
    }
    for (const [key, tat] of pending) {
      if (this.tats.size >= this.tats.max && !this.tats.has(key) && !this.makeRoom(nowUs)) this.notRecorded();
      else this.tats.set(key, tat);
    }
    return { allowed, buckets: charged };
  }

  /** Counts a charge left unrecorded, and says so in the log at the 1st, 10th, 100th... */
  private notRecorded(): void {
    this.untracked++;
    if (Number.isInteger(Math.log10(this.untracked))) {
      this.logger?.warn({ maxKeys: this.tats.max, untracked: this.untracked }, 'rate-limit memory store full of buckets in use; new keys go unrecorded (raise rateLimit.maxKeys)');
    }
  }

  /**
   * Frees one place for a new key by dropping a bucket that is full again, if one is among the least recently
   * used. lru-cache alone would drop the least recently used bucket whatever its state, so a client could reset
   * its own spent bucket by touching maxKeys fresh ones (new addresses on a `by: ip` route). When every bucket
   * looked at is still in use, the new key goes unrecorded: its request is decided as a fresh bucket's, and
   * every bucket in use keeps its state.
   */
  private makeRoom(nowUs: number): boolean {
    let looked = 0;
    for (const key of this.tats.rkeys()) {
      if (this.tats.peek(key)!.tatUs <= nowUs) {
        this.tats.delete(key);
        return true;
      }
      if (++looked === EVICTION_SCAN) break;
    }
    return false;
  }
}
