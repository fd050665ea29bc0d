// The request flow, in order. Each stage is one file named by its verb; errors become responses in one place.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Plan } from '../config/compile.js';
import { isProxyError, ProxyError, sendError } from '../http/errors.js';
import { writeAccessLine } from '../observe/access-log.js';
import { authenticate } from './authenticate.js';
import { authorize } from './authorize.js';
import { Exchange } from './exchange.js';
import { forward } from './forward.js';
import { injectIdentity } from './inject-identity.js';
import { matchRoute, normalizePath } from './match-route.js';
import { rateLimit } from './rate-limit.js';
import { respondIdentity } from './respond-identity.js';
import { isValidRequestId, sanitizeHeaders } from './sanitize-headers.js';

const MISSING_HOST = new ProxyError('bad_request', 'an HTTP/1.1 request needs a Host header', 'missing_host');

/** `done` runs once the request is answered and logged, whatever happened (the gateway's in-flight accounting). */
export async function handleRequest(plan: Plan, req: IncomingMessage, res: ServerResponse, done: (plan: Plan) => void): Promise<void> {
  const ex = new Exchange(plan, req, res, performance.now());
  try {
    const admitting = admit(ex);
    if (admitting) await admitting;
    if (ex.route!.respondIdentity) respondIdentity(ex);
    else await forward(ex, injectIdentity(ex));
  } catch (err) {
    fail(ex, err);
  }
  try {
    logAccess(ex);
  } finally {
    done(plan);
  }
}

/**
 * Every stage before the request leaves gatehouse; shared by HTTP and Upgrade requests. Synchronous unless a
 * stage has to wait (a JWT to verify, a Redis round trip): most requests are a cache hit and a memory store,
 * and every await costs a promise and a microtask turn.
 */
export function admit(ex: Exchange): void | Promise<void> {
  ex.incoming = sanitizeHeaders(ex.plan.headers, ex.req.rawHeaders);
  ex.requestId = isValidRequestId(ex.incoming.requestId) ? ex.incoming.requestId : randomUUID();
  ex.clientIp = ex.plan.clientIp(ex.req.socket.remoteAddress ?? '', ex.incoming.forwardedFor);
  // RFC 9112 3.2: node would refuse it with a bare 400; here it is JSON with a request id, and logged.
  if (ex.incoming.host === undefined && ex.req.httpVersionMinor === 1) throw MISSING_HOST;
  splitUrl(ex);
  ex.route = matchRoute(ex.plan.routes, ex.req.method!, ex.path);
  const authenticating = authenticate(ex);
  return authenticating ? authenticating.then(() => authorizeAndLimit(ex)) : authorizeAndLimit(ex);
}

function authorizeAndLimit(ex: Exchange): void | Promise<void> {
  authorize(ex);
  return rateLimit(ex);
}

function splitUrl(ex: Exchange): void {
  const url = ex.req.url ?? '';
  const q = url.indexOf('?');
  ex.path = normalizePath(q === -1 ? url : url.slice(0, q));
  ex.search = q === -1 ? '' : url.slice(q);
}

/** The one place a thrown error becomes an answer. */
export function fail(ex: Exchange, err: unknown): void {
  if (!ex.requestId) ex.requestId = randomUUID();
  const error = isProxyError(err) ? err : new ProxyError('internal_error', 'gatehouse failed to handle the request', 'internal_error');
  if (!isProxyError(err)) ex.plan.runtime.logger.error({ err, request_id: ex.requestId }, 'unexpected error');
  ex.status = error.status;
  ex.reason = error.reason;
  if (ex.res) sendError(ex.res, error, ex.requestId, ex.responseHeaders ?? undefined);
}

export function logAccess(ex: Exchange): void {
  const { runtime } = ex.plan;
  const route = ex.route?.name ?? null;
  const id = ex.identity;
  const status = ex.connectionError?.status ?? ex.status;
  runtime.metrics.countRequest(route ?? '', status);
  writeAccessLine(runtime.logger, {
    request_id: ex.requestId,
    method: ex.req.method!,
    path: ex.path || null,
    route,
    status,
    duration_ms: performance.now() - ex.started,
    upstream_ms: ex.upstreamMs,
    tenant: id?.tenant ?? null,
    subject: id?.subject ?? null,
    auth: id?.method ?? null,
    key_id: id?.keyId ?? null,
    ip: ex.clientIp || (ex.req.socket.remoteAddress ?? null),
    reason: ex.connectionError?.reason ?? ex.reason,
  });
}

/**
 * The access line (and request count) of an answer given outside the pipeline: a request node:http could not
 * parse, a CONNECT, one refused while draining. No route, no identity; the method and path when node read them.
 */
export function logRefusal(plan: Plan, error: ProxyError, requestId: string, ip: string | null, req: IncomingMessage | null = null): void {
  const { runtime } = plan;
  runtime.metrics.countRequest('', error.status);
  writeAccessLine(runtime.logger, {
    request_id: requestId,
    method: req?.method ?? null,
    path: req ? (req.url ?? '').split('?', 1)[0] : null,
    route: null,
    status: error.status,
    duration_ms: 0,
    upstream_ms: null,
    tenant: null,
    subject: null,
    auth: null,
    key_id: null,
    ip,
    reason: error.reason,
  });
}
