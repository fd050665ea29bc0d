// The one contract every RateLimitStore passes, unchanged: memory and Redis run these same tests.
//
// Windows are ten seconds or more, so the Redis key TTLs (which run on real time while the manual
// clock drives the buckets) never expire in the middle of a test.
import type { Test } from 'tap';
import { ManualClock } from '../../src/clock.js';
import type { BucketRequest, BucketState, RateLimitStore } from '../../src/rate-limit/store.js';

type MakeStore = (clock: ManualClock) => Promise<RateLimitStore>;

/** limit 5 over 10 s: one unit every 2 s. */
const FIVE_PER_10S = { limit: 5, windowMs: 10_000 };
const bucket = (key: string, shape = FIVE_PER_10S): BucketRequest => ({ key, ...shape });
const state = (remaining: number, resetMs: number, retryAfterMs: number): BucketState => ({
  remaining,
  resetMs,
  retryAfterMs,
});

export function storeContract(t: Test, name: string, makeStore: MakeStore): void {
  // Each test gets its own store and clock; the store is closed when the test ends.
  const setup = async (t: Test) => {
    const clock = new ManualClock();
    const store = await makeStore(clock);
    t.teardown(() => store.close());
    return { clock, store };
  };

  t.test(`${name}: a fresh key bursts to exactly the limit, then is refused`, async (t) => {
    const { store } = await setup(t);
    const seen = [];
    for (let i = 0; i < 5; i++) seen.push(await store.consume([bucket('burst')]));
    t.same(seen, [
      { allowed: true, buckets: [state(4, 2000, 0)] },
      { allowed: true, buckets: [state(3, 4000, 0)] },
      { allowed: true, buckets: [state(2, 6000, 0)] },
      { allowed: true, buckets: [state(1, 8000, 0)] },
      { allowed: true, buckets: [state(0, 10_000, 0)] },
    ]);
    t.same(await store.consume([bucket('burst')]), { allowed: false, buckets: [state(0, 10_000, 2000)] });
  });

  t.test(`${name}: one unit refills every window/limit`, async (t) => {
    const { clock, store } = await setup(t);
    for (let i = 0; i < 5; i++) await store.consume([bucket('refill')]);
    clock.advance(1999);
    t.same(await store.consume([bucket('refill')]), { allowed: false, buckets: [state(0, 8001, 1)] });
    clock.advance(1);
    t.same(await store.consume([bucket('refill')]), { allowed: true, buckets: [state(0, 10_000, 0)] });
    clock.advance(4000);
    t.same(await store.consume([bucket('refill')]), { allowed: true, buckets: [state(1, 8000, 0)] });
    clock.advance(60_000);
    t.same(await store.consume([bucket('refill')]), { allowed: true, buckets: [state(4, 2000, 0)] });
  });

  t.test(`${name}: a refused request consumes nothing`, async (t) => {
    const { clock, store } = await setup(t);
    for (let i = 0; i < 5; i++) await store.consume([bucket('refused')]);
    for (let i = 0; i < 10; i++) {
      t.same(await store.consume([bucket('refused')]), { allowed: false, buckets: [state(0, 10_000, 2000)] });
    }
    clock.advance(2000);
    t.same(await store.consume([bucket('refused')]), { allowed: true, buckets: [state(0, 10_000, 0)] });
  });

  t.test(`${name}: when one bucket refuses, the buckets that would pass are not charged`, async (t) => {
    const { store } = await setup(t);
    const wide = bucket('multi:wide');
    const narrow = bucket('multi:narrow', { limit: 1, windowMs: 10_000 });
    t.same(await store.consume([wide, narrow]), { allowed: true, buckets: [state(4, 2000, 0), state(0, 10_000, 0)] });
    // Both buckets report their state as it stands: `wide` still has 4, `narrow` needs 10 s.
    t.same(await store.consume([wide, narrow]), {
      allowed: false,
      buckets: [state(4, 2000, 0), state(0, 10_000, 10_000)],
    });
    t.same(await store.consume([narrow, wide]), {
      allowed: false,
      buckets: [state(0, 10_000, 10_000), state(4, 2000, 0)],
    });
    t.same(await store.consume([wide]), { allowed: true, buckets: [state(3, 4000, 0)] });
  });

  t.test(`${name}: keys are independent`, async (t) => {
    const { store } = await setup(t);
    for (let i = 0; i < 5; i++) await store.consume([bucket('tenant:a')]);
    t.equal((await store.consume([bucket('tenant:a')])).allowed, false);
    t.same(await store.consume([bucket('tenant:b')]), { allowed: true, buckets: [state(4, 2000, 0)] });
  });

  t.test(`${name}: each key keeps its own limit and window`, async (t) => {
    const { store } = await setup(t);
    const two = bucket('limits:two', { limit: 2, windowMs: 10_000 });
    const hundred = bucket('limits:hundred', { limit: 100, windowMs: 60_000 });
    t.same(await store.consume([two, hundred]), { allowed: true, buckets: [state(1, 5000, 0), state(99, 600, 0)] });
    t.same(await store.consume([two, hundred]), { allowed: true, buckets: [state(0, 10_000, 0), state(98, 1200, 0)] });
    t.same(await store.consume([hundred]), { allowed: true, buckets: [state(97, 1800, 0)] });
  });

  t.test(`${name}: waiting retryAfterMs is enough to be admitted, one ms less is not`, async (t) => {
    const { clock, store } = await setup(t);
    // 3 per 10 s does not divide evenly: one unit every 3333.333 ms, rounded up in what is reported.
    const third = bucket('retry', { limit: 3, windowMs: 10_000 });
    t.same(
      [await store.consume([third]), await store.consume([third]), await store.consume([third])],
      [
        { allowed: true, buckets: [state(2, 3334, 0)] },
        { allowed: true, buckets: [state(1, 6667, 0)] },
        { allowed: true, buckets: [state(0, 10_000, 0)] },
      ],
    );
    const refused = await store.consume([third]);
    t.same(refused, { allowed: false, buckets: [state(0, 10_000, 3334)] });
    clock.advance(refused.buckets[0].retryAfterMs - 1);
    t.same(await store.consume([third]), { allowed: false, buckets: [state(0, 6667, 1)] });
    clock.advance(1);
    t.same(await store.consume([third]), { allowed: true, buckets: [state(0, 10_000, 0)] });
  });

  t.test(`${name}: units already used stay used when a key's limit or window changes (a reload, an override)`, async (t) => {
    const { clock, store } = await setup(t);
    const three = bucket('change', { limit: 3, windowMs: 60_000 });
    const five = bucket('change', { limit: 5, windowMs: 60_000 });
    for (let i = 0; i < 3; i++) await store.consume([three]);
    t.equal((await store.consume([three])).allowed, false, '3 of 3 used');
    // Raised to 5: the 3 used count as 3 of 5 (12 s each now), so exactly 2 more.
    t.same(await store.consume([five]), { allowed: true, buckets: [state(1, 48_000, 0)] }, '4 of 5');
    t.same(await store.consume([five]), { allowed: true, buckets: [state(0, 60_000, 0)] }, '5 of 5');
    t.same(await store.consume([five]), { allowed: false, buckets: [state(0, 60_000, 12_000)] });
    // Lowered back to 3: 5 owed, more than 3 hold; nothing until the debt is under 3 units (20 s each).
    t.same(await store.consume([three]), { allowed: false, buckets: [state(0, 100_000, 60_000)] }, 'lowered: 5 used of 3');
    // 30 s later (1.5 units earned back at 20 s each), under a longer window: 3.5 units owed at 40 s each.
    clock.advance(30_000);
    const slower = bucket('change', { limit: 3, windowMs: 120_000 });
    t.same(await store.consume([slower]), { allowed: false, buckets: [state(0, 140_000, 60_000)] }, '3.5 of 3 still owed');
    clock.advance(59_999);
    t.same(await store.consume([slower]), { allowed: false, buckets: [state(0, 80_001, 1)] }, 'earned back at the new rate');
    clock.advance(1);
    t.same(await store.consume([slower]), { allowed: true, buckets: [state(0, 120_000, 0)] }, 'admitted when Retry-After said');
    // A fresh bucket under one shape is a fresh bucket under any other.
    t.same(await store.consume([bucket('change-fresh', { limit: 3, windowMs: 60_000 })]), { allowed: true, buckets: [state(2, 20_000, 0)] });
  });

    t.test(`${name}: a request with no buckets is admitted`, async (t) => {
    const { store } = await setup(t);
    t.same(await store.consume([]), { allowed: true, buckets: [] });
  });
}
