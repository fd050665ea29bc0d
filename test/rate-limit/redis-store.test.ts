import t, { type Test } from 'tap';
import { Redis } from 'ioredis';
import { createServer as createNetServer, connect as netConnect, type AddressInfo } from 'node:net';
import { pino } from 'pino';
import { ManualClock } from '../../src/clock.js';
import { toMicros } from '../../src/rate-limit/gcra.js';
import { RedisStore, type RedisStoreOptions } from '../../src/rate-limit/redis-store.js';
import { StoreUnavailableError } from '../../src/rate-limit/store.js';
import { redisSkipReason, startRedisServer } from '../support/redis-server.js';
import { storeContract } from '../support/store-contract.js';

const skip = redisSkipReason();
if (skip) {
  t.plan(0, skip);
} else {
  const server = await startRedisServer();
  t.teardown(() => server.stop());

  let stores = 0;
  const open = async (options: Partial<RedisStoreOptions> = {}) => {
    const store = new RedisStore({
      url: server.url,
      keyPrefix: `test${++stores}:`,
      commandTimeoutMs: 1000,
      ...options,
    });
    await until(() => store.ready(), 5000, 'store connects');
    return store;
  };

  /** A store and a plain client on the same Redis, to look at what the store wrote; both closed with the test. */
  const openWithRaw = async (t: Test, options: Partial<RedisStoreOptions>) => {
    const store = await open(options);
    const raw = new Redis(server.url);
    t.teardown(async () => {
      await store.close();
      await raw.quit();
    });
    return { store, raw };
  };

  storeContract(t, 'redis', (clock) => open({ clock }));

  t.test('redis: two stores sharing Redis admit exactly the limit out of 200 concurrent requests', async (t) => {
    // No clock: both use Redis TIME. A window of an hour refills nothing during the test.
    const [a, b] = [await open({ keyPrefix: 'race:' }), await open({ keyPrefix: 'race:' })];
    t.teardown(() => Promise.all([a.close(), b.close()]));
    const hourly = { key: 'shared', limit: 100, windowMs: 3_600_000 };
    const decisions = await Promise.all(Array.from({ length: 200 }, (_, i) => (i % 2 ? a : b).consume([hourly])));
    const admitted = decisions.filter((d) => d.allowed);
    t.equal(admitted.length, 100);
    // Each unit handed out once: the remaining counts are 99..0 with no repeats.
    const remaining = admitted.map((d) => d.buckets[0].remaining).sort((x, y) => x - y);
    t.same(remaining, Array.from({ length: 100 }, (_, i) => i));
  });

  t.test('redis: the consumes of one event-loop turn share one script call, each decided exactly', async (t) => {
    const clock = new ManualClock();
    const { store, raw } = await openWithRaw(t, { keyPrefix: 'batch:', clock });
    const scriptCalls = async () => {
      const stats = await raw.info('commandstats');
      return [...stats.matchAll(/^cmdstat_eval(?:sha)?:calls=(\d+)/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
    };
    const perMinute = { limit: 3, windowMs: 60_000 };
    await raw.config('RESETSTAT');
    // Same turn: two buckets shared across requests, a refusal in the middle, and the clock moving between calls.
    const pending = [
      store.consume([{ key: 'a', ...perMinute }]),
      store.consume([{ key: 'a', ...perMinute }, { key: 'b', ...perMinute }]),
      store.consume([{ key: 'b', limit: 1, windowMs: 60_000 }]),
      store.consume([{ key: 'a', ...perMinute }]),
      store.consume([{ key: 'a', ...perMinute }, { key: 'c', ...perMinute }]),
    ];
    clock.advance(20_000); // one unit of `a` refills (an interval is 20 s) for the requests after this line
    pending.push(store.consume([{ key: 'a', ...perMinute }]), store.consume([{ key: 'a', ...perMinute }]));
    const decisions = await Promise.all(pending);
    t.equal(await scriptCalls(), 1, 'seven requests, one script call');
    t.same(
      decisions.map((d) => [d.allowed, d.buckets.map((b) => b.remaining)]),
      [
        [true, [2]],
        [true, [1, 2]],
        // `b` holds the entry of the request before: a limit of 1 is already used up.
        [false, [0]],
        [true, [0]],
        // `a` is empty, so `c` is not charged either.
        [false, [0, 3]],
        [true, [0]],
        [false, [0]],
      ],
    );
    t.equal(await raw.exists('batch:c'), 0, 'the refused request wrote nothing');

    // More consumes in one turn than one call takes: split into several calls, still exact.
    await raw.config('RESETSTAT');
    const many = await Promise.all(Array.from({ length: 150 }, () => store.consume([{ key: 'many', limit: 100, windowMs: 3_600_000 }])));
    t.equal(await scriptCalls(), 3, '150 requests in calls of at most 64');
    t.equal(many.filter((d) => d.allowed).length, 100);
  });

  t.test('redis: when the shared call fails, every request in it is refused with StoreUnavailableError', async (t) => {
    const store = await open({ commandTimeoutMs: 200 });
    t.teardown(() => store.close());
    server.pause();
    try {
      const batch = Array.from({ length: 5 }, (_, i) => store.consume([{ key: `hung${i}`, limit: 10, windowMs: 60_000 }]));
      for (const [i, p] of batch.entries()) await rejectsWithin(t, p, 200 + 300, `request ${i} of the batch`);
    } finally {
      server.resume();
    }
  });

  t.test('redis: keys carry the prefix and expire when their bucket would be full again', async (t) => {
    const clock = new ManualClock();
    const { store, raw } = await openWithRaw(t, { keyPrefix: 'ttl-test:', clock });
    const perMinute = { limit: 10, windowMs: 60_000 };
    await store.consume([{ key: 'k', ...perMinute }]);
    t.same(await raw.keys('ttl-test:*'), ['ttl-test:k']);
    t.equal(await raw.get('ttl-test:k'), `${toMicros(clock.now()) + 6_000_000}:6000000`, 'TAT and emission interval in microseconds');
    const ttl = await raw.pttl('ttl-test:k');
    t.ok(ttl > 5000 && ttl <= 6000, `one unit used: full again in 6 s (pttl ${ttl})`);
    // A refused request writes nothing, not even for the bucket that would have passed.
    await store.consume([{ key: 'one', limit: 1, windowMs: 60_000 }]);
    await store.consume([{ key: 'one', limit: 1, windowMs: 60_000 }, { key: 'untouched', ...perMinute }]);
    t.equal(await raw.exists('ttl-test:untouched'), 0);
  });

  t.test('redis: a bucket whose interval changed is held carried over, even when refused; a bare TAT is read as charged under the current interval', async (t) => {
    const clock = new ManualClock();
    const { store, raw } = await openWithRaw(t, { keyPrefix: 'carry:', clock });
    const now = toMicros(clock.now());
    for (let i = 0; i < 3; i++) await store.consume([{ key: 'k', limit: 3, windowMs: 60_000 }]);
    t.equal((await store.consume([{ key: 'k', limit: 1, windowMs: 60_000 }])).allowed, false, '3 used of 1');
    t.equal(await raw.get('carry:k'), `${now + 180_000_000}:60000000`, '3 units owed at 60 s each, written though refused');
    const ttl = await raw.pttl('carry:k');
    t.ok(ttl > 170_000 && ttl <= 180_000, `with the TTL of the carried-over TAT (pttl ${ttl})`);
    await raw.set('carry:old', String(now + 20_000_000), 'PX', 20_000);
    t.same(await store.consume([{ key: 'old', limit: 3, windowMs: 60_000 }]), { allowed: true, buckets: [{ remaining: 1, resetMs: 40_000, retryAfterMs: 0 }] });
    t.equal(await raw.get('carry:old'), `${now + 40_000_000}:20000000`);
  });

  t.test('redis: with no clock given, time comes from Redis TIME', async (t) => {
    const { store, raw } = await openWithRaw(t, { keyPrefix: 'time:' });
    await store.consume([{ key: 'k', limit: 1, windowMs: 60_000 }]);
    const [sec, usec] = await raw.time();
    const tat = Number((await raw.get('time:k'))!.split(':')[0]);
    const redisNowUs = Number(sec) * 1_000_000 + Number(usec);
    t.ok(tat > redisNowUs && tat <= redisNowUs + 60_000_000, 'TAT is Redis now + one interval');
  });

  t.test('redis: a killed Redis fails fast, and the store recovers by itself after restart', async (t) => {
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
    const store = await open({ commandTimeoutMs: 300, logger });
    t.teardown(() => store.close());
    const perMinute = { key: 'k', limit: 10, windowMs: 60_000 };
    t.equal((await store.consume([perMinute])).allowed, true);

    await server.kill();
    // Right after the kill the client may not know yet (the command times out) or may (it fails at once).
    await rejectsWithin(t, store.consume([perMinute]), 300 + 200, 'first consume after the kill');
    await until(() => !store.ready(), 2000, 'ready() turns false');
    await rejectsWithin(t, store.consume([perMinute]), 50, 'consume while down fails without waiting');

    await server.restart();
    // Bounded poll: reconnect backoff is capped at 1 s.
    await until(async () => (await store.consume([perMinute]).catch(() => undefined)) !== undefined, 5000, 'recovers');
    t.equal(store.ready(), true);
    const logged = lines.map((l) => JSON.parse(l).msg);
    t.same(logged, ['rate-limit redis unavailable; reconnecting', 'rate-limit redis reconnected'], 'one warning per outage');
  });

  t.test('redis: a hung Redis is cut off at commandTimeout, and the store carries on when it answers', async (t) => {
    const store = await open({ commandTimeoutMs: 300 });
    t.teardown(() => store.close());
    const perMinute = { key: 'k', limit: 10, windowMs: 60_000 };
    server.pause();
    const started = Date.now();
    try {
      await rejectsWithin(t, store.consume([perMinute]), 300 + 200, 'consume against a hung Redis');
      t.ok(Date.now() - started >= 290, 'it waited for the timeout, not less');
    } finally {
      server.resume();
    }
    await until(async () => (await store.consume([perMinute]).catch(() => undefined)) !== undefined, 5000, 'answers');
  });

  t.test('redis: a call Redis runs only after its command timeout (a hung Redis) charges nothing', async (t) => {
    const clock = new ManualClock();
    const { store, raw } = await openWithRaw(t, { keyPrefix: 'late:', clock, commandTimeoutMs: 200 });
    const bucket = { key: 'k', limit: 5, windowMs: 60_000 };
    t.equal((await store.consume([bucket])).buckets[0].remaining, 4, 'one unit used');
    const before = await raw.get('late:k');
    server.pause();
    try {
      for (let i = 0; i < 3; i++) await rejectsWithin(t, store.consume([bucket]), 200 + 300, `consume ${i} against a hung Redis`);
    } finally {
      server.resume();
    }
    // The three scripts run as soon as Redis does, before this GET.
    t.equal(await raw.get('late:k'), before, 'refused requests consumed nothing when Redis ran their calls late');
    t.equal((await store.consume([bucket])).buckets[0].remaining, 3, 'the next request is the second unit used');
  });

  t.test('redis: a call judged late although its answer came in time (a clock stepped) fails once, then the offset is measured again', async (t) => {
    const { store, raw } = await openWithRaw(t, { keyPrefix: 'skew:', clock: new ManualClock() });
    const bucket = { key: 'k', limit: 5, windowMs: 60_000 };
    await store.consume([bucket]);
    (store as unknown as { clockOffset: { offsetUs: number; rttUs: number } }).clockOffset = { offsetUs: -3_600_000_000, rttUs: 0 };
    await rejectsWithin(t, store.consume([bucket]), 1000, 'a call whose deadline passed an hour ago');
    t.equal((await store.consume([bucket])).buckets[0].remaining, 3, 'the next one is decided; the refused one charged nothing');
    t.ok(await raw.exists('skew:k'));
  });

  t.test('redis: a call Redis ran in time but whose answer came back after commandTimeout is refunded', async (t) => {
    // A TCP relay in front of Redis that can hold back Redis's replies: the network, not Redis, is slow.
    let replyDelayMs = 0;
    const relay = createNetServer((client) => {
      const upstream = netConnect(server.port, '127.0.0.1');
      client.on('data', (c) => upstream.write(c));
      upstream.on('data', (c) => (replyDelayMs ? setTimeout(() => client.destroyed || client.write(c), replyDelayMs) : client.write(c)));
      for (const [a, b] of [[client, upstream], [upstream, client]]) {
        a.on('error', () => b.destroy());
        a.on('close', () => b.destroy());
      }
    });
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
    t.teardown(() => new Promise<void>((resolve) => relay.close(() => resolve())));
    const clock = new ManualClock();
    const store = await open({ url: `redis://127.0.0.1:${(relay.address() as AddressInfo).port}`, keyPrefix: 'refund:', clock, commandTimeoutMs: 100 });
    t.teardown(() => store.close());
    const raw = new Redis(server.url);
    t.teardown(() => raw.quit());
    const bucket = { key: 'k', limit: 5, windowMs: 60_000 };
    t.equal((await store.consume([bucket])).buckets[0].remaining, 4, 'one unit used');
    const before = await raw.get('refund:k');
    replyDelayMs = 250;
    await rejectsWithin(t, store.consume([bucket, { key: 'other', limit: 5, windowMs: 60_000 }]), 100 + 100, 'the answer comes too late');
    await until(async () => (await raw.get('refund:k')) === before, 2000, 'the late charge is given back');
    t.equal(await raw.exists('refund:other'), 0, 'a bucket the refund empties is deleted, as a full one is');
    replyDelayMs = 0;
    await until(() => store.ready(), 3000, 'ready again');
    t.equal((await store.consume([bucket])).buckets[0].remaining, 3, 'the request answered 503 cost nothing');
  });

  t.test('redis: close() quits and returns promptly even while Redis is down', async (t) => {
    const store = await open();
    await store.close();
    t.equal(store.ready(), false);
    await store.close(); // twice is harmless

    const dead = new RedisStore({ url: 'redis://127.0.0.1:1', keyPrefix: 'x:', commandTimeoutMs: 200 });
    await rejectsWithin(t, dead.consume([{ key: 'k', limit: 1, windowMs: 1000 }]), 50, 'never-connected store');
    const started = Date.now();
    await dead.close();
    t.ok(Date.now() - started < 100, 'close did not wait for a connection');

    const hung = await open({ commandTimeoutMs: 200 });
    server.pause();
    try {
      const closing = Date.now();
      await hung.close();
      const took = Date.now() - closing;
      t.ok(took < 200 + 300, `close against a hung Redis gave up after commandTimeout (${took} ms)`);
    } finally {
      server.resume();
    }
  });
}

/** Polls `cond` every 10 ms; fails after `timeoutMs` instead of hanging. */
async function until(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function rejectsWithin(t: Test, promise: Promise<unknown>, ms: number, what: string): Promise<void> {
  const started = Date.now();
  // Matched by code: tap also compares `name`, which StoreUnavailableError leaves as 'Error'.
  const err = await t.rejects(promise, { code: 'STORE_UNAVAILABLE' }, `${what}: rejects`);
  const elapsed = Date.now() - started;
  t.ok(err instanceof StoreUnavailableError, `${what}: with StoreUnavailableError`);
  t.ok(elapsed <= ms, `${what}: within ${ms} ms (took ${elapsed})`);
}
