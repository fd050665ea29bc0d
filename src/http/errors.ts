// The one error type of the request path: stable code + status, rendered to JSON in one place (sendError).
import { randomUUID } from 'node:crypto';
import { STATUS_CODES, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

export type ErrorCode =
  | 'bad_request'
  | 'missing_credentials'
  | 'invalid_token'
  | 'token_expired'
  | 'insufficient_scope'
  | 'not_found'
  | 'method_not_allowed'
  | 'request_header_fields_too_large'
  | 'request_timeout'
  | 'rate_limit_exceeded'
  | 'bad_gateway'
  | 'service_unavailable'
  | 'gateway_timeout'
  | 'not_implemented'
  | 'internal_error';

const STATUS: Record<ErrorCode, number> = {
  bad_request: 400,
  missing_credentials: 401,
  invalid_token: 401,
  token_expired: 401,
  insufficient_scope: 403,
  not_found: 404,
  method_not_allowed: 405,
  request_header_fields_too_large: 431,
  request_timeout: 408,
  rate_limit_exceeded: 429,
  bad_gateway: 502,
  service_unavailable: 503,
  gateway_timeout: 504,
  not_implemented: 501,
  internal_error: 500,
};

const REALM = 'Bearer realm="gatehouse"';
const WWW_AUTHENTICATE: Partial<Record<ErrorCode, string>> = {
  missing_credentials: REALM,
  invalid_token: `${REALM}, error="invalid_token"`,
  token_expired: `${REALM}, error="invalid_token"`,
  insufficient_scope: `${REALM}, error="insufficient_scope"`,
};

export class ProxyError extends Error {
  readonly status: number;
  /**
   * @param code stable machine-readable code, sent as `error`
   * @param message text for the caller; must never contain a credential
   * @param reason finer-grained cause for logs and metrics (e.g. `bad_signature`), never sent
   */
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly reason: string = code,
    readonly headers?: Record<string, string>,
  ) {
    super(message);
    this.status = STATUS[code];
  }
}

export const isProxyError = (e: unknown): e is ProxyError => e instanceof ProxyError;

export function errorBody(err: ProxyError, requestId: string): string {
  return JSON.stringify({ error: err.code, message: err.message, status: err.status, request_id: requestId });
}

/** Writes the SPEC section 6 JSON body. The only place an error becomes a response. */
export function sendError(res: ServerResponse, err: ProxyError, requestId: string, extraHeaders?: Record<string, string | number>): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = errorBody(err, requestId);
  const headers: Record<string, string | number> = {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'x-request-id': requestId,
    'cache-control': 'no-store',
  };
  const challenge = WWW_AUTHENTICATE[err.code];
  if (challenge) headers['www-authenticate'] = challenge;
  if (extraHeaders) Object.assign(headers, extraHeaders);
  if (err.headers) Object.assign(headers, err.headers);
  res.writeHead(err.status, headers);
  res.end(body);
}

/** Writes a JSON error straight to a socket (no ServerResponse exists for parse errors and refused upgrades). */
export function rejectOnSocket(socket: Socket, err: ProxyError, requestId: string = randomUUID(), extra: Record<string, string> = {}): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const body = errorBody(err, requestId);
  const lines = [`HTTP/1.1 ${err.status} ${STATUS_CODES[err.status]}`, 'content-type: application/json', `content-length: ${Buffer.byteLength(body)}`, `x-request-id: ${requestId}`, 'cache-control: no-store', 'connection: close'];
  // A refused WebSocket upgrade is a 401/403 like any other: it carries the same challenge.
  const challenge = WWW_AUTHENTICATE[err.code];
  if (challenge) lines.push(`www-authenticate: ${challenge}`);
  for (const [k, v] of Object.entries({ ...extra, ...err.headers })) lines.push(`${k}: ${v}`);
  socket.end(`${lines.join('\r\n')}\r\n\r\n${body}`);
}
