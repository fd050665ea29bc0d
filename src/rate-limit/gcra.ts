// Pure GCRA (generic cell rate algorithm): one token-bucket decision from a stored TAT and the time.
//
// Time is integer microseconds, not fractional milliseconds: with float TATs the error of adding
// window/limit again and again grows past a millisecond at limits in the thousands, which turns
// "exactly `limit` at once" into `limit - 1`. Integers below 2^53 are exact in JS and in Redis Lua
// alike, so both stores reach the same decision bit for bit (redis-store.ts mirrors this file).
import type { BucketState } from './store.js';

/** The outcome for one bucket; durations (from BucketState) are whole milliseconds, rounded up. */
export interface GcraResult extends BucketState {
  readonly allowed: boolean;
  /** TAT to store when admitted (microseconds); the current TAT (or now) when refused. */
  readonly newTatUs: number;
}

/**
 * Emission interval in microseconds: one unit refills every `windowMs / limit`. Rounded to a whole
 * microsecond, so the bucket's span is `limit * interval` (within `limit` µs of `windowMs`), and a
 * fresh key always bursts to exactly `limit`.
 */
export function emissionIntervalUs(limit: number, windowMs: number): number {
  // floor(x + 0.5) rather than Math.round: the Lua copy can only do this, and both must agree.
  return Math.max(1, Math.floor((windowMs * 1000) / limit + 0.5));
}

/**
 * Charges one unit from a bucket of `limit` units refilled evenly over `windowMs`.
 * `tatUs` is the stored theoretical arrival time (undefined for a new key); `nowUs` the current time.
 * Refused requests change nothing: the result is then the bucket's state as it stands.
 */
export function gcra(tatUs: number | undefined, nowUs: number, limit: number, windowMs: number): GcraResult {
  const interval = emissionIntervalUs(limit, windowMs);
  const span = interval * limit;
  const base = startUs(tatUs, nowUs);
  const newTatUs = base + interval;
  if (newTatUs - nowUs > span) return { allowed: false, newTatUs: base, ...peek(tatUs, nowUs, limit, windowMs) };
  return {
    allowed: true,
    newTatUs,
    remaining: Math.floor((span - (newTatUs - nowUs)) / interval),
    resetMs: Math.ceil((newTatUs - nowUs) / 1000),
    retryAfterMs: 0,
  };
}

/**
 * The bucket's state without charging it: what a store reports for every bucket of a refused
 * request, including the buckets that would have admitted it (they were not charged either).
 */
export function peek(tatUs: number | undefined, nowUs: number, limit: number, windowMs: number): BucketState {
  const interval = emissionIntervalUs(limit, windowMs);
  const span = interval * limit;
  const base = startUs(tatUs, nowUs);
  return {
    // max(0, ...) because a TAT carried over from a larger limit can lie beyond this limit's span.
    remaining: Math.max(0, Math.floor((span - (base - nowUs)) / interval)),
    resetMs: Math.ceil((base - nowUs) / 1000),
    retryAfterMs: Math.max(0, Math.ceil((base + interval - nowUs - span) / 1000)),
  };
}

/**
 * A TAT stored under another emission interval (the key's limit or window changed: a reload, or a tenant's token
 * with another plan), carried over to `intervalUs`: the units still owed stay owed, each now taking the new
 * interval to earn back. So raising a limit from 3 to 5 after 3 requests admits 2 more, and lowering it keeps
 * what was spent. A past TAT (a full bucket) is full under any shape. The same operations in the same order as
 * the Lua copy in redis-store.ts (IEEE doubles both), so both round alike.
 */
export function carryOver(tatUs: number | undefined, tatIntervalUs: number, nowUs: number, intervalUs: number): number | undefined {
  if (tatUs === undefined || tatUs <= nowUs || tatIntervalUs === intervalUs) return tatUs;
  return nowUs + Math.floor(((tatUs - nowUs) / tatIntervalUs) * intervalUs + 0.5);
}

// A TAT in the past means the bucket is full; it never carries credit beyond `limit`.
function startUs(tatUs: number | undefined, nowUs: number): number {
  return tatUs === undefined || tatUs < nowUs ? nowUs : tatUs;
}

/** Milliseconds (as clocks give them) to the microseconds gcra() works in. */
export function toMicros(ms: number): number {
  return Math.round(ms * 1000);
}
