// Benchmark ceiling: a bare Node pass-through on undici, keep-alive, no auth, no logging.
// Same pool settings as gatehouse's forward stage, so the gap to gatehouse is gatehouse's own work.
// Usage: node bench/bare-proxy.mjs PORT UPSTREAM_URL [dispatch|stream|headers]
//   dispatch (default): Pool.dispatch with one handler object per request, as gatehouse forwards.
//   stream: Pool.stream, undici's higher-level API (the ceiling of earlier runs; about a tenth slower).
//   headers: dispatch, adding the headers gatehouse adds in scenario 4 (fixed values, a fresh request id):
//     what node and undici spend on the header contract of SPEC alone, with none of gatehouse's own work.
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { Pool } from 'undici';

const port = Number(process.argv[2]);
const mode = process.argv[4] ?? 'dispatch';
const pool = new Pool(process.argv[3], { keepAliveTimeout: 4_000, pipelining: 1, connections: 1024 });
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'host']);

function requestHeaders(req) {
  const headers = {};
  for (const name in req.headers) if (!HOP_BY_HOP.has(name)) headers[name] = req.headers[name];
  return headers;
}

function responseHeaders(answer) {
  const out = {};
  for (const name in answer) if (!HOP_BY_HOP.has(name)) out[name] = answer[name];
  return out;
}

// Mode 'headers': gatehouse's additions in scenario 4 (bench/gatehouse-config.mjs), as it sends them: the identity
// and claim headers of the bench token, the forwarding headers, X-Request-Id both ways, both rate-limit header sets.
const IDENTITY = ['x-auth-tenant', 'tenant-0', 'x-auth-subject', 'user-0', 'x-auth-role', 'member', 'x-auth-scopes', 'reports:read reports:write', 'x-auth-method', 'jwt', 'x-auth-key-id', 'bench', 'x-auth-email', 'user-0@example.com'];
const RATE_LIMIT = ['ratelimit', '"standard";r=999999999;t=1', 'ratelimit-policy', '"standard";q=1000000000;w=3600', 'x-ratelimit-limit', '1000000000', 'x-ratelimit-remaining', '999999999', 'x-ratelimit-reset', '1'];

function requestHeadersAdded(req, requestId) {
  const headers = [];
  for (const name in req.headers) if (!HOP_BY_HOP.has(name)) headers.push(name, req.headers[name]);
  headers.push(...IDENTITY, 'x-forwarded-for', req.socket.remoteAddress, 'x-forwarded-proto', 'http', 'x-forwarded-host', req.headers.host, 'x-request-id', requestId);
  return headers;
}

function responseHeadersAdded(answer, requestId) {
  const out = [];
  for (const name in answer) if (!HOP_BY_HOP.has(name)) out.push(name, answer[name]);
  out.push(...RATE_LIMIT, 'x-request-id', requestId);
  return out;
}

const hasBody = (req) => (req.headers['content-length'] !== undefined ? req.headers['content-length'] !== '0' : req.headers['transfer-encoding'] !== undefined);

function badGateway(res) {
  if (res.headersSent) return res.destroy();
  res.writeHead(502);
  res.end();
}

class Handler {
  constructor(res, requestId = null) {
    this.res = res;
    this.requestId = requestId;
    this.controller = null;
  }
  onRequestStart(controller) {
    this.controller = controller;
  }
  onResponseStart(_controller, statusCode, answer) {
    if (statusCode < 200) return;
    this.res.writeHead(statusCode, this.requestId === null ? responseHeaders(answer) : responseHeadersAdded(answer, this.requestId));
  }
  onResponseData(controller, chunk) {
    if (!this.res.write(chunk)) {
      controller.pause();
      this.res.once('drain', () => controller.resume());
    }
  }
  onResponseEnd() {
    this.res.end();
  }
  onResponseError() {
    badGateway(this.res);
  }
}

const server = createServer(
  mode === 'stream'
    ? async (req, res) => {
        try {
          await pool.stream({ path: req.url, method: req.method, headers: requestHeaders(req), body: hasBody(req) ? req : null }, ({ statusCode, headers }) => {
            res.writeHead(statusCode, responseHeaders(headers));
            return res;
          });
        } catch {
          badGateway(res);
        }
      }
    : mode === 'headers'
      ? (req, res) => {
          const requestId = randomUUID();
          pool.dispatch({ path: req.url, method: req.method, headers: requestHeadersAdded(req, requestId), body: hasBody(req) ? req : null }, new Handler(res, requestId));
        }
      : (req, res) => {
          pool.dispatch({ path: req.url, method: req.method, headers: requestHeaders(req), body: hasBody(req) ? req : null }, new Handler(res));
        },
);
server.keepAliveTimeout = 5_000;
server.listen(port, '127.0.0.1');
process.on('SIGTERM', () => pool.close().finally(() => process.exit(0)));
