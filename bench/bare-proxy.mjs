// Benchmark ceiling: a bare Node pass-through on undici, keep-alive, no auth, no logging.
// Same pool settings as gatehouse's forward stage, so the gap to gatehouse is gatehouse's own work.
// Usage: node bench/bare-proxy.mjs PORT UPSTREAM_URL [dispatch|stream]
//   dispatch (default): Pool.dispatch with one handler object per request, as gatehouse forwards.
//   stream: Pool.stream, undici's higher-level API (the ceiling of earlier runs; about a tenth slower).
import { createServer } from 'node:http';
import { Pool } from 'undici';

const port = Number(process.argv[2]);
const mode = process.argv[4] ?? 'dispatch';
const pool = new Pool(process.argv[3], { keepAliveTimeout: 4_000, pipelining: 1 });
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

const hasBody = (req) => (req.headers['content-length'] !== undefined ? req.headers['content-length'] !== '0' : req.headers['transfer-encoding'] !== undefined);

function badGateway(res) {
  if (res.headersSent) return res.destroy();
  res.writeHead(502);
  res.end();
}

class Handler {
  constructor(res) {
    this.res = res;
    this.controller = null;
  }
  onRequestStart(controller) {
    this.controller = controller;
  }
  onResponseStart(_controller, statusCode, answer) {
    if (statusCode >= 200) this.res.writeHead(statusCode, responseHeaders(answer));
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
    : (req, res) => {
        pool.dispatch({ path: req.url, method: req.method, headers: requestHeaders(req), body: hasBody(req) ? req : null }, new Handler(res));
      },
);
server.keepAliveTimeout = 5_000;
server.listen(port, '127.0.0.1');
process.on('SIGTERM', () => pool.close().finally(() => process.exit(0)));
