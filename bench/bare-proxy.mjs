// Benchmark ceiling: a bare Node pass-through on undici (Pool.stream, keep-alive), no auth, no logging.
// Same pool settings as gatehouse's forward stage, so the gap to gatehouse is gatehouse's own work.
// Usage: node bench/bare-proxy.mjs PORT UPSTREAM_URL
import { createServer } from 'node:http';
import { Pool } from 'undici';

const port = Number(process.argv[2]);
const pool = new Pool(process.argv[3], { keepAliveTimeout: 4_000, pipelining: 1 });
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'host']);

const server = createServer(async (req, res) => {
  const headers = {};
  for (const name in req.headers) if (!HOP_BY_HOP.has(name)) headers[name] = req.headers[name];
  const hasBody = req.headers['content-length'] !== undefined ? req.headers['content-length'] !== '0' : req.headers['transfer-encoding'] !== undefined;
  try {
    await pool.stream({ path: req.url, method: req.method, headers, body: hasBody ? req : null }, ({ statusCode, headers: answer }) => {
      const out = {};
      for (const name in answer) if (!HOP_BY_HOP.has(name)) out[name] = answer[name];
      res.writeHead(statusCode, out);
      return res;
    });
  } catch {
    if (res.headersSent) res.destroy();
    else {
      res.writeHead(502);
      res.end();
    }
  }
});
server.keepAliveTimeout = 5_000;
server.listen(port, '127.0.0.1');
process.on('SIGTERM', () => pool.close().finally(() => process.exit(0)));
