// Benchmark upstream: a minimal node:http server answering every request with one small fixed body.
// Usage: node bench/upstream.mjs PORT
import { createServer } from 'node:http';

const port = Number(process.argv[2]);
const body = Buffer.from('{"ok":true,"service":"bench-upstream"}\n');

const server = createServer((req, res) => {
  // Drain any request body before answering, so keep-alive connections stay usable.
  req.resume();
  req.on('end', () => {
    if (req.url.endsWith('/__echo')) {
      // Only for the runner's pre-check (what did the proxy send?), never in a measured run.
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify(req.headers));
    }
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
    res.end(body);
  });
});
server.keepAliveTimeout = 65_000;
server.listen(port, '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
