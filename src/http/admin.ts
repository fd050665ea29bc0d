// The admin listener: liveness, readiness and Prometheus metrics. Never proxies.
import { randomUUID } from 'node:crypto';
import { createServer, type ServerResponse, type Server } from 'node:http';
import type { Metrics } from '../observe/metrics.js';
import { ProxyError, sendError } from './errors.js';

export interface ReadinessProbe {
  /** Null when ready, else why not (e.g. "redis unavailable"). */
  notReadyReason(): string | null;
}

function json(status: number, body: object): [number, Record<string, string>, string] {
  return [status, { 'content-type': 'application/json', 'cache-control': 'no-store' }, JSON.stringify(body)];
}

/** Admin refusals are gatehouse's own answers too, so they have the SPEC section 6 shape. */
const refuse = (res: ServerResponse, err: ProxyError, headers?: Record<string, string>) => sendError(res, err, randomUUID(), headers);

export function createAdminServer(metrics: Metrics, probe: ReadinessProbe): Server {
  return createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    const reply = ([status, headers, body]: [number, Record<string, string>, string]) => {
      res.writeHead(status, headers);
      res.end(body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      return refuse(res, new ProxyError('method_not_allowed', 'the admin listener answers GET and HEAD only'), { allow: 'GET, HEAD' });
    }
    if (path === '/healthz') return reply(json(200, { status: 'ok' }));
    if (path === '/readyz') {
      const reason = probe.notReadyReason();
      return reply(reason ? json(503, { status: 'not_ready', reason }) : json(200, { status: 'ready' }));
    }
    if (path === '/metrics') {
      metrics.registry.metrics().then(
        (text) => reply([200, { 'content-type': metrics.registry.contentType }, text]),
        () => refuse(res, new ProxyError('internal_error', 'the metrics could not be collected')),
      );
      return;
    }
    refuse(res, new ProxyError('not_found', 'the admin listener serves /healthz, /readyz and /metrics only'));
  });
}
