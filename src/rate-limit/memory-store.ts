// In-process rate-limit store: GCRA TATs in an LRU bounded by key count; exact within one process.
import { LRUCache } from 'lru-cache';
import { systemClock, type Clock } from '../clock.js';
import { gcra, peek, toMicros } from './gcra.js';
import type { BucketRequest, BucketState, Decision, RateLimitStore } from './store.js';

export interface MemoryStoreOptions {
  /** Most keys held; the least recently used is evicted first (that key starts over with a full bucket). */
  readonly maxKeys: number;
  readonly clock?: Clock;
}

export class MemoryStore implements RateLimitStore {
  private readonly tats: LRUCache<string, number>;
  private readonly clock: Clock;

  constructor(options: MemoryStoreOptions) {
    if (!Number.isInteger(options.maxKeys) || options.maxKeys < 1) {
      throw new RangeError(`maxKeys must be a positive integer, got ${options.maxKeys}`);
    }
    // No lru-cache TTL: it runs on its own clock, not ours. A stale TAT is harmless (gcra treats a
    // past TAT as a full bucket) and the key bound caps memory either way.
    this.tats = new LRUCache({ max: options.maxKeys });
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
    const pending = new Map<string, number>();
    const seen: (number | undefined)[] = [];
    const charged: BucketState[] = [];
    let allowed = true;
    for (const { key, limit, windowMs } of buckets) {
      const tat = pending.get(key) ?? this.tats.get(key);
      const result = gcra(tat, nowUs, limit, windowMs);
      seen.push(tat);
      if (result.allowed) pending.set(key, result.newTatUs);
      else allowed = false;
      charged.push({ remaining: result.remaining, resetMs: result.resetMs, retryAfterMs: result.retryAfterMs });
    }
    if (!allowed) {
      // Nothing is charged, so every bucket reports its state as it stands.
      return { allowed, buckets: buckets.map((b, i) => peek(seen[i], nowUs, b.limit, b.windowMs)) };
    }
    for (const [key, tat] of pending) this.tats.set(key, tat);
    return { allowed, buckets: charged };
  }
}
