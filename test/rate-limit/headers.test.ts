import t from 'tap';
import { rateLimitHeaders, retryAfterSeconds } from '../../src/rate-limit/headers.js';

const STATE = { remaining: 7, resetMs: 2500, retryAfterMs: 0 };

t.test('each header mode sends exactly its headers, in the SPEC formats', async (t) => {
  const ietf = {
    'ratelimit-policy': '"standard";q=100;w=60',
    ratelimit: '"standard";r=7;t=3',
  };
  const legacy = {
    'x-ratelimit-limit': '100',
    'x-ratelimit-remaining': '7',
    'x-ratelimit-reset': '3',
  };
  const cases: ['both' | 'ietf' | 'legacy' | 'none', Record<string, string>][] = [
    ['ietf', ietf],
    ['legacy', legacy],
    ['both', { ...ietf, ...legacy }],
    ['none', {}],
  ];
  for (const [mode, expected] of cases) {
    t.strictSame(rateLimitHeaders(mode, 'standard', 100, 60_000, STATE), expected, mode);
  }
});

t.test('seconds are whole and rounded up', async (t) => {
  const cases: [resetMs: number, windowMs: number, t: string, w: string][] = [
    [0, 1000, '0', '1'],
    [1, 1500, '1', '2'],
    [1000, 1000, '1', '1'],
    [1001, 3_600_000, '2', '3600'],
  ];
  for (const [resetMs, windowMs, reset, window] of cases) {
    const h = rateLimitHeaders('both', 'p', 5, windowMs, { remaining: 0, resetMs, retryAfterMs: 0 });
    t.equal(h['x-ratelimit-reset'], reset, `reset of ${resetMs} ms`);
    t.equal(h['ratelimit'], `"p";r=0;t=${reset}`, `reset of ${resetMs} ms (ietf)`);
    t.equal(h['ratelimit-policy'], `"p";q=5;w=${window}`, `window of ${windowMs} ms`);
  }
});

t.test('a policy name with quotes or backslashes stays one structured-field string', async (t) => {
  const h = rateLimitHeaders('ietf', 'a"b\\c', 1, 1000, STATE);
  t.equal(h['ratelimit-policy'], '"a\\"b\\\\c";q=1;w=1');
  t.equal(rateLimitHeaders('ietf', 'a"b\\c', 1, 1000, STATE)['ratelimit-policy'], '"a\\"b\\\\c";q=1;w=1', 'the same, remembered');
  for (let i = 0; i < 1500; i++) rateLimitHeaders('ietf', `p${i}"`, 1, 1000, STATE);
  t.equal(rateLimitHeaders('ietf', 'p7"', 2, 1000, STATE)['ratelimit-policy'], '"p7\\"";q=2;w=1', 'right after more names than are remembered');
});

t.test('Retry-After is whole seconds, rounded up, at least 1', async (t) => {
  const cases: [ms: number, seconds: number][] = [
    [0, 1],
    [1, 1],
    [999, 1],
    [1000, 1],
    [1001, 2],
    [3334, 4],
    [60_000, 60],
  ];
  for (const [ms, seconds] of cases) t.equal(retryAfterSeconds(ms), seconds, `${ms} ms`);
});
