// The admin listener: liveness, readiness and Prometheus metrics. Never proxies.
import { createServer, type Server } from 'node:http';
import type { Metrics } from '../observe/metrics.js';

export interface ReadinessProbe {
  /** Null when ready, else why not (e.g. "redis unavailable"). */
  notReadyReason(): string | null;
}

function json(status: number, body: object): [number, Record<string, string>, string] {
  return [status, { 'content-type': 'application/json', 'cache-control': 'no-store' }, JSON.stringify(body)];
}

export function createAdminServer(metrics: Metrics, probe: ReadinessProbe): Server {
  return createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    const reply = ([status, headers, body]: [number, Record<string, string>, string]) => {
      res.writeHead(status, headers);
      res.end(body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return reply(json(405, { error: 'method_not_allowed' }));
    if (path === '/healthz') return reply(json(200, { status: 'ok' }));
    if (path === '/readyz') {
      const reason = probe.notReadyReason();
      return reply(reason ? json(503, { status: 'not_ready', reason }) : json(200, { status: 'ready' }));
    }
    if (path === '/metrics') {
      metrics.registry.metrics().then(
        (text) => reply([200, { 'content-type': metrics.registry.contentType }, text]),
        () => reply(json(500, { error: 'metrics_failed' })),
      );
      return;
    }
    reply(json(404, { error: 'not_found' }));
  });
}
