// Stage: stream the request to the upstream over a keep-alive pool (undici) and stream the answer back.
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { Pool, errors as undiciErrors, type Dispatcher } from 'undici';
import type { UpstreamConfig } from '../config/types.js';
import { ProxyError } from '../http/errors.js';
import type { Metrics } from '../observe/metrics.js';
import type { Exchange } from './exchange.js';

export interface Upstream {
  readonly config: UpstreamConfig;
  readonly pool: Pool;
  /** The URL's path without its trailing slash, prefixed to every forwarded path. */
  readonly basePath: string;
  readonly latency: { observe(seconds: number): void };
}

/** Longest a response body may stall between two chunks before the upstream connection is dropped. */
const BODY_IDLE_MS = 300_000;

export function compileUpstream(config: UpstreamConfig, metrics: Metrics): Upstream {
  const url = new URL(config.url);
  return {
    config,
    pool: new Pool(url.origin, {
      connect: { timeout: config.connectTimeoutMs },
      headersTimeout: config.timeoutMs,
      bodyTimeout: Math.max(config.timeoutMs, BODY_IDLE_MS),
      keepAliveTimeout: 4_000,
      pipelining: 1,
    }),
    basePath: url.pathname.replace(/\/+$/, ''),
    latency: metrics.upstreamLatency.labels(config.name),
  };
}

const HOP_BY_HOP_RESPONSE = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-authenticate']);

function responseHeaders(ex: Exchange, upstream: Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = Object.create(null);
  const connection = upstream.connection;
  const listed = connection ? String(connection).toLowerCase().split(',').map((t) => t.trim()) : null;
  for (const name in upstream) {
    const value = upstream[name];
    if (value === undefined || HOP_BY_HOP_RESPONSE.has(name) || listed?.includes(name)) continue;
    out[name] = value;
  }
  if (ex.responseHeaders) Object.assign(out, ex.responseHeaders);
  out['x-request-id'] = ex.requestId;
  return out;
}

function upstreamError(err: unknown): ProxyError {
  const code = (err as { code?: string }).code;
  if (err instanceof undiciErrors.HeadersTimeoutError || err instanceof undiciErrors.ConnectTimeoutError || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT') {
    return new ProxyError('gateway_timeout', 'the upstream did not answer in time', 'upstream_timeout');
  }
  return new ProxyError('bad_gateway', 'the upstream refused the connection or answered badly', `upstream_error:${code ?? 'unknown'}`);
}

/**
 * Tells undici that the client went away. undici takes an EventEmitter as a request signal as well as an
 * AbortSignal (Dispatcher.RequestOptions.signal) and uses only `aborted`, `reason`, `once` and `removeListener`
 * of it, for its one listener. An AbortController costs a few µs per request to create and listen to, an
 * EventEmitter about a microsecond; this holds that one listener in a field.
 */
class ClientGone {
  aborted = false;
  reason: Error | undefined = undefined;
  private listener: (() => void) | null = null;

  on(_event: 'abort', listener: () => void): this {
    this.listener = listener;
    return this;
  }

  once(event: 'abort', listener: () => void): this {
    return this.on(event, listener);
  }

  removeListener(_event: 'abort', listener: () => void): this {
    if (this.listener === listener) this.listener = null;
    return this;
  }

  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = new undiciErrors.RequestAbortedError('the client closed the connection');
    const listener = this.listener;
    this.listener = null;
    listener?.();
  }
}

export async function forward(ex: Exchange, headers: Record<string, string | string[]>): Promise<void> {
  const upstream = ex.route!.upstream!;
  const { req } = ex;
  const res = ex.res!;
  const hasBody = req.headers['content-length'] !== undefined ? req.headers['content-length'] !== '0' : req.headers['transfer-encoding'] !== undefined;
  const sent = performance.now();
  // A client that goes away (or is cut off by a shutdown) must not leave its upstream request running
  // until the upstream timeout: that holds a pool connection and makes a graceful shutdown wait for it.
  const abandoned = new ClientGone();
  const onClose = () => {
    if (!res.writableFinished) abandoned.abort();
  };
  if (res.destroyed) abandoned.abort();
  else res.once('close', onClose);
  const options: Dispatcher.RequestOptions = {
    path: upstream.basePath + ex.path + ex.search,
    method: req.method as Dispatcher.HttpMethod,
    headers,
    body: hasBody ? req : null,
    reset: !upstream.config.keepAlive,
    signal: abandoned as unknown as EventEmitter,
  };
  try {
    await upstream.pool.stream(options, ({ statusCode, headers: answer }) => {
      ex.upstreamMs = performance.now() - sent;
      upstream.latency.observe(ex.upstreamMs / 1000);
      ex.status = statusCode;
      res.writeHead(statusCode, responseHeaders(ex, answer));
      return res;
    });
  } catch (err) {
    if (abandoned.aborted) {
      // Nobody is left to answer; 499 is the customary log status for it (nginx).
      ex.status = 499;
      ex.reason = 'client_closed';
      return;
    }
    if (res.headersSent || res.destroyed) {
      // The answer had started: the only honest signal left is to cut the connection.
      ex.reason = 'upstream_aborted';
      res.destroy();
      return;
    }
    throw upstreamError(err);
  } finally {
    res.off('close', onClose);
  }
}
