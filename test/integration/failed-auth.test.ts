// The failed-auth guard end to end (SPEC section 5, auth.failedAuth): 401s counted per client IP, then 429
// before any credential is checked; other IPs unaffected; time moved by a ManualClock.
import t from 'tap';
import { createHash } from 'node:crypto';
import { ManualClock } from '../../src/clock.js';
import { call, configYaml, startGatehouse, startUpstream, type Running, type Upstream } from '../support/harness.js';
import { assertRefused } from '../support/refusals.js';

const sha = (key: string) => `sha256:${createHash('sha256').update(key).digest('hex')}`;
const GOOD = 'gh_test_failed_auth_good_key';
const BAD = ['gh_test_bad_1', 'gh_test_bad_2', 'gh_test_bad_3'];

const yaml = configYaml({
  server: '  trustProxy: true\n',
  auth: `  apiKeys:
    keys:
      - { id: good, hash: "${sha(GOOD)}", tenant: acme, subject: svc }
  failedAuth: { limit: 3, window: 1m }`,
  routes: `  - name: open
    match: { path: /open/** }
    auth: none
  - name: api
    match: { path: /** }
    auth: any`,
});

let upstream: Upstream;
t.before(async () => {
  upstream = await startUpstream();
});
t.teardown(() => upstream.close());

async function start(clock: ManualClock): Promise<Running> {
  const running = await startGatehouse(yaml, { UPSTREAM: upstream.url }, { clock });
  t.teardown(() => running.close());
  return running;
}

/** A request from `ip` (believed through X-Forwarded-For, as trustProxy: true says) with `key`, or none. */
const from = (running: Running, ip: string, key?: string, path = '/api/x') =>
  call(`${running.url}${path}`, { headers: { 'x-forwarded-for': ip, ...(key === undefined ? {} : { 'x-api-key': key }) } });

t.test('after 3 failed authentications the 4th request from that IP is 429 even with a valid key', async (t) => {
  const running = await start(new ManualClock());
  for (const key of BAD) assertRefused(t, await from(running, '203.0.113.7', key), 'invalid_token', BAD);
  const before = upstream.requests.length;
  const blocked = await from(running, '203.0.113.7', GOOD);
  assertRefused(t, blocked, 'rate_limit_exceeded', [GOOD]);
  // GCRA over the failures: one more attempt is earned every window / limit = 20 s.
  t.equal(blocked.headers['retry-after'], '20', 'Retry-After: seconds until one more attempt is allowed');
  t.equal(upstream.requests.length, before, 'not forwarded');
  assertRefused(t, await from(running, '203.0.113.7', BAD[0]), 'rate_limit_exceeded', BAD);
  const none = await from(running, '203.0.113.7');
  assertRefused(t, none, 'rate_limit_exceeded');
  t.equal(running.logs.find((l) => l.request_id === none.json.request_id && 'status' in l)?.reason, 'failed_auth', 'the refusal is logged as failed_auth');
  // The guard protects credential checks; a route that checks none (auth: none) is left to its own limits.
  t.equal((await from(running, '203.0.113.7', undefined, '/open/x')).status, 200, 'an auth: none route still answers');
});

t.test('another client IP is unaffected', async (t) => {
  const running = await start(new ManualClock());
  for (const key of BAD) await from(running, '203.0.113.7', key);
  t.equal((await from(running, '203.0.113.7', GOOD)).status, 429, 'the guessing IP is blocked');
  t.equal((await from(running, '198.51.100.20', GOOD)).status, 200, 'another IP with a valid key is admitted');
  assertRefused(t, await from(running, '198.51.100.20', BAD[0]), 'invalid_token', BAD);
  t.equal((await from(running, '198.51.100.20', GOOD)).status, 200, 'one failure of its own does not block it');
});

t.test('IPv6 clients are counted by /64: a neighbour address in the same /64 is blocked, another /64 is not', async (t) => {
  const running = await start(new ManualClock());
  for (const [i, key] of BAD.entries()) await from(running, `2001:db8:1:2::${i + 1}`, key);
  assertRefused(t, await from(running, '2001:db8:1:2:ffff::9', GOOD), 'rate_limit_exceeded', [GOOD]);
  t.equal((await from(running, '2001:db8:1:3::1', GOOD)).status, 200, 'the next /64 is another client');
});

t.test('IPv4 clients written as mapped IPv6 by a dual-stack proxy are each their own client, not one shared /64', async (t) => {
  const running = await start(new ManualClock());
  for (const key of BAD) await from(running, '::ffff:203.0.113.66', key);
  assertRefused(t, await from(running, '::ffff:203.0.113.66', GOOD), 'rate_limit_exceeded', [GOOD]);
  assertRefused(t, await from(running, '203.0.113.66', GOOD), 'rate_limit_exceeded', [GOOD]);
  t.equal((await from(running, '::ffff:198.51.100.7', GOOD)).status, 200, 'another mapped IPv4 client is admitted');
  t.equal((await from(running, '::ffff:c633:6408', GOOD)).status, 200, 'in hex too');
});

t.test('missing credentials are 401s too and count towards the limit', async (t) => {
  const running = await start(new ManualClock());
  for (let i = 0; i < 3; i++) assertRefused(t, await from(running, '192.0.2.1'), 'missing_credentials');
  t.equal((await from(running, '192.0.2.1', GOOD)).status, 429);
});

t.test('advancing the clock past the window admits the IP again', async (t) => {
  const clock = new ManualClock();
  const running = await start(clock);
  for (const key of BAD) await from(running, '203.0.113.7', key);
  t.equal((await from(running, '203.0.113.7', GOOD)).status, 429, 'blocked');
  clock.advance(19_000);
  t.equal((await from(running, '203.0.113.7', GOOD)).status, 429, 'still blocked before one attempt is earned back');
  clock.advance(60_000);
  const answer = await from(running, '203.0.113.7', GOOD);
  t.equal(answer.status, 200, 'admitted after the window');
  t.equal(upstream.requests.at(-1)!.headers['x-auth-key-id'], 'good');
});

t.test('concurrent guesses: every one is counted, so a burst buys a block as long as all of it; concurrent valid tokens all pass', async (t) => {
  // A JWT may wait for its key (here an unknown kid re-fetches the JWKS, which the test holds): a burst of guesses
  // is verified before the first failure is counted. Each is counted when it fails, so the address then waits
  // until every one is earned back: the sustained rate stays limit per window.
  const { JwksServer, makeKey, newClock, sign, ISSUER } = await import('../support/jwt-fixtures.js');
  const clock = newClock();
  const [known, later, unknown] = await Promise.all([makeKey('ES256', 'known'), makeKey('ES256', 'later'), makeKey('ES256', 'unknown')]);
  const jwks = await JwksServer.start([known.jwk]);
  t.teardown(() => jwks.close());
  const jwtYaml = configYaml({
    server: '  trustProxy: true\n',
    auth: `  jwt:
    providers:
      - { name: sso, issuer: "${ISSUER}", audience: [api], algorithms: [ES256], jwksUrl: "${jwks.url}", claims: { tenant: org_id } }
  failedAuth: { limit: 3, window: 1m }`,
    routes: `  - name: api
    match: { path: /** }
    auth: any`,
  });
  const running = await startGatehouse(jwtYaml, { UPSTREAM: upstream.url }, { clock });
  t.teardown(() => running.close());
  const as = (ip: string, token: string) => call(`${running.url}/api/x`, { headers: { 'x-forwarded-for': ip, authorization: `Bearer ${token}` } });
  const { eventually } = await import('../support/jwt-fixtures.js');
  /** Sends `tokens` at once from `ip` while the JWKS answer is held, so all of them wait on it together. */
  const together = async (ip: string, tokens: string[]) => {
    clock.advance(60_000); // past the unknown-kid cooldown
    jwks.mode = 'slow';
    const before = jwks.requests;
    const answers = Promise.all(tokens.map((token) => as(ip, token)));
    await eventually(() => jwks.requests > before, 5000);
    await new Promise((resolve) => setTimeout(resolve, 200)); // every request is in, waiting on the key
    jwks.release();
    jwks.mode = 'ok';
    return (await answers).map((a) => a.status);
  };
  t.equal((await as('198.51.100.9', await sign(known, clock))).status, 200, 'the JWKS is loaded');
  // Fresh valid tokens at once from one address (an app's parallel calls after login, a NAT), signed by a key the
  // IdP has just published: each waits for the JWKS, and none is a failure.
  jwks.publish([known.jwk, later.jwk]);
  const fresh = await Promise.all(Array.from({ length: 30 }, (_, i) => sign(later, clock, { sub: `user-${i}` })));
  t.same([...new Set(await together('198.51.100.9', fresh))], [200], 'concurrent fresh valid tokens all pass');
  const guess = await sign(unknown, clock);
  t.same([...new Set(await together('203.0.113.9', Array.from({ length: 40 }, () => guess)))], [401], 'a burst of guesses is verified, and refused');
  const blocked = await as('203.0.113.9', fresh[0]);
  t.equal(blocked.status, 429, 'then the address is blocked');
  // 40 failures at 20 s each, less the 2 that limit 3 leaves room for after the next one: (40 - 2) x 20 s.
  t.equal(blocked.headers['retry-after'], '760', 'for as long as the whole burst takes to earn back');
});
