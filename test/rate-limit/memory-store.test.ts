import t from 'tap';
import { pino } from 'pino';
import { ManualClock } from '../../src/clock.js';
import { MemoryStore } from '../../src/rate-limit/memory-store.js';
import { storeContract } from '../support/store-contract.js';

storeContract(t, 'memory', async (clock) => new MemoryStore({ maxKeys: 1000, clock }));

const ONE = { limit: 1, windowMs: 60_000 };

t.test('memory: holds at most maxKeys keys; a new key replaces a bucket that is full again, least recently used first', async (t) => {
  const clock = new ManualClock();
  const store = new MemoryStore({ maxKeys: 3, clock });
  for (const key of ['a', 'b', 'c']) await store.consume([{ key, ...ONE }]);
  clock.advance(60_000);
  // Every bucket is full again; spending `a` anew makes it the only one in use, and `b` the least recently used.
  t.equal((await store.consume([{ key: 'a', ...ONE }])).allowed, true);
  await store.consume([{ key: 'd', ...ONE }]);
  t.equal(store.size, 3);
  t.equal(store.untracked, 0, 'd took the place of b');
  t.equal((await store.consume([{ key: 'a', ...ONE }])).allowed, false, 'a, in use, survived');
  t.equal((await store.consume([{ key: 'd', ...ONE }])).allowed, false, 'd is recorded');
  t.equal(store.size, 3);
});

t.test('memory: a bucket still in use is never evicted: touching fresh keys cannot reset a spent one', async (t) => {
  const clock = new ManualClock();
  const lines: string[] = [];
  const store = new MemoryStore({ maxKeys: 3, clock, logger: pino({ level: 'info' }, { write: (line: string) => void lines.push(line) }) });
  t.equal((await store.consume([{ key: 'mine', ...ONE }])).allowed, true);
  t.equal((await store.consume([{ key: 'mine', ...ONE }])).allowed, false, 'spent');
  for (let i = 0; i < 50; i++) t.equal((await store.consume([{ key: `fresh-${i}`, ...ONE }])).allowed, true);
  t.equal(store.size, 3, 'the bound holds');
  t.equal(store.untracked, 48, 'past the bound, fresh keys go unrecorded');
  t.strictSame(lines.map((l) => JSON.parse(l).untracked), [1, 10], 'said in the log at the 1st and the 10th');
  t.equal((await store.consume([{ key: 'mine', ...ONE }])).allowed, false, 'still spent');
  clock.advance(60_000);
  t.equal((await store.consume([{ key: 'fresh-50', ...ONE }])).allowed, true);
  t.equal(store.untracked, 48, 'once buckets are full again, new keys take their places');
});

t.test('memory: a refused request adds no keys', async (t) => {
  const store = new MemoryStore({ maxKeys: 10, clock: new ManualClock() });
  await store.consume([{ key: 'spent', ...ONE }]);
  await store.consume([{ key: 'spent', ...ONE }, { key: 'fresh', ...ONE }]);
  t.equal(store.size, 1);
});

t.test('memory: is always ready, and close forgets every key', async (t) => {
  const store = new MemoryStore({ maxKeys: 10 });
  t.equal(store.ready(), true);
  await store.consume([{ key: 'k', ...ONE }]);
  await store.close();
  t.equal(store.size, 0);
});

t.test('memory: maxKeys must be a positive integer', async (t) => {
  for (const maxKeys of [0, -1, 1.5, Number.NaN]) {
    t.throws(() => new MemoryStore({ maxKeys }), RangeError, String(maxKeys));
  }
});
