// WebSocket upgrades: the same admission stages as HTTP, then a two-way tunnel (http-proxy-3). Other upgrades are refused.
import type { ClientRequest, IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { createProxyServer } from 'http-proxy-3';
import type { Plan } from '../config/compile.js';
import { Exchange } from '../pipeline/exchange.js';
import { HOP_BY_HOP_RESPONSE } from '../pipeline/forward.js';
import { injectIdentity } from '../pipeline/inject-identity.js';
import { headerRecord } from '../pipeline/sanitize-headers.js';
import { admit, fail, logAccess } from '../pipeline/pipeline.js';
import { isProxyError, ProxyError, rejectOnSocket } from './errors.js';

const tunnels = createProxyServer({ ws: true, xfwd: false, changeOrigin: false });

/** One upgrade on its way to the upstream, from tunnels.ws() until the upstream switched, answered or failed. */
interface Handshake {
  /** Gatehouse's own headers for the answer (X-Request-Id, rate-limit headers). */
  readonly own: Record<string, string>;
  readonly requestId: string;
  readonly timeoutMs: number;
  /** Called once, with the status the client got (or 504/502 when gatehouse answered for the upstream). */
  readonly settle: (status: number, reason: string | null) => void;
}

const handshakes = new WeakMap<IncomingMessage, Handshake>();

class UpstreamTimeout extends Error {}

tunnels.on('error', (err: Error, req: IncomingMessage, target: unknown) => {
  const socket = target as Socket;
  const handshake = handshakes.get(req);
  handshakes.delete(req);
  const error =
    err instanceof UpstreamTimeout
      ? new ProxyError('gateway_timeout', 'the upstream did not answer the upgrade in time', 'upstream_timeout')
      : new ProxyError('bad_gateway', 'the upstream refused the upgrade', `upstream_error:${(err as NodeJS.ErrnoException).code ?? 'unknown'}`);
  if (!socket || !('writable' in socket)) return;
  // After the switch the connection speaks WebSocket: no HTTP answer can go on it any more.
  if (!handshake) return void socket.destroy();
  handshake.settle(socket.destroyed ? 499 : error.status, socket.destroyed ? 'client_closed' : error.reason);
  rejectOnSocket(socket, error, handshake.requestId);
});

// http-proxy-3 writes the answer itself (the 101 from the upstream's headers, or the upstream's other answer), in
// its own 'upgrade' and 'response' listeners on the upstream request. It emits 'proxyReqWs' just before
// attaching them, so these run first: gatehouse's names (lowercase, like proxyRes.headers) replace the upstream's.
tunnels.on('proxyReqWs', (proxyReq: ClientRequest, req: IncomingMessage, socket: Socket) => {
  const handshake = handshakes.get(req);
  if (!handshake) return;
  // Until the upstream answers: a client that leaves ends the upstream request (http-proxy-3 only does so once
  // switched), and an upstream that does not answer within the upstream timeout gets 504, as a plain request.
  // 'end' too: node:http's sockets allow half-open connections, so a client's FIN alone never closes this one.
  const clientGone = () => {
    proxyReq.destroy();
    socket.destroy();
  };
  socket.once('end', clientGone);
  socket.once('close', clientGone);
  proxyReq.setTimeout(handshake.timeoutMs, () => proxyReq.destroy(new UpstreamTimeout()));
  const answered = (status: number) => {
    handshakes.delete(req);
    socket.off('end', clientGone);
    socket.off('close', clientGone);
    proxyReq.setTimeout(0);
    handshake.settle(status, null);
  };
  proxyReq.once('upgrade', (proxyRes: IncomingMessage) => {
    Object.assign(proxyRes.headers, handshake.own);
    answered(101);
  });
  // Not a WebSocket endpoint after all: its answer is relayed and the connection closed, so it loses its
  // hop-by-hop headers (http-proxy-3 frames the body itself) and gains gatehouse's own.
  proxyReq.once('response', (proxyRes: IncomingMessage) => {
    for (const name of HOP_BY_HOP_RESPONSE) delete proxyRes.headers[name];
    Object.assign(proxyRes.headers, handshake.own, { connection: 'close' });
    answered(proxyRes.statusCode ?? 502);
  });
});

/**
 * Only `GET` with `Upgrade: websocket` is tunneled: http-proxy-3 destroys anything else, and tunnelling h2c or
 * an arbitrary protocol would let a client speak past the route rules once the connection is switched.
 */
function isWebSocketUpgrade(req: IncomingMessage): boolean {
  return req.method === 'GET' && req.headers.upgrade?.toLowerCase() === 'websocket';
}

export function handleUpgrade(plan: Plan, req: IncomingMessage, socket: Socket, head: Buffer): void {
  const ex = new Exchange(plan, req, null, performance.now());
  void (async () => {
    try {
      if (!isWebSocketUpgrade(req)) throw new ProxyError('bad_request', 'only WebSocket upgrades (GET with Upgrade: websocket) are supported', 'upgrade_not_supported');
      // The token must leave the query before authentication reads it and before anything logs the URL.
      const original = req.url ?? '';
      const q = original.indexOf('?');
      ex.search = q === -1 ? '' : original.slice(q);
      ex.asUpgrade();
      req.url = (q === -1 ? original : original.slice(0, q)) + ex.search;
      await admit(ex);
      if (!ex.route!.upstream) throw new ProxyError('bad_request', 'this route does not accept upgrades', 'upgrade_not_supported');
      if (socket.destroyed) {
        // The client left (or shutdown cut it off) while it was being admitted: opening the upstream now would leak it.
        ex.status = 499;
        ex.reason = 'client_closed';
      } else {
        const headers = headerRecord(injectIdentity(ex));
        headers.connection = 'Upgrade';
        headers.upgrade = ex.incoming!.upgrade ?? 'websocket';
        req.headers = headers as IncomingMessage['headers'];
        req.url = ex.path + ex.search;
        const upstream = ex.route!.upstream;
        // Logged when the upstream has switched, answered otherwise, or failed: the status the client got.
        await new Promise<void>((resolve) => {
          const settle = (status: number, reason: string | null) => {
            ex.status = status;
            ex.reason = reason;
            resolve();
          };
          handshakes.set(req, { own: { ...ex.responseHeaders, 'x-request-id': ex.requestId }, requestId: ex.requestId, timeoutMs: upstream.config.timeoutMs, settle });
          tunnels.ws(req, socket, head, { target: upstream.config.url });
        });
      }
    } catch (err) {
      fail(ex, err);
      const error = isProxyError(err) ? err : new ProxyError('internal_error', 'gatehouse failed to handle the request');
      rejectOnSocket(socket, error, ex.requestId, ex.responseHeaders ?? {});
    }
    logAccess(ex);
  })();
}
