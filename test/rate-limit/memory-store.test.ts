import t from 'tap';
import { ManualClock } from '../../src/clock.js';
import { MemoryStore } from '../../src/rate-limit/memory-store.js';
import { storeContract } from '../support/store-contract.js';

storeContract(t, 'memory', async (clock) => new MemoryStore({ maxKeys: 1000, clock }));

const ONE = { limit: 1, windowMs: 60_000 };

t.test('memory: holds at most maxKeys keys, evicting the least recently used', async (t) => {
  const store = new MemoryStore({ maxKeys: 3, clock: new ManualClock() });
  for (const key of ['a', 'b', 'c']) await store.consume([{ key, ...ONE }]);
  // Touch `a` so `b` becomes the least recently used.
  t.equal((await store.consume([{ key: 'a', ...ONE }])).allowed, false, 'a is spent');
  await store.consume([{ key: 'd', ...ONE }]);
  t.equal(store.size, 3);
  t.equal((await store.consume([{ key: 'b', ...ONE }])).allowed, true, 'b was evicted: it starts full');
  t.equal((await store.consume([{ key: 'a', ...ONE }])).allowed, false, 'a survived');
  t.equal(store.size, 3);
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
