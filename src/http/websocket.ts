// WebSocket upgrades: the same admission stages as HTTP, then a two-way tunnel (http-proxy-3). Other upgrades are refused.
import type { ClientRequest, IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { createProxyServer } from 'http-proxy-3';
import { twoCredentials } from '../auth/credential.js';
import type { Plan } from '../config/compile.js';
import { Exchange } from '../pipeline/exchange.js';
import { injectIdentity } from '../pipeline/inject-identity.js';
import { headerRecord } from '../pipeline/sanitize-headers.js';
import { admit, fail, logAccess } from '../pipeline/pipeline.js';
import { isProxyError, ProxyError, rejectOnSocket } from './errors.js';

const tunnels = createProxyServer({ ws: true, xfwd: false, changeOrigin: false });
tunnels.on('error', (_err: Error, _req: IncomingMessage, target: unknown) => {
  const socket = target as Socket;
  if (socket && 'writable' in socket) rejectOnSocket(socket, new ProxyError('bad_gateway', 'the upstream refused the upgrade', 'upstream_error'));
});

/** Gatehouse's own headers for a tunnel's 101 (X-Request-Id, rate-limit headers), from admission until the upstream request exists. */
const ownHeaders = new WeakMap<IncomingMessage, Record<string, string>>();

// http-proxy-3 writes the 101 itself, from the upstream's response headers, in its own 'upgrade' listener on the
// upstream request. It emits 'proxyReqWs' just before attaching that listener, so this one runs first and its
// names (lowercase, like proxyRes.headers) replace the upstream's.
tunnels.on('proxyReqWs', (proxyReq: ClientRequest, req: IncomingMessage) => {
  const own = ownHeaders.get(req);
  ownHeaders.delete(req);
  proxyReq.once('upgrade', (proxyRes: IncomingMessage) => Object.assign(proxyRes.headers, own));
});

/**
 * Only `GET` with `Upgrade: websocket` is tunneled: http-proxy-3 destroys anything else, and tunnelling h2c or
 * an arbitrary protocol would let a client speak past the route rules once the connection is switched.
 */
function isWebSocketUpgrade(req: IncomingMessage): boolean {
  return req.method === 'GET' && req.headers.upgrade?.toLowerCase() === 'websocket';
}

/**
 * Moves `?access_token=` out of the query: browsers cannot set headers on a WebSocket. Only the token pairs
 * (and one `&` each) are cut out of the text; every other byte of the query is forwarded as the client sent it.
 */
function takeQueryToken(ex: Exchange): void {
  // The parameter name may be percent-encoded (access%5Ftoken): an upstream decoding the query reads it as
  // access_token too, so any '%' means reading every name.
  if (!ex.search.includes('access_token') && !ex.search.includes('%')) return;
  const kept: string[] = [];
  const tokens: string[] = [];
  for (const pair of ex.search.slice(1).split('&')) {
    // Decoded as URLSearchParams decodes a query ('+' is a space, then percent-decoding); the leading '&' keeps
    // it from dropping a '?' that starts the pair.
    const [entry] = new URLSearchParams(`&${pair}`);
    if (entry?.[0] === 'access_token') tokens.push(entry[1]);
    else kept.push(pair);
  }
  if (tokens.length > 1) throw twoCredentials();
  if (tokens.length === 0) return;
  ex.queryToken = tokens[0];
  const rest = kept.join('&');
  ex.search = rest ? `?${rest}` : '';
}

export function handleUpgrade(plan: Plan, req: IncomingMessage, socket: Socket, head: Buffer): void {
  const ex = new Exchange(plan, req, null, performance.now());
  socket.on('error', () => socket.destroy());
  void (async () => {
    try {
      if (!isWebSocketUpgrade(req)) throw new ProxyError('bad_request', 'only WebSocket upgrades (GET with Upgrade: websocket) are supported', 'upgrade_not_supported');
      // The token must leave the query before authentication reads it and before anything logs the URL.
      const original = req.url ?? '';
      const q = original.indexOf('?');
      ex.search = q === -1 ? '' : original.slice(q);
      takeQueryToken(ex);
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
        ownHeaders.set(req, { ...ex.responseHeaders, 'x-request-id': ex.requestId });
        ex.status = 101;
        tunnels.ws(req, socket, head, { target: ex.route!.upstream.config.url });
      }
    } catch (err) {
      fail(ex, err);
      const error = isProxyError(err) ? err : new ProxyError('internal_error', 'gatehouse failed to handle the request');
      rejectOnSocket(socket, error, ex.requestId, ex.responseHeaders ?? {});
    }
    logAccess(ex);
  })();
}
