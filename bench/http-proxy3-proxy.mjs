// Benchmark comparison: a bare pass-through on http-proxy-3 (createProxyServer, web mode) with a keep-alive agent.
// Usage: node bench/http-proxy3-proxy.mjs PORT UPSTREAM_URL
import { Agent, createServer } from 'node:http';
import { createProxyServer } from 'http-proxy-3';

const port = Number(process.argv[2]);
const agent = new Agent({ keepAlive: true, keepAliveMsecs: 4_000 });
const proxy = createProxyServer({ target: process.argv[3], agent, xfwd: false });
proxy.on('error', (_err, _req, res) => {
  // For web requests res is a ServerResponse; answer 502 unless the answer already started.
  if (res && 'headersSent' in res && !res.headersSent) {
    res.writeHead(502);
    res.end();
  } else res?.destroy?.();
});

const server = createServer((req, res) => proxy.web(req, res));
server.keepAliveTimeout = 5_000;
server.listen(port, '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
