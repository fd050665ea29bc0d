// Rate limits shared through a real redis-server (SPEC section 5): exact across replicas, onError when
// Redis dies or hangs, readiness, recovery, and state that outlives a gatehouse restart.
import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { call, startGatehouse, startUpstream, writeTempFile, type Answer, type Running, type Upstream } from '../support/harness.js';
import { ensureBuilt, serveCli } from '../support/built-cli.js';
import { redisSkipReason, startRedisServer, type RedisServer } from '../support/redis-server.js';
import { until } from '../support/until.js';

const COMMAND_TIMEOUT_MS = 150;
/** Scheduling slack on a loaded 2-core machine; a request waiting on Redis must still end well before a second. */
const MARGIN_MS = 350;

const sha = (key: string) => `sha256:${createHash('sha256').update(key).digest('hex')}`;
const TENANTS = ['acme', 'globex', 'initech', 'umbrella', 'hooli'];
const as = (tenant: string) => ({ headers: { 'x-api-key': `key-${tenant}` } });

interface Shape {
  redisUrl: string;
  upstream: string;
  prefix: string;
  onError?: 'allow' | 'deny';
  limit?: number;
  commandTimeoutMs?: number;
}

function yaml(o: Shape): string {
  return `version: 1
server: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
log: { level: info }
upstreams:
  default: { url: "${o.upstream}", timeout: 5s, connectTimeout: 1s }
auth:
  apiKeys:
    keys:
${TENANTS.map((tenant) => `      - { id: ${tenant}, hash: "${sha(`key-${tenant}`)}", tenant: ${tenant}, subject: s }`).join('\n')}
rateLimit:
  store: redis
  redis: { url: "${o.redisUrl}", keyPrefix: "${o.prefix}", commandTimeout: ${o.commandTimeoutMs ?? COMMAND_TIMEOUT_MS}ms, onError: ${o.onError ?? 'allow'} }
  policies:
    hourly: { limit: ${o.limit ?? 100}, window: 1h, by: tenant }
routes:
  - name: api
    match: { path: /api/** }
    auth: any
    rateLimit: [hourly]
`;
}

const readyz = async (gh: { adminUrl: string | null }) => (await call(`${gh.adminUrl}/readyz`)).status;

const skip = redisSkipReason();
if (skip) {
  t.plan(0, skip);
} else {
  let redis: RedisServer;
  let upstream: Upstream;
  t.before(async () => {
    [redis, upstream] = await Promise.all([startRedisServer(), startUpstream()]);
  });
  t.teardown(async () => {
    await Promise.all([redis.stop(), upstream.close()]);
  });

  const open = async (t: Test, o: Omit<Shape, 'redisUrl' | 'upstream'>): Promise<Running> => {
    const gh = await startGatehouse(yaml({ redisUrl: redis.url, upstream: upstream.url, ...o }));
    t.teardown(() => gh.close());
    await until(async () => (await readyz(gh)) === 200, 5000, 'the store connects to Redis');
    return gh;
  };

  t.test('two replicas (in-process and `gatehouse serve`) sharing Redis admit exactly 100 of 300 requests from 50 clients', async (t) => {
    await ensureBuilt();
    // A store error would admit (allow) or refuse (deny) without an exact count: a generous timeout keeps
    // a busy machine from causing one, and deny makes one visible as a 503 instead of a silent extra 200.
    const shape = { prefix: 'exact:', onError: 'deny', commandTimeoutMs: 2000 } as const;
    const local = await open(t, shape);
    const configPath = writeTempFile('gatehouse.yaml', yaml({ redisUrl: redis.url, upstream: upstream.url, ...shape }));
    const child = await serveCli(configPath, {}, 20_000);
    t.teardown(() => child.stop());
    await until(async () => (await readyz(child)) === 200, 5000, 'the child connects to Redis');

    const statuses: number[] = [];
    const remaining: number[] = [];
    const client = async (i: number) => {
      for (let n = 0; n < 6; n++) {
        const base = (i + n) % 2 ? local.url : child.url;
        const answer = await call(`${base}/api/x`, as('acme'));
        statuses.push(answer.status);
        if (answer.status === 200) remaining.push(Number(answer.headers['x-ratelimit-remaining']));
      }
    };
    await Promise.all(Array.from({ length: 50 }, (_, i) => client(i)));
    t.equal(statuses.length, 300);
    t.equal(statuses.filter((s) => s === 503).length, 0, 'no store errors');
    t.equal(statuses.filter((s) => s === 200).length, 100, 'exactly the limit admitted, across both replicas');
    t.equal(statuses.filter((s) => s === 429).length, 200, 'every other request refused');
    t.same(
      remaining.sort((a, b) => a - b),
      Array.from({ length: 100 }, (_, i) => i),
      'each unit handed out once: remaining 99..0 without repeats',
    );
    t.equal(await child.stop(), 0, 'the child drains and exits 0 on SIGTERM');
  });

  t.test('Redis killed mid-run: allow answers 200, deny 503 within commandTimeout, /readyz 503; both recover after restart', async (t) => {
    const allow = await open(t, { prefix: 'kill:', onError: 'allow' });
    const deny = await open(t, { prefix: 'kill:', onError: 'deny' });
    // 'killing' and 'restarting' are the moments Redis changes state, and a request that spans two
    // phases is 'edge': those may see either behaviour.
    type Phase = 'up' | 'killing' | 'down' | 'restarting' | 'back' | 'edge';
    type Sample = { gateway: 'allow' | 'deny'; phase: Phase; answer: Answer; ms: number };
    const samples: Sample[] = [];
    let phase: Phase = 'up';
    let running = true;
    const loop = async (gateway: 'allow' | 'deny', gh: Running) => {
      while (running) {
        const started = performance.now();
        const during = phase;
        const answer = await call(`${gh.url}/api/x`, as(gateway === 'allow' ? 'globex' : 'initech'));
        samples.push({ gateway, phase: during === phase ? during : 'edge', answer, ms: performance.now() - started });
      }
    };
    const loops = [loop('allow', allow), loop('deny', deny)];
    t.teardown(() => {
      running = false;
      return Promise.all(loops);
    });
    const count = (g: Sample['gateway'], p: Sample['phase']) => samples.filter((s) => s.gateway === g && s.phase === p).length;

    await until(() => count('allow', 'up') >= 10 && count('deny', 'up') >= 10, 5000, 'both answer with Redis up');
    phase = 'killing';
    await redis.kill();
    phase = 'down';
    await until(() => count('allow', 'down') >= 20 && count('deny', 'down') >= 20, 5000, 'both answer with Redis down');
    t.equal(await readyz(allow), 503, '/readyz of allow is 503 while Redis is down');
    t.equal(await readyz(deny), 503, '/readyz of deny is 503 while Redis is down');
    t.equal((await call(`${deny.adminUrl}/healthz`)).status, 200, '/healthz stays 200');
    const readyBody = (await call(`${deny.adminUrl}/readyz`)).json;
    t.equal(readyBody.status, 'not_ready');

    phase = 'restarting';
    await redis.restart();
    phase = 'back';
    await until(async () => (await readyz(allow)) === 200 && (await readyz(deny)) === 200, 5000, '/readyz is 200 again');
    await until(() => samples.some((s) => s.gateway === 'deny' && s.phase === 'back' && s.answer.status === 200), 5000, 'deny admits again');
    running = false;
    await Promise.all(loops);

    const of = (g: Sample['gateway'], p: Sample['phase']) => samples.filter((s) => s.gateway === g && s.phase === p);
    t.same([...new Set(of('allow', 'up').map((s) => s.answer.status))], [200], 'allow, Redis up: 200');
    t.same([...new Set(of('deny', 'up').map((s) => s.answer.status))], [200], 'deny, Redis up: 200');
    t.same([...new Set(of('allow', 'down').map((s) => s.answer.status))], [200], 'allow, Redis down: still 200 (fails open)');
    const deniedDown = of('deny', 'down');
    t.same([...new Set(deniedDown.map((s) => s.answer.status))], [503], 'deny, Redis down: 503');
    t.same([...new Set(deniedDown.map((s) => s.answer.json?.error))], ['service_unavailable']);
    const slowest = Math.max(...of('deny', 'down').map((s) => s.ms), ...of('allow', 'down').map((s) => s.ms));
    t.ok(slowest < COMMAND_TIMEOUT_MS + MARGIN_MS, `no request waited beyond commandTimeout + margin (slowest ${slowest.toFixed(0)} ms)`);
    t.equal(of('deny', 'back').at(-1)!.answer.status, 200, 'deny recovered by itself');
    t.equal(of('allow', 'back').at(-1)?.answer.status ?? 200, 200);
    t.comment(`samples: ${samples.length}, down: allow ${count('allow', 'down')} deny ${count('deny', 'down')}`);
    const metrics = (await call(`${deny.adminUrl}/metrics`)).text;
    t.match(metrics, /^gatehouse_rate_limit_store_errors_total\{outcome="deny"\} [1-9]\d*$/m);
  });

  t.test('a hung Redis (SIGSTOP) never holds a request beyond commandTimeout, turns /readyz 503, and recovers without traffic', async (t) => {
    const allow = await open(t, { prefix: 'hung:', onError: 'allow' });
    const deny = await open(t, { prefix: 'hung:', onError: 'deny' });
    t.equal((await call(`${deny.url}/api/x`, as('hooli'))).status, 200);
    redis.pause();
    t.teardown(() => redis.resume());
    for (const [gh, status] of [
      [allow, 200],
      [deny, 503],
    ] as const) {
      const started = performance.now();
      const answer = await call(`${gh.url}/api/x`, as('hooli'));
      const ms = performance.now() - started;
      t.equal(answer.status, status);
      t.ok(ms >= COMMAND_TIMEOUT_MS - 10 && ms < COMMAND_TIMEOUT_MS + MARGIN_MS, `answered after the command timeout (${ms.toFixed(0)} ms)`);
    }
    // The socket stays open, so only the timed-out command tells that Redis does not answer.
    t.equal(await readyz(allow), 503, '/readyz is 503 while Redis hangs (allow)');
    t.equal(await readyz(deny), 503, '/readyz is 503 while Redis hangs (deny)');
    redis.resume();
    // No requests meanwhile: a load balancer sends none to an unready replica, so it must recover alone.
    await until(async () => (await readyz(allow)) === 200 && (await readyz(deny)) === 200, 5000, '/readyz is 200 once Redis answers');
    t.equal((await call(`${deny.url}/api/x`, as('hooli'))).status, 200, 'deny admits again');
  });

  t.test('limits survive a gatehouse restart: a new Gateway on the same Redis is still limited', async (t) => {
    const first = await open(t, { prefix: 'restart:', limit: 3 });
    for (let i = 0; i < 3; i++) t.equal((await call(`${first.url}/api/x`, as('umbrella'))).status, 200);
    t.equal((await call(`${first.url}/api/x`, as('umbrella'))).status, 429);
    await first.close();
    const second = await open(t, { prefix: 'restart:', limit: 3 });
    const refused = await call(`${second.url}/api/x`, as('umbrella'));
    t.equal(refused.status, 429, 'the new process sees the used-up bucket');
    t.equal(refused.headers['retry-after'], '1200', 'one unit every 20 min');
    t.equal((await call(`${second.url}/api/x`, as('acme'))).status, 200, 'another tenant is unaffected');
  });
}
