import t from 'tap';
import { emissionIntervalUs, gcra, peek, toMicros } from '../../src/rate-limit/gcra.js';

const NOW = toMicros(Date.UTC(2026, 0, 1));
const S = 1_000_000; // one second in µs

t.test('the emission interval is window/limit in whole microseconds, never below 1', async (t) => {
  const cases: [limit: number, windowMs: number, intervalUs: number][] = [
    [10, 1000, 100_000],
    [3, 10_000, 3_333_333],
    [3, 2, 667],
    [7, 60_000, 8_571_429],
    [1, 1000, 1_000_000],
    [5_000_000, 1000, 1],
  ];
  for (const [limit, windowMs, intervalUs] of cases) {
    t.equal(emissionIntervalUs(limit, windowMs), intervalUs, `${limit} per ${windowMs} ms`);
  }
});

t.test('gcra decides one request from the stored TAT', async (t) => {
  // [what, tatUs, limit, windowMs, expected]
  const cases: [string, number | undefined, number, number, object][] = [
    ['a new key is admitted with limit-1 left', undefined, 10, 1000,
      { allowed: true, newTatUs: NOW + 100_000, remaining: 9, resetMs: 100, retryAfterMs: 0 }],
    ['a TAT in the past counts as a full bucket', NOW - 50 * S, 10, 1000,
      { allowed: true, newTatUs: NOW + 100_000, remaining: 9, resetMs: 100, retryAfterMs: 0 }],
    ['the last unit of a burst is admitted', NOW + 900_000, 10, 1000,
      { allowed: true, newTatUs: NOW + S, remaining: 0, resetMs: 1000, retryAfterMs: 0 }],
    ['an empty bucket refuses and keeps its TAT', NOW + S, 10, 1000,
      { allowed: false, newTatUs: NOW + S, remaining: 0, resetMs: 1000, retryAfterMs: 100 }],
    ['one µs short of a unit waits a whole ms, rounded up', NOW + 900_001, 10, 1000,
      { allowed: false, newTatUs: NOW + 900_001, remaining: 0, resetMs: 901, retryAfterMs: 1 }],
    ['half a bucket left', NOW + 400_000, 10, 1000,
      { allowed: true, newTatUs: NOW + 500_000, remaining: 5, resetMs: 500, retryAfterMs: 0 }],
    ['a limit of 1 refuses until the whole window has passed', NOW + 10 * S, 1, 10_000,
      { allowed: false, newTatUs: NOW + 10 * S, remaining: 0, resetMs: 10_000, retryAfterMs: 10_000 }],
    ['a TAT from a larger limit beyond this span refuses with 0 left', NOW + 30 * S, 10, 1000,
      { allowed: false, newTatUs: NOW + 30 * S, remaining: 0, resetMs: 30_000, retryAfterMs: 29_100 }],
  ];
  for (const [what, tat, limit, windowMs, expected] of cases) {
    t.same(gcra(tat, NOW, limit, windowMs), expected, what);
  }
});

t.test('a fresh key bursts to exactly the limit even when window/limit is not whole', async (t) => {
  // Float TATs drift here (window/limit added thousands of times); integer µs does not.
  for (const [limit, windowMs] of [[3, 10_000], [7, 60_000], [10_869, 999], [1000, 3_600_000]]) {
    let tat: number | undefined;
    let admitted = 0;
    for (let i = 0; i <= limit; i++) {
      const r = gcra(tat, NOW, limit, windowMs);
      if (!r.allowed) break;
      admitted++;
      tat = r.newTatUs;
    }
    t.equal(admitted, limit, `${limit} per ${windowMs} ms`);
  }
});

t.test('after a burst, exactly one unit arrives per interval', async (t) => {
  let tat: number | undefined;
  for (let i = 0; i < 4; i++) tat = gcra(tat, NOW, 4, 1000).newTatUs;
  const timeline: [atMs: number, allowed: boolean][] = [[0, false], [249, false], [250, true], [250, false], [500, true], [1000, true], [1000, true], [1000, false]];
  const seen = timeline.map(([atMs]) => {
    const r = gcra(tat, NOW + atMs * 1000, 4, 1000);
    if (r.allowed) tat = r.newTatUs;
    return [atMs, r.allowed];
  });
  t.same(seen, timeline);
});

t.test('peek reports a bucket without charging it', async (t) => {
  t.same(peek(undefined, NOW, 10, 1000), { remaining: 10, resetMs: 0, retryAfterMs: 0 }, 'new key is full');
  t.same(peek(NOW + 300_000, NOW, 10, 1000), { remaining: 7, resetMs: 300, retryAfterMs: 0 }, 'partly used');
  t.same(peek(NOW + S, NOW, 10, 1000), { remaining: 0, resetMs: 1000, retryAfterMs: 100 }, 'empty');
  t.same(peek(NOW + 30 * S, NOW, 10, 1000), { remaining: 0, resetMs: 30_000, retryAfterMs: 29_100 }, 'over-full');
});

t.test('milliseconds convert to whole microseconds', async (t) => {
  t.equal(toMicros(1), 1000);
  t.equal(toMicros(Date.UTC(2026, 0, 1)), 1_767_225_600_000_000);
  t.equal(toMicros(0.0004), 0);
});

t.test('carryOver keeps the units owed when the emission interval changes', async (t) => {
  const { carryOver } = await import('../../src/rate-limit/gcra.js');
  t.equal(carryOver(undefined, 10, NOW, 20), undefined, 'a new key stays new');
  t.equal(carryOver(NOW - 5, 10, NOW, 20), NOW - 5, 'a full bucket stays full');
  t.equal(carryOver(NOW, 10, NOW, 20), NOW, 'nothing owed: nothing to carry');
  t.equal(carryOver(NOW + 30, 10, NOW, 10), NOW + 30, 'same interval: unchanged');
  t.equal(carryOver(NOW + 30, 10, NOW, 20), NOW + 60, '3 units owed at 20');
  t.equal(carryOver(NOW + 25, 10, NOW, 3), NOW + 8, '2.5 units at 3 = 7.5, rounded half up');
});
