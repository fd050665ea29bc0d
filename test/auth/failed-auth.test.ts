import t from 'tap';
import { ManualClock } from '../../src/clock.js';
import { ProxyError } from '../../src/http/errors.js';
import { FailedAuthGuard } from '../../src/auth/failed-auth.js';

const IP = '203.0.113.7';

/** The refusal `check` throws, or null when the IP is allowed. */
function refusal(guard: FailedAuthGuard, ip: string) {
  try {
    guard.check(ip);
    return null;
  } catch (err) {
    if (!(err instanceof ProxyError)) throw err;
    return { code: err.code, status: err.status, reason: err.reason, message: err.message, headers: err.headers };
  }
}

const refused = (retryAfter: number) => ({
  code: 'rate_limit_exceeded',
  status: 429,
  reason: 'failed_auth',
  message: 'too many failed authentication attempts from this address',
  headers: { 'retry-after': String(retryAfter) },
});

function fail(guard: FailedAuthGuard, ip: string, times: number): void {
  for (let i = 0; i < times; i++) guard.recordFailure(ip);
}

t.test('an IP with no failures, or fewer than limit, is allowed', async (t) => {
  const guard = new FailedAuthGuard({ limit: 5, windowMs: 60_000 }, { clock: new ManualClock() });
  t.equal(refusal(guard, IP), null, 'unknown IP');
  t.equal(guard.size, 0, 'checking an unknown IP tracks nothing');
  fail(guard, IP, 4);
  t.equal(refusal(guard, IP), null, 'limit - 1 failures');
});

t.test('at limit failures the IP gets 429 with Retry-After until one attempt is earned back', async (t) => {
  const clock = new ManualClock();
  const guard = new FailedAuthGuard({ limit: 5, windowMs: 60_000 }, { clock });
  fail(guard, IP, 5);
  // One attempt is earned back every window / limit = 12 s.
  t.strictSame(refusal(guard, IP), refused(12));
  clock.advance(1);
  t.strictSame(refusal(guard, IP), refused(12), 'Retry-After rounds 11.999 s up');
  clock.advance(599);
  t.strictSame(refusal(guard, IP), refused(12), 'Retry-After rounds 11.4 s up, never down');
  clock.advance(11_399);
  t.strictSame(refusal(guard, IP), refused(1), '1 ms left is still at least 1 s');
  clock.advance(1);
  t.equal(refusal(guard, IP), null, 'allowed again exactly when Retry-After said');
  guard.recordFailure(IP);
  t.strictSame(refusal(guard, IP), refused(12), 'one more failure uses up the earned attempt');
});

t.test('failures past the limit push Retry-After further out', async (t) => {
  const guard = new FailedAuthGuard({ limit: 5, windowMs: 60_000 }, { clock: new ManualClock() });
  // Requests refused by check never reach a credential check, so they are not counted; but failures that
  // were already in flight when the limit was reached are.
  fail(guard, IP, 7);
  t.strictSame(refusal(guard, IP), refused(36));
});

t.test('after a whole window without failures the IP has its full allowance again', async (t) => {
  const clock = new ManualClock();
  const guard = new FailedAuthGuard({ limit: 3, windowMs: 60_000 }, { clock });
  fail(guard, IP, 3);
  t.strictSame(refusal(guard, IP), refused(20));
  clock.advance(60_000);
  t.equal(refusal(guard, IP), null);
  fail(guard, IP, 2);
  t.equal(refusal(guard, IP), null, 'a full burst of limit - 1 is allowed again');
  guard.recordFailure(IP);
  t.strictSame(refusal(guard, IP), refused(20));
});

t.test('the sustained rate is held to limit per window', async (t) => {
  const clock = new ManualClock();
  const guard = new FailedAuthGuard({ limit: 10, windowMs: 10_000 }, { clock });
  // A client that fails as fast as the guard lets it, for 100 s: burst of 10, then one per second.
  let admitted = 0;
  for (let ms = 0; ms < 100_000; ms += 100) {
    if (refusal(guard, IP) === null) {
      admitted++;
      guard.recordFailure(IP);
    }
    clock.advance(100);
  }
  t.equal(admitted, 10 + 99, 'the burst, then exactly one attempt per window / limit');
});

t.test('the limit boundary is exact for windows that do not divide evenly by the limit', async (t) => {
  for (const [limit, windowMs] of [[7, 60_000], [3, 1000], [20, 60_000], [1000, 86_400_000], [9, 1]] as const) {
    const clock = new ManualClock(Date.UTC(2026, 4, 17, 13, 5, 7, 333));
    const guard = new FailedAuthGuard({ limit, windowMs }, { clock });
    fail(guard, IP, limit - 1);
    t.equal(refusal(guard, IP), null, `${limit}/${windowMs}ms: limit - 1 allowed`);
    guard.recordFailure(IP);
    t.not(refusal(guard, IP), null, `${limit}/${windowMs}ms: limit refused`);
    clock.advance(Math.ceil(windowMs / limit));
    t.equal(refusal(guard, IP), null, `${limit}/${windowMs}ms: allowed after window / limit`);
  }
});

t.test('a limit of 1 refuses for the whole window after one failure', async (t) => {
  const clock = new ManualClock();
  const guard = new FailedAuthGuard({ limit: 1, windowMs: 30_000 }, { clock });
  t.equal(refusal(guard, IP), null);
  guard.recordFailure(IP);
  t.strictSame(refusal(guard, IP), refused(30));
  clock.advance(29_999);
  t.strictSame(refusal(guard, IP), refused(1));
  clock.advance(1);
  t.equal(refusal(guard, IP), null);
});

t.test('IPs are counted independently', async (t) => {
  const guard = new FailedAuthGuard({ limit: 2, windowMs: 60_000 }, { clock: new ManualClock() });
  fail(guard, IP, 2);
  guard.recordFailure('198.51.100.1');
  t.strictSame(refusal(guard, IP), refused(30));
  t.equal(refusal(guard, '198.51.100.1'), null, 'one failure of another IP');
  t.equal(refusal(guard, '2001:db8::1'), null, 'an IP with no failures');
});

t.test('tracked IPs are bounded: the least recently seen are forgotten first', async (t) => {
  const guard = new FailedAuthGuard({ limit: 1, windowMs: 60_000 }, { clock: new ManualClock(), maxIps: 3 });
  for (const ip of ['10.0.0.1', '10.0.0.2', '10.0.0.3']) guard.recordFailure(ip);
  t.not(refusal(guard, '10.0.0.1'), null, '10.0.0.1 is refused, and now the most recently seen');
  guard.recordFailure('10.0.0.4');
  t.equal(guard.size, 3, 'never more than maxIps');
  t.equal(refusal(guard, '10.0.0.2'), null, 'the least recently seen IP was evicted');
  t.not(refusal(guard, '10.0.0.1'), null);
  t.not(refusal(guard, '10.0.0.3'), null);
  t.not(refusal(guard, '10.0.0.4'), null);
});

t.test('the default bound is 100,000 IPs', async (t) => {
  const guard = new FailedAuthGuard({ limit: 5, windowMs: 60_000 }, { clock: new ManualClock() });
  for (let i = 0; i < 100_001; i++) guard.recordFailure(`ip-${i}`);
  t.equal(guard.size, 100_000);
});

t.test('a nonsensical config is refused at construction', async (t) => {
  const clock = new ManualClock();
  t.throws(() => new FailedAuthGuard({ limit: 0, windowMs: 1000 }, { clock }), { message: 'failedAuth.limit must be a positive integer, got 0' });
  t.throws(() => new FailedAuthGuard({ limit: 1.5, windowMs: 1000 }, { clock }), { message: 'failedAuth.limit must be a positive integer, got 1.5' });
  t.throws(() => new FailedAuthGuard({ limit: 5, windowMs: 0 }, { clock }), { message: 'failedAuth.window must be positive, got 0ms' });
  t.throws(() => new FailedAuthGuard({ limit: 5, windowMs: 1000 }, { clock, maxIps: 0 }), { message: 'maxIps must be a positive integer, got 0' });
});
