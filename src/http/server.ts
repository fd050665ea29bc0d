// The gateway process: the proxy listener, the admin listener, plan swaps on reload, graceful shutdown.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { randomUUID } from 'node:crypto';
import { compilePlan, retirePlans, type Plan, type Runtime } from '../config/compile.js';
import type { GatehouseConfig } from '../config/types.js';
import { systemClock, type Clock } from '../clock.js';
import { collectGarbage, LARGE_KEY_TABLE, limitHeapGrowth } from '../observe/collect-garbage.js';
import { createLogger, type Logger } from '../observe/logger.js';
import { Metrics } from '../observe/metrics.js';
import { exchangeOf } from '../pipeline/exchange.js';
import { handleRequest, logRefusal } from '../pipeline/pipeline.js';
import { isValidRequestId } from '../pipeline/sanitize-headers.js';
import { MemoryStore } from '../rate-limit/memory-store.js';
import { RedisStore } from '../rate-limit/redis-store.js';
import type { RateLimitStore } from '../rate-limit/store.js';
import { createAdminServer } from './admin.js';
import { ProxyError, rejectOnSocket, sendError } from './errors.js';
import { handleUpgrade } from './websocket.js';

export interface GatewayOptions {
  logger?: Logger;
  clock?: Clock;
  metrics?: Metrics;
  store?: RateLimitStore;
}

export function createStore(config: GatehouseConfig, clock: Clock, logger: Logger): RateLimitStore {
  const r = config.rateLimit;
  if (r.store === 'redis') return new RedisStore({ url: r.redis.url, keyPrefix: r.redis.keyPrefix, commandTimeoutMs: r.redis.commandTimeoutMs, logger });
  return new MemoryStore({ maxKeys: r.maxKeys, clock, logger });
}

/** Settings a running process cannot change without a restart (listeners, the store), by name. */
const RESTART_ONLY: ReadonlyArray<readonly [string, (c: GatehouseConfig) => unknown]> = [
  ['server.host', (c) => c.server.host],
  ['server.port', (c) => c.server.port],
  ['server.maxHeaderBytes', (c) => c.server.maxHeaderBytes],
  ['admin', (c) => c.admin],
  ['rateLimit.store', (c) => c.rateLimit.store],
  ['rateLimit.maxKeys', (c) => c.rateLimit.maxKeys],
  ['rateLimit.redis.url', (c) => c.rateLimit.redis.url],
  ['rateLimit.redis.keyPrefix', (c) => c.rateLimit.redis.keyPrefix],
  ['rateLimit.redis.commandTimeout', (c) => c.rateLimit.redis.commandTimeoutMs],
];

/** The restart-only settings `next` changes from `running`. */
export function pendingRestart(next: GatehouseConfig, running: GatehouseConfig): string[] {
  return RESTART_ONLY.filter(([, read]) => JSON.stringify(read(next)) !== JSON.stringify(read(running))).map(([name]) => name);
}

/** `next` with the restart-only settings of `running`: what a reload can apply now. */
function keepRunning(next: GatehouseConfig, running: GatehouseConfig): GatehouseConfig {
  const { host, port, maxHeaderBytes } = running.server;
  const { store, maxKeys } = running.rateLimit;
  const { url, keyPrefix, commandTimeoutMs } = running.rateLimit.redis;
  return {
    ...next,
    server: { ...next.server, host, port, maxHeaderBytes },
    admin: running.admin,
    rateLimit: { ...next.rateLimit, store, maxKeys, redis: { ...next.rateLimit.redis, url, keyPrefix, commandTimeoutMs } },
  };
}

const serverTimeouts = (s: GatehouseConfig['server']) => ({
  headersTimeout: s.headersTimeoutMs,
  requestTimeout: s.requestTimeoutMs,
  keepAliveTimeout: s.keepAliveTimeoutMs,
});

/**
 * After building a plan with a large key table (see collect-garbage.ts): bound the heap's growth over the table
 * and collect the loading garbage. Small configs keep V8's defaults and leave little garbage.
 */
function settleLargeKeyTable(plan: Plan): void {
  if ((plan.apiKeys?.size ?? 0) < LARGE_KEY_TABLE) return;
  limitHeapGrowth();
  collectGarbage();
}

export class Gateway {
  private current: Plan;
  readonly runtime: Runtime;
  readonly server: Server;
  readonly admin: Server | null;
  private draining = false;
  private inFlight = 0;
  private drained: (() => void) | null = null;
  private closing: Promise<void> | null = null;
  /**
   * HTTP requests still running, per plan. A request keeps the plan it started on to the end, so a
   * replaced plan's upstream pools close only after its last request (closing them at once would
   * turn a request still being admitted into a 502).
   */
  private readonly planUsers = new Map<Plan, number>();
  /**
   * Client sockets of Upgrade requests, from arrival until they close. node:http hands them over at the upgrade
   * and closeAllConnections() no longer reaches them, so shutdown has to cut an open tunnel itself.
   */
  private readonly upgrades = new Set<Socket>();

  constructor(config: GatehouseConfig, options: GatewayOptions = {}) {
    const clock = options.clock ?? systemClock;
    const logger = options.logger ?? createLogger(config.log);
    const metrics = options.metrics ?? new Metrics({ defaults: true });
    const store = options.store ?? createStore(config, clock, logger);
    this.runtime = { clock, logger, metrics, store, upstreamQueues: new Map() };
    this.current = compilePlan(config, this.runtime);
    settleLargeKeyTable(this.current);
    // Upstreams of the running config, and dropped ones while they still have requests.
    metrics.upstreamQueues = () => [...this.runtime.upstreamQueues].filter(([name, q]) => this.current.upstreams.has(name) || q.active + q.waiting > 0);
    const s = config.server;
    this.server = createServer({
      maxHeaderSize: s.maxHeaderBytes,
      // Checked in the pipeline instead (pipeline.ts admit), so the 400 is JSON with a request id and logged.
      requireHostHeader: false,
      ...serverTimeouts(s),
      // Node enforces both timeouts only when this sweep runs (default every 30 s), so a slow-header
      // client could hold a socket far beyond headersTimeout; sweep often enough to keep it close.
      connectionsCheckingInterval: Math.min(1000, Math.max(50, Math.floor(s.headersTimeoutMs / 4))),
    });
    this.server.on('request', (req, res) => this.onRequest(req, res));
    // With these listeners node leaves Expect to gatehouse: 100 Continue goes out only once the request is admitted
    // (forward.ts), so a refused one is never invited to upload; any other expectation is ignored (RFC 9110 10.1.1
    // allows it), not a bare 417.
    this.server.on('checkContinue', (req, res) => this.onRequest(req, res));
    this.server.on('checkExpectation', (req, res) => this.onRequest(req, res));
    // A forward proxy's method: answered, not left to node, which drops the connection without a word.
    this.server.on('connect', (req: IncomingMessage, socket: Socket) => {
      ownErrors(socket);
      const requestId = requestIdOf(req);
      rejectOnSocket(socket, CONNECT_REFUSED, requestId);
      logRefusal(this.current, CONNECT_REFUSED, requestId, socket.remoteAddress ?? null, req);
    });
    this.server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
      ownErrors(socket);
      this.upgrades.add(socket);
      socket.once('close', () => {
        this.upgrades.delete(socket);
        if (this.draining) this.drained?.();
      });
      if (this.draining) {
        const requestId = requestIdOf(req);
        rejectOnSocket(socket, DRAINING, requestId);
        return logRefusal(this.current, DRAINING, requestId, socket.remoteAddress ?? null, req);
      }
      handleUpgrade(this.current, req, socket, head);
    });
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => this.onClientError(err, socket));
    this.admin = config.admin ? createAdminServer(metrics, { notReadyReason: () => this.notReadyReason() }) : null;
  }

  get plan(): Plan {
    return this.current;
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    if (this.draining) {
      res.shouldKeepAlive = false;
      const requestId = requestIdOf(req);
      sendError(res, DRAINING, requestId);
      logRefusal(this.current, DRAINING, requestId, req.socket.remoteAddress ?? null, req);
      return;
    }
    this.inFlight++;
    this.runtime.metrics.requestsInFlight++;
    const plan = this.current;
    this.planUsers.set(plan, (this.planUsers.get(plan) ?? 0) + 1);
    void handleRequest(plan, req, res, this.requestDone);
  }

  /** Made once: a closure and a .finally() promise per request cost more than a call. */
  private readonly requestDone = (plan: Plan): void => {
    this.inFlight--;
    this.runtime.metrics.requestsInFlight--;
    this.release(plan);
    if (this.draining) this.drained?.();
  };

  /**
   * node:http could not read a request (unparsable, headers too large) or it took too long to arrive. Answered
   * on the socket, and logged like any request: by the pipeline when it holds the request (a body too slow), with
   * the same request id; here otherwise. When an answer is owed first (part of it on the wire, or a pipelined
   * request ahead), an answer now would corrupt it or be read as its: cutting the connection is the only signal.
   */
  private onClientError(err: NodeJS.ErrnoException, socket: Socket): void {
    const res = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
    if (err.code === 'ECONNRESET' || !socket.writable || res?.headersSent) {
      socket.destroy();
      return;
    }
    const error = connectionError(err);
    const ex = res ? exchangeOf(res) : undefined;
    if (ex && !ex.req.complete) {
      // The request in the pipeline is the one node gave up on: its body too slow to arrive, or cut short (the client
      // half-closed mid-body). Its own answer and log line; it must not go on to the upstream, nor stay there.
      ex.connectionError = error;
      rejectOnSocket(socket, error, ex.requestId || randomUUID());
      ex.cancelForwarding?.();
      return;
    }
    const requestId = randomUUID();
    logRefusal(this.current, error, requestId, socket.remoteAddress ?? null);
    // A request read behind one still being answered (pipelining): an answer now would be read as that one's.
    if (res) socket.destroy();
    else rejectOnSocket(socket, error, requestId);
  }

  private release(plan: Plan): void {
    const users = this.planUsers.get(plan)! - 1;
    if (users > 0) return void this.planUsers.set(plan, users);
    this.planUsers.delete(plan);
    // Shutdown retires every plan itself, once.
    if (plan !== this.current && !this.closing) void retirePlans([plan], this.livePlans());
  }

  /** The current plan and every replaced one that still has requests. */
  private livePlans(): Plan[] {
    return [this.current, ...[...this.planUsers.keys()].filter((p) => p !== this.current)];
  }

  notReadyReason(): string | null {
    // Shutting down: load balancers must stop sending here while in-flight requests finish.
    if (this.draining) return 'shutting down';
    if (!this.runtime.store.ready()) return 'rate-limit store unavailable';
    if (this.current.jwt && !this.current.jwt.ready()) return 'a JWT provider has no usable key set yet';
    return null;
  }

  /** Starts both listeners; resolves with their bound ports. */
  async listen(): Promise<{ port: number; adminPort: number | null }> {
    const { server: s, admin: a } = this.current.config;
    await listenOn(this.server, s.port, s.host);
    if (this.admin && a) await listenOn(this.admin, a.port, a.host);
    const port = (this.server.address() as AddressInfo).port;
    const adminPort = this.admin ? (this.admin.address() as AddressInfo).port : null;
    this.runtime.logger.info({ port, admin_port: adminPort, routes: this.current.routes.length }, 'gatehouse listening');
    // Supervisors and tests wait for this line: do not leave it in the write buffer.
    this.runtime.logger.flush();
    return { port, adminPort };
  }

  /**
   * Swaps in a new plan built from `config`; in-flight requests finish on the plan they started with.
   * Settings that need a new process (pendingRestart) keep their running values, and the rest is applied: a key
   * revoked in the same file, or later, must never wait for a restart. Returns 'restart_required' then.
   */
  reload(next: GatehouseConfig): 'ok' | 'restart_required' {
    const old = this.current;
    const pending = pendingRestart(next, old.config);
    const config = pending.length === 0 ? next : keepRunning(next, old.config);
    this.current = compilePlan(config, this.runtime, old);
    settleLargeKeyTable(this.current);
    // The line of an upstream this config dropped is kept while it has requests (a later reload may bring the
    // upstream back); an idle one goes.
    for (const [name, queue] of this.runtime.upstreamQueues) {
      if (!this.current.upstreams.has(name) && queue.active + queue.waiting === 0) this.runtime.upstreamQueues.delete(name);
    }
    // Read by node:http on every sweep and every new connection: tightening them against slow clients needs no
    // restart. The sweep's own interval stays as started (at most a second).
    Object.assign(this.server, serverTimeouts(config.server));
    this.runtime.logger.level = config.log.level;
    const outcome = pending.length === 0 ? 'ok' : 'restart_required';
    this.runtime.metrics.reloads.inc({ outcome });
    if (!this.planUsers.has(old)) void retirePlans([old], this.livePlans());
    return outcome;
  }

  /**
   * Stops accepting, lets in-flight requests finish and open tunnels close (up to shutdownTimeout), then closes
   * everything: a request or tunnel still running is cut off.
   * Idempotent: a second call (another signal, an owner's cleanup) waits for the first instead of
   * closing the upstream pools again, which undici rejects.
   */
  close(): Promise<void> {
    return (this.closing ??= this.shutdown());
  }

  /** Until every request has ended and every upgrade socket closed, or `ms` passed. */
  private async drain(ms: number): Promise<void> {
    if (this.inFlight === 0 && this.upgrades.size === 0) return;
    await new Promise<void>((resolve) => {
      // Called whenever a request ends or an upgrade socket closes.
      this.drained = () => {
        if (this.inFlight === 0 && this.upgrades.size === 0) resolve();
      };
      setTimeout(resolve, ms).unref();
    });
  }

  private async shutdown(): Promise<void> {
    this.draining = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    await this.drain(this.current.config.server.shutdownTimeoutMs);
    this.server.closeAllConnections();
    for (const socket of this.upgrades) socket.destroy();
    await closed;
    // The cut requests end on their sockets' 'close' events, a turn of the event loop later (node's close callback
    // comes first): let them log their 499 before the pools go, one still connecting included.
    await this.drain(CUT_REQUESTS_MS);
    if (this.admin?.listening) await new Promise<void>((resolve) => this.admin!.close(() => resolve()));
    // Whatever still runs was cut off above; a connect still in progress (an upstream that does not accept) must
    // not hold the exit for a connectTimeout.
    await retirePlans(this.livePlans(), [], 'destroy');
    await this.runtime.store.close();
  }
}

/** How long shutdown waits, once it has cut every connection, for the requests on them to end and be logged. */
const CUT_REQUESTS_MS = 1_000;

function listenOn(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

const DRAINING = new ProxyError('service_unavailable', 'gatehouse is shutting down', 'draining');
const CONNECT_REFUSED = new ProxyError('not_implemented', 'CONNECT is not supported: gatehouse is a reverse proxy', 'connect_not_supported');

/**
 * node hands CONNECT and upgrade sockets over without its own 'error' listener: without one, a client resetting
 * the connection while gatehouse answers on it is an uncaught exception, and the process ends.
 */
function ownErrors(socket: Socket): void {
  socket.on('error', () => socket.destroy());
}

/** The client's X-Request-Id when valid (SPEC section 4), else a new one: for answers given outside the pipeline. */
function requestIdOf(req: IncomingMessage): string {
  const sent = req.headers['x-request-id'];
  return typeof sent === 'string' && isValidRequestId(sent) ? sent : randomUUID();
}

function connectionError(err: NodeJS.ErrnoException): ProxyError {
  if (err.code === 'HPE_HEADER_OVERFLOW') return new ProxyError('request_header_fields_too_large', 'the request headers are too large', 'headers_too_large');
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') return new ProxyError('request_timeout', 'the request took too long to arrive', 'request_timeout');
  return new ProxyError('bad_request', 'the request could not be parsed', 'unparsable_request');
}
