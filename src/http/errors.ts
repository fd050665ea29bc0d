// The one error type of the request path: stable code + status, rendered to JSON in one place (sendError).
import type { ServerResponse } from 'node:http';

export type ErrorCode =
  | 'bad_request'
  | 'missing_credentials'
  | 'invalid_token'
  | 'token_expired'
  | 'insufficient_scope'
  | 'not_found'
  | 'request_header_fields_too_large'
  | 'rate_limit_exceeded'
  | 'bad_gateway'
  | 'service_unavailable'
  | 'gateway_timeout';

const STATUS: Record<ErrorCode, number> = {
  bad_request: 400,
  missing_credentials: 401,
  invalid_token: 401,
  token_expired: 401,
  insufficient_scope: 403,
  not_found: 404,
  request_header_fields_too_large: 431,
  rate_limit_exceeded: 429,
  bad_gateway: 502,
  service_unavailable: 503,
  gateway_timeout: 504,
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

/** Writes the SPEC section 6 JSON body. The only place an error becomes a response. */
export function sendError(res: ServerResponse, err: ProxyError, requestId: string, extraHeaders?: Record<string, string | number>): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify({ error: err.code, message: err.message, status: err.status, request_id: requestId });
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
