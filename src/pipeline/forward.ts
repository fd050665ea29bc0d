// Stage: stream the request to the upstream over a keep-alive pool (undici) and stream the answer back.
import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { Pool, errors as undiciErrors, type Dispatcher } from 'undici';
import type { UpstreamConfig } from '../config/types.js';
import { ProxyError } from '../http/errors.js';
import type { Metrics } from '../observe/metrics.js';
import type { Exchange } from './exchange.js';
import type { Queued, UpstreamQueue } from './upstream-queue.js';

export interface Upstream {
  readonly config: UpstreamConfig;
  readonly pool: Pool;
  /** The URL's path without its trailing slash, prefixed to every forwarded path. */
  readonly basePath: string;
  readonly latency: { observe(seconds: number): void };
  /** The connection limits' line of this upstream name, shared by its pools across reloads. */
  readonly queue: UpstreamQueue;
}

/** Longest a response body may stall between two chunks before the upstream connection is dropped. */
const BODY_IDLE_MS = 300_000;

export function compileUpstream(config: UpstreamConfig, metrics: Metrics, queue: UpstreamQueue): Upstream {
  const url = new URL(config.url);
  return {
    config,
    pool: new Pool(url.origin, {
      connect: { timeout: config.connectTimeoutMs },
      headersTimeout: config.timeoutMs,
      bodyTimeout: Math.max(config.timeoutMs, BODY_IDLE_MS),
      keepAliveTimeout: 4_000,
      pipelining: 1,
      // One request per connection (pipelining 1). The queue sends no more than this; a backstop.
      connections: config.maxConnections,
    }),
    basePath: url.pathname.replace(/\/+$/, ''),
    latency: metrics.upstreamLatency.recorder(config.name),
    queue,
  };
}

export const HOP_BY_HOP_RESPONSE: ReadonlySet<string> = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-authenticate']);

/**
 * The upstream's response headers minus hop-by-hop ones, then gatehouse's own, as the flat [name, value, ...]
 * list node:http takes: cheaper to build than an object and sent in this order. A name gatehouse sets itself
 * (rate-limit headers, X-Request-Id) replaces the upstream's.
 */
function responseHeaders(ex: Exchange, upstream: Record<string, string | string[] | undefined>): string[] {
  const out: string[] = [];
  const own = ex.responseHeaders;
  // Headers the upstream's Connection names are hop-by-hop too; plain keep-alive or close (nearly every answer)
  // names none, and is settled without splitting.
  const connection = upstream.connection;
  const listed = connection === undefined || connection === 'keep-alive' || connection === 'close' ? null : String(connection).toLowerCase().split(',').map((t) => t.trim());
  for (const name in upstream) {
    const value = upstream[name];
    if (value === undefined || HOP_BY_HOP_RESPONSE.has(name) || name === 'x-request-id' || listed?.includes(name)) continue;
    if (own !== null && Object.hasOwn(own, name)) continue;
    if (typeof value === 'string') out.push(name, value);
    else for (const v of value) out.push(name, v);
  }
  if (own !== null) for (const name in own) out.push(name, own[name]);
  out.push('x-request-id', ex.requestId);
  return out;
}

const UPSTREAM_BUSY = new ProxyError('service_unavailable', 'the upstream is at its connection limit and its queue is full', 'upstream_busy');
const QUEUE_TIMEOUT = new ProxyError('gateway_timeout', 'no connection to the upstream was free in time', 'upstream_timeout');

function upstreamError(err: unknown): ProxyError {
  const code = (err as { code?: string }).code;
  if (err instanceof undiciErrors.HeadersTimeoutError || err instanceof undiciErrors.ConnectTimeoutError || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT') {
    return new ProxyError('gateway_timeout', 'the upstream did not answer in time', 'upstream_timeout');
  }
  return new ProxyError('bad_gateway', 'the upstream refused the connection or answered badly', `upstream_error:${code ?? 'unknown'}`);
}

/**
 * One forwarded request, as an undici dispatch handler: the answer's head goes out when the upstream's arrives,
 * body chunks are written as they come with backpressure both ways, and a client that goes away aborts the
 * upstream request. Pool.stream does the same through a promise, an AsyncResource, a stream factory and
 * stream.finished() listeners on the response; this is one object, and about a tenth of the proxy's CPU less.
 */
class Forwarding implements Dispatcher.DispatchHandler, Queued {
  private controller: Dispatcher.DispatchController | null = null;
  private clientGone = false;
  private settled = false;
  /**
   * A 204 or 304: the head is the whole answer (RFC 9110 sections 15.3.5 and 15.4.5), sent and ended at once. A 304
   * may carry the Content-Length of the full representation, which undici counts as a body that never came.
   */
  private headOnly = false;
  /** The answer's status and head, from the upstream's head until sendHead writes them. */
  private status = 0;
  private head: string[] | null = null;
  /** Whether a 'drain' listener was ever added (backpressure), so settle() removes it only then. */
  private paused = false;
  /** The client connection, watched while this response waits behind another (pipelining). */
  private connection: Socket | null = null;
  /**
   * Armed while the request waits in line for a free upstream connection (`maxConnections`): it waits at most
   * `timeout`. Once sent, undici's headersTimeout runs as for any request (from the moment it is written; an
   * upload still streaming is not cut short).
   */
  private queueTimer: NodeJS.Timeout | undefined = undefined;
  /** Waiting in line, from wait() until send() or abandon(). */
  private inLine = false;
  /** Given up while waiting in line (504, or its client left): out of line, never sent. */
  abandoned = false;
  private readonly onClose = () => {
    if (this.settled || this.abandoned || this.clientGone || this.res.writableFinished) return;
    this.clientGone = true;
    if (this.controller !== null) return this.controller.abort(new undiciErrors.RequestAbortedError('the client closed the connection'));
    if (this.inLine) return this.abandon(499, 'client_closed');
    if (this.sent === 0) return; // not yet in line or sent: send() or wait() sees clientGone
    // Sent, its connection still being made: logged now (a shutdown may end the process before the connect does);
    // undici aborts it in onRequestStart, or fails it, and settle() gives its place back then.
    this.ex.status = 499;
    this.ex.reason = 'client_closed';
    this.resolve();
  };
  private readonly onQueueTimeout = () => {
    this.queueTimer = undefined;
    this.abandon(504, 'upstream_timeout');
  };
  private readonly onDrain = () => {
    clearTimeout(this.stall);
    this.controller?.resume();
  };
  /** Armed while the client is not reading (backpressure): it gets `server.sendTimeout` to start again. */
  private stall: NodeJS.Timeout | undefined = undefined;
  private sendTimedOut = false;
  private readonly onStall = () => {
    // Cut off: the 'close' that follows aborts the upstream request, and the log says why.
    this.sendTimedOut = true;
    this.ex.reason = 'send_timeout';
    this.res.destroy();
  };

  /** When the request was handed to undici: the upstream's latency counts from here, not from the wait in line. */
  private sent = 0;
  readonly maxConnections: number;

  constructor(
    private readonly ex: Exchange,
    private readonly res: ServerResponse,
    private readonly upstream: Upstream,
    private readonly request: Dispatcher.DispatchOptions,
    /** Expect: 100-continue: the client sends its body once invited, which is when the request is sent. */
    private readonly expectsContinue: boolean,
    private readonly resolve: () => void,
    private readonly reject: (err: ProxyError) => void,
  ) {
    this.maxConnections = upstream.config.maxConnections;
    ex.cancelForwarding = this.onClose;
    // A client that goes away (or is cut off by a shutdown) must not leave its upstream request running
    // until the upstream timeout: that holds a pool connection and makes a graceful shutdown wait for it.
    // `on`, never removed: every response emits 'close' once, at its end; a settled one is ignored, which costs
    // less than once()'s wrapper and a removeListener on every request.
    res.on('close', this.onClose);
    // A response queued behind another on a pipelined connection has no socket yet, and node never emits its
    // 'close' if the connection dies first: until it is this response's turn, watch the connection itself.
    if (res.socket === null) {
      const connection = ex.req.socket;
      this.connection = connection;
      // One listener per answer waiting on this connection, each removed when it settles: raise the limit with them,
      // or a client pipelining a dozen requests would print node's listener-leak warning.
      connection.setMaxListeners(connection.getMaxListeners() + 1);
      connection.on('close', this.onClose);
      if (connection.destroyed) this.onClose();
    }
    // Gone already, or already answered on the socket by node (a body too slow while it was being authenticated).
    if (res.destroyed || ex.connectionError !== null) this.onClose();
  }

  wait(): void {
    this.inLine = true;
    if (this.clientGone) return this.abandon(499, 'client_closed');
    // `timeout: 0` is no timeout, for the wait as for undici's headersTimeout.
    const { timeoutMs } = this.upstream.config;
    if (timeoutMs > 0) this.queueTimer = setTimeout(this.onQueueTimeout, timeoutMs);
  }

  send(): void {
    this.inLine = false;
    if (this.queueTimer !== undefined) {
      clearTimeout(this.queueTimer);
      this.queueTimer = undefined;
    }
    if (this.clientGone) {
      // Left before it was sent (during a slow authentication, say): never sent, so no upstream connection is spent
      // on a request aborted at once. Its place goes to the next in line.
      this.ex.status = 499;
      this.ex.reason = 'client_closed';
      this.settle();
      return this.resolve();
    }
    // Admitted and on its way: now a client waiting on Expect: 100-continue may send its body (server.ts leaves
    // this to us). One given up in line never is, and gets its 504 without having uploaded anything.
    if (this.expectsContinue && !this.res.destroyed) this.res.writeContinue();
    this.sent = performance.now();
    this.upstream.pool.dispatch(this.request, this);
  }

  /** Gives up a request waiting in line: the 504 of `timeout`, or 499 when its client left. It was never sent. */
  private abandon(status: 499 | 504, reason: string): void {
    clearTimeout(this.queueTimer);
    this.queueTimer = undefined;
    this.inLine = false;
    this.abandoned = true;
    this.upstream.queue.leave();
    this.detach();
    if (status === 504) return this.reject(QUEUE_TIMEOUT);
    this.ex.status = status;
    this.ex.reason = reason;
    this.resolve();
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.clientGone) controller.abort(new undiciErrors.RequestAbortedError('the client closed the connection'));
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[]>): void {
    if (statusCode < 200) return; // 1xx: the final answer is still to come
    const { ex } = this;
    ex.upstreamMs = performance.now() - this.sent;
    this.upstream.latency.observe(ex.upstreamMs / 1000);
    // A 204 has no content at all, so no Content-Length either (RFC 9110 section 8.6).
    if (statusCode === 204) delete headers['content-length'];
    this.status = statusCode;
    this.head = responseHeaders(ex, headers);
    // Set only once the head went out: if node refuses it, the abort comes back as an error still to answer (502).
    if ((statusCode === 204 || statusCode === 304) && this.sendHead(controller)) {
      this.headOnly = true;
      this.res.end();
    }
  }

  /**
   * Writes the answer's head, with its first body bytes or its end: node sends a head with the first write anyway,
   * and an upstream that fails before any body byte still gets the client a 502 instead of a cut connection.
   * False when node refuses an upstream header (invalid characters): the request is aborted, nothing went out.
   */
  private sendHead(controller: Dispatcher.DispatchController): boolean {
    const head = this.head!;
    this.head = null;
    try {
      this.res.writeHead(this.status, head);
    } catch {
      controller.abort(new undiciErrors.ResponseError('the upstream sent a header that cannot be forwarded', this.status, { headers: {}, body: null }));
      return false;
    }
    this.ex.status = this.status;
    return true;
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.headOnly) return;
    if (this.head !== null && !this.sendHead(controller)) return;
    if (!this.res.write(chunk)) {
      controller.pause();
      this.paused = true;
      this.res.once('drain', this.onDrain);
      const { sendTimeoutMs } = this.ex.plan.config.server;
      if (sendTimeoutMs > 0) this.stall = setTimeout(this.onStall, sendTimeoutMs);
    }
  }

  onResponseEnd(controller: Dispatcher.DispatchController): void {
    if (this.head !== null && !this.sendHead(controller)) {
      // Too late for the abort to come back as onResponseError: the upstream is done. Nothing went out: a 502.
      this.settle();
      return this.reject(upstreamError({ code: 'invalid_header' }));
    }
    if (!this.headOnly) this.res.end();
    this.settle();
    this.resolve();
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    const { ex, res } = this;
    this.settle();
    if (this.headOnly) {
      // The client has its whole answer; what undici says of the body after it (a Content-Length on a 304 that
      // counts no bytes here) concerns only the upstream connection, which undici closes.
    } else if (this.sendTimedOut) {
      // Cut off by onStall: the status the answer began with, and reason send_timeout, stay as they are.
    } else if (this.clientGone || ex.req.socket?.destroyed) {
      // Nobody is left to answer; 499 is the customary log status for it (nginx). The connection is asked too: when
      // the client leaves, undici's error can come before the response's 'close' that sets clientGone.
      ex.status = 499;
      ex.reason = 'client_closed';
    } else if (res.headersSent || res.destroyed) {
      // The answer had started: the only honest signal left is to cut the connection.
      ex.reason = 'upstream_aborted';
      res.destroy();
    } else {
      return this.reject(upstreamError(err));
    }
    this.resolve();
  }

  /** undici is done with the request: its connection goes to the next in line. */
  private settle(): void {
    this.settled = true;
    this.detach();
    this.upstream.queue.release();
  }

  private detach(): void {
    if (this.paused) {
      this.res.off('drain', this.onDrain);
      clearTimeout(this.stall);
    }
    if (this.connection !== null) {
      this.connection.off('close', this.onClose);
      this.connection.setMaxListeners(this.connection.getMaxListeners() - 1);
      this.connection = null;
    }
  }
}

/** node's own test for a request that waits for 100 Continue (it then emits 'checkContinue'): the token anywhere. */
const CONTINUE = /(?:^|\W)100-continue(?:$|\W)/i;

export function forward(ex: Exchange, headers: string[]): Promise<void> {
  const upstream = ex.route!.upstream!;
  // Every connection busy and the line full: refuse at once rather than pile requests on an upstream that is behind.
  if (!upstream.queue.hasRoom(upstream.config.maxConnections, upstream.config.maxPending)) throw UPSTREAM_BUSY;
  const { req } = ex;
  const hasBody = req.headers['content-length'] !== undefined ? req.headers['content-length'] !== '0' : req.headers['transfer-encoding'] !== undefined;
  const request: Dispatcher.DispatchOptions = {
    path: upstream.basePath + ex.path + ex.search,
    method: req.method as Dispatcher.HttpMethod,
    headers,
    body: hasBody ? req : null,
    reset: !upstream.config.keepAlive,
  };
  const expectsContinue = hasBody && req.headers.expect !== undefined && CONTINUE.test(req.headers.expect);
  return new Promise((resolve, reject) => {
    upstream.queue.enter(new Forwarding(ex, ex.res!, upstream, request, expectsContinue, resolve, reject));
  });
}
